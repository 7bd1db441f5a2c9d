"""`symbold run` as a real process under a stand-in NOTIFY_SOCKET: READY after the first fresh
snapshot, a STATUS= line that ages between cycles, reloads that apply [health] live, and the
metrics the alerts need."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from daemon.budget import AsyncWeightBudget
from tests.support.daemon_proc import DaemonProcess
from tests.support.fake_binance import SPOT, FakeBinance, Fault, small_exchange_info
from tests.support.notify_socket import NotifySocket
from tests.support.redis_server import free_port

pytestmark = pytest.mark.timeout(60)

SYMBOLS = tuple(f"Q{i:02d}USDT" for i in range(15))


@pytest.fixture
async def notify(tmp_path: Path) -> AsyncIterator[NotifySocket]:
    sock = NotifySocket(str(tmp_path / "notify.sock"))
    sock.start()
    yield sock
    await sock.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.set_payload(SPOT, small_exchange_info(SYMBOLS))
        yield server


def write_config(path: Path, fake_url: str, extra: str = "") -> Path:
    path.write_text(
        f'[markets.spot]\nbase_urls = ["{fake_url}"]\ninterval = 3600.0\njitter = 0.0\n'
        "[upstream]\ntimeout_total = 5.0\nbackoff_base = 0.2\nbackoff_ceiling = 0.5\n"
        "[scheduler]\nmin_refresh_gap = 0.0\ncheck_interval = 0.2\n"
        "[lease]\nttl = 1.5\n" + extra
    )
    return path


async def http_get(port: int, path: str) -> tuple[int, str]:
    """One HTTP/1.0 GET on loopback; (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def listening_port(daemon: DaemonProcess, n: int = 1) -> int:
    found = [e["port"] for e in daemon.events if e.get("event") == "health.listening"]
    return int(found[n - 1])


async def test_ready_only_after_the_first_snapshot_is_published(
    redis_url: str, fake: FakeBinance, notify: NotifySocket, tmp_path: Path
) -> None:
    fake.set_mode(SPOT, Fault.slow(1.5))
    env = {"REDIS_URL": redis_url, "NOTIFY_SOCKET": notify.env_value}
    config = write_config(tmp_path / "c.toml", fake.url)
    daemon = await DaemonProcess("run", env=env, config=config).start()
    db = redis.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(30):
            ready = await notify.wait_for("READY", "1")
            # the daemon publishes before it says READY: the snapshot is in Redis by now
            assert db.get("symbold:{spot}:refreshed_at") is not None
            assert ready["STATUS"].startswith(f"spot: {len(SYMBOLS)} symbols, "), ready
            assert ready["STATUS"].endswith("fresh"), ready
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
    finally:
        await daemon.close()
        db.close()


async def test_follower_is_ready_when_the_leaders_snapshot_is_fresh(
    redis_url: str, fake: FakeBinance, notify: NotifySocket, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", fake.url)
    leader = await DaemonProcess("run", env={"REDIS_URL": redis_url}, config=config).start()
    follower: DaemonProcess | None = None
    try:
        async with asyncio.timeout(30):
            await leader.wait_event("refresh.ok")
            # upstream down: a follower that waited for its own fetch would never be ready
            fake.set_mode(SPOT, Fault.status(500))
            env = {"REDIS_URL": redis_url, "NOTIFY_SOCKET": notify.env_value}
            follower = await DaemonProcess("run", env=env, config=config).start()
            ready = await notify.wait_for("READY", "1")
            assert "(standby)" in ready["STATUS"], ready
            assert "fresh" in ready["STATUS"], ready
            assert not ready["STATUS"].startswith("degraded"), ready
            assert fake.requests[SPOT] == 1  # the follower fetched nothing
    finally:
        await leader.close()
        if follower is not None:
            await follower.close()


async def test_status_line_ages_and_turns_stale_between_cycles(
    redis_url: str, fake: FakeBinance, notify: NotifySocket, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", fake.url, "[health]\nmax_age = 3.0\n")
    env = {"REDIS_URL": redis_url, "NOTIFY_SOCKET": notify.env_value}
    daemon = await DaemonProcess("run", env=env, config=config).start()
    try:
        async with asyncio.timeout(30):
            await notify.wait_for("READY", "1")
            first = await notify.wait_for("STATUS", f"spot: {len(SYMBOLS)} symbols, 2 s old, fresh")
            assert first
            stale = f"degraded: spot: {len(SYMBOLS)} symbols, 4 s old, STALE (max 3 s)"
            await notify.wait_for("STATUS", stale)
            assert fake.requests[SPOT] == 1  # no cycle ran in between: the timer sent these
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
    finally:
        await daemon.close()


async def test_reload_applies_health_live_and_names_restart_only_keys(
    redis_url: str, fake: FakeBinance, notify: NotifySocket, tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    write_config(path, fake.url, "[health]\nenabled = true\nport = 0\nmax_age = 600.0\n")
    env = {"REDIS_URL": redis_url, "NOTIFY_SOCKET": notify.env_value}
    daemon = await DaemonProcess("run", env=env, config=path).start()
    try:
        async with asyncio.timeout(40):
            await notify.wait_for("READY", "1")
            port = listening_port(daemon)
            assert (await http_get(port, "/healthz"))[0] == 200
            # max_age, applied at once
            write_config(path, fake.url, "[health]\nenabled = true\nport = 0\nmax_age = 0.001\n")
            daemon.signal(signal.SIGHUP)
            await notify.wait_for("READY", "1", n=2)
            code, body = await http_get(port, "/healthz")
            assert (code, body.startswith("stale: spot: snapshot")) == (503, True), body
            # a new address: served there, the old one closed
            new_port = free_port()
            write_config(path, fake.url, f"[health]\nenabled = true\nport = {new_port}\n")
            daemon.signal(signal.SIGHUP)
            await daemon.wait_event("health.listening", n=2)
            assert listening_port(daemon, 2) == new_port
            assert (await http_get(new_port, "/healthz"))[0] == 200
            with pytest.raises(ConnectionRefusedError):
                await http_get(port, "/healthz")
            # disabled: nothing listens; a restart-only key: warned about and shown in STATUS=
            write_config(
                path, fake.url, "[health]\nenabled = false\n[service]\nstart_timeout = 5\n"
            )
            daemon.signal(signal.SIGHUP)
            await daemon.wait_event("config.restart_needed")
            warned = next(e for e in daemon.events if e.get("event") == "config.restart_needed")
            assert warned["level"] == "warning"
            assert warned["keys"] == ["service.start_timeout"]
            with pytest.raises(ConnectionRefusedError):
                await http_get(new_port, "/healthz")
            status = await notify.wait_for("READY", "1", n=4)
            assert status["STATUS"].endswith("; restart needed for service.start_timeout")
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
    finally:
        await daemon.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page (parsing it proves it is valid)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_leader_ban_budget_and_process(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", fake.url, "[health]\nenabled = true\nport = 0\n")
    daemon = await DaemonProcess("run", env={"REDIS_URL": redis_url}, config=config).start()
    budget = AsyncWeightBudget.from_url(redis_url, market="spot")
    try:
        async with asyncio.timeout(40):
            await daemon.wait_event("refresh.ok")
            port = listening_port(daemon)
            await budget.start_fresh()
            await budget.acquire(37)  # another process of the bot spends weight
            code, text = await http_get(port, "/metrics")
            assert code == 200
            got = samples(text)
            assert got[("symbold_leader", (("market", "spot"),))] == 1.0
            assert got[("symbold_ban_until_timestamp_seconds", (("market", "spot"),))] == 0.0
            weight = (("limit", "REQUEST_WEIGHT_1M"), ("market", "spot"))
            assert got[("symbold_budget_used", weight)] >= 37
            assert got[("symbold_budget_limit", weight)] == 6000
            assert got[("symbold_budget_waits_total", (("market", "spot"),))] == 0
            assert got[("process_open_fds", ())] > 0
            assert got[("process_max_fds", ())] > 0
            # a 429 with Retry-After: the ban deadline shows
            fake.set_mode(SPOT, Fault.rate_limited(retry_after=120))
            daemon.signal(signal.SIGHUP)
            await daemon.wait_event("refresh.failed")
            got = samples((await http_get(port, "/metrics"))[1])
            ban = got[("symbold_ban_until_timestamp_seconds", (("market", "spot"),))]
            assert time.time() + 60 < ban < time.time() + 180
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
    finally:
        await budget.aclose()
        await daemon.close()
