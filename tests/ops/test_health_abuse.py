"""Slowloris on /healthz: many half-open connections must not take the descriptors the daemon
needs for Redis and Binance. The daemon runs with a low descriptor limit so it is quick."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.ops.health import connection_cap
from tests.support.daemon_proc import DaemonProcess
from tests.support.fake_binance import SPOT, FakeBinance, small_exchange_info

pytestmark = pytest.mark.timeout(90)

NOFILE = 256
HALF_OPEN = 400  # well past the daemon's limit


def lower_nofile() -> None:
    """In the daemon's child process only: the low descriptor limit."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.set_payload(SPOT, small_exchange_info(("AAAUSDT", "BBBUSDT")))
        yield server


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_connection_cap_leaves_the_reserve() -> None:
    assert connection_cap(1024, 200) == 64
    assert connection_cap(256, 220) == 36
    assert connection_cap(100, 500) == 1


async def test_half_open_health_connections_do_not_starve_refreshes(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[markets.spot]\nbase_urls = ["{fake.url}"]\ninterval = 1.0\njitter = 0.0\n'
        "[health]\nenabled = true\nport = 0\n"
        "[scheduler]\ncheck_interval = 0.5\n"
    )
    daemon = DaemonProcess("run", env={"REDIS_URL": redis_url}, config=config, preexec=lower_nofile)
    await daemon.start()
    held: list[asyncio.StreamWriter] = []
    try:
        async with asyncio.timeout(80):
            await daemon.wait_event("health.listening")
            await daemon.wait_event("refresh.ok")
            assert daemon.proc is not None
            pid = daemon.proc.pid
            port = next(e["port"] for e in daemon.events if e.get("event") == "health.listening")
            # Slowloris: connect, send part of a request head, never finish it.
            for _ in range(HALF_OPEN):
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    held.append(writer)
            started = time.monotonic()
            before = daemon.count("refresh.unchanged") + daemon.count("refresh.ok")
            peak = 0
            # Keep the pressure on for 6 s (several header timeouts' worth of refreshes),
            # re-opening what the daemon cuts off, and watch its descriptors.
            while time.monotonic() - started < 6.0:
                peak = max(peak, open_fds(pid))
                for i, writer in enumerate(held):
                    if (
                        writer.is_closing()
                        or writer.transport.get_write_buffer_size()
                        or (writer.transport.is_closing())
                    ):
                        with contextlib.suppress(OSError):
                            _, held[i] = await asyncio.open_connection("127.0.0.1", port)
                            held[i].write(b"GET /healthz HTTP/1.1\r\n")
                await asyncio.sleep(0.25)  # pacing the attacker, not synchronisation
            refreshed = daemon.count("refresh.unchanged") + daemon.count("refresh.ok") - before
            # interval 1 s: about six refreshes in six seconds; allow scheduling slack
            assert refreshed >= 4, daemon.output()[-3000:]
            assert daemon.count("refresh.failed") == 0, daemon.output()[-3000:]
            assert "Too many open files" not in daemon.output()
            # health never holds more than its cap: the reserve stays free
            assert peak <= NOFILE - 64, peak
    finally:
        for writer in held:
            writer.transport.abort()
        await daemon.close()
