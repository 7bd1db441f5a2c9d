"""Celery interop against a real worker: on_change/on_failure hooks, refresh_symbols, and a
broker outage that must not stall the daemon's event loop."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import load_settings
from daemon.service.lifecycle import Service
from tests.support.daemon_proc import DaemonProcess, clean_env
from tests.support.fake_binance import SPOT, FakeBinance, Fault, small_exchange_info
from tests.support.redis_server import RedisServer

pytest.importorskip("celery", reason="the celery extra is not installed")

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = tuple(f"C{i:02d}USDT" for i in range(10))


def payload(symbols: tuple[str, ...], status: dict[str, str] | None = None) -> bytes:
    doc = json.loads(small_exchange_info(symbols))
    for row in doc["symbols"]:
        row["status"] = (status or {}).get(row["symbol"], "TRADING")
    return json.dumps(doc).encode()


class Worker:
    """`celery worker` in a child process, ready when it says so."""

    def __init__(self, broker: str, sink: str, queue: str, extra_env: dict[str, str]) -> None:
        self.env = clean_env(
            {
                **extra_env,
                "SYMBOLD_TEST_BROKER": broker,
                "SYMBOLD_TEST_SINK": sink,
                "SYMBOLD_TEST_QUEUE": queue,
                "PYTHONPATH": str(ROOT),
            }
        )
        self.queue = queue
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "celery", "-A", "tests.support.celery_worker_app", "worker",
            "--pool=solo", "--concurrency=1", "-Q", self.queue, "--loglevel=INFO",
            "--without-heartbeat", "--without-mingle", "--without-gossip",
            env=self.env, cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            async for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                if "ready." in line:
                    break
            else:
                raise AssertionError("worker exited:\n" + "".join(self.lines))
        self._drain = asyncio.create_task(self._read_rest())

    async def _read_rest(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace"))

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                async with asyncio.timeout(15):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if hasattr(self, "_drain"):
            await self._drain


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.set_payload(SPOT, payload(SYMBOLS))
        yield server


async def blpop_json(url: str, key: str, wait: float = 20.0) -> Any:
    client = redis.asyncio.Redis.from_url(url)
    try:
        item = await client.blpop([key], timeout=wait)
    finally:
        await client.aclose()
    assert item is not None, f"nothing arrived on {key} within {wait} s"
    return json.loads(item[1])


@pytest.mark.timeout(90)
async def test_worker_receives_on_change_with_the_diff(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    worker = Worker(redis_url, redis_url, "symbold-test", {})
    await worker.start()
    config = tmp_path / "c.toml"
    config.write_text(
        f'[markets.spot]\nbase_urls = ["{fake.url}"]\ninterval = 3600.0\n'
        "[scheduler]\nmin_refresh_gap = 0.0\n"
        '[celery]\nenabled = true\nqueue = "symbold-test"\n'
        'on_change = "tests.record_change"\non_failure = "tests.record_failure"\n'
    )
    daemon = await DaemonProcess("run", env={"REDIS_URL": redis_url}, config=config).start()
    try:
        async with asyncio.timeout(60):
            await daemon.wait_event("refresh.ok")
            # list a new symbol, delist another, halt a third
            fake.set_payload(SPOT, payload((*SYMBOLS[1:], "NEWUSDT"), {"C05USDT": "HALT"}))
            daemon.signal(signal.SIGHUP)
            change = await blpop_json(redis_url, "sink:change")
            assert change["market"] == "spot"
            assert change["added"] == ["NEWUSDT"]
            assert change["removed"] == ["C00USDT"]
            assert change["status_changed"] == [
                {"symbol": "C05USDT", "old": "TRADING", "new": "HALT"}
            ]
            stored = redis.Redis.from_url(redis_url).hget("symbold:{spot}:meta", "version")
            assert stored is not None
            assert change["version"] == stored.decode()

            fake.set_mode(SPOT, Fault.status(500))
            daemon.signal(signal.SIGHUP)
            failure = await blpop_json(redis_url, "sink:failure")
            assert failure["market"] == "spot"
            assert "server_error" in failure["error"]
            assert 0 <= failure["stale_age"] < 60
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
    finally:
        await daemon.close()
        await worker.stop()
    assert daemon.count("enqueue.sent") == 2


@pytest.mark.timeout(90)
async def test_refresh_symbols_run_by_the_worker_writes_a_snapshot(
    redis_url: str, fake: FakeBinance
) -> None:
    env = {"REDIS_URL": redis_url, "SYMBOLD_SPOT_BASE_URLS": fake.url}
    worker = Worker(redis_url, redis_url, "symbold-test", env)
    await worker.start()
    # the legacy "enqueue from a script" path, to the queue this worker listens on
    sent = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "daemon", "enqueue", "symbold.refresh_symbols",
         "--kwargs", '{"market": "spot"}'],
        env=clean_env({**env, "SYMBOLD_CELERY_QUEUE": "symbold-test"}),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    try:
        assert sent.returncode == 0, sent.stderr
        done = await blpop_json(redis_url, "sink:done")
        assert done["task"] == "symbold.refresh_symbols"
        assert done["state"] == "SUCCESS"
        assert done["retval"][0]["outcome"] == "accepted"
        assert done["retval"][0]["listed"] == len(SYMBOLS)
        client = redis.Redis.from_url(redis_url)
        assert client.hlen("symbold:{spot}:by_symbol") == len(SYMBOLS)
        assert client.hget("symbold:{spot}:metrics", "refresh_success") == b"1"
        client.close()
    finally:
        await worker.stop()


@pytest.mark.timeout(60)
async def test_paused_broker_does_not_stall_the_event_loop(
    redis_url: str, redis_factory: type[RedisServer], fake: FakeBinance
) -> None:
    broker = redis_factory().start()
    fake.set_mode(SPOT, Fault.status(500))  # every cycle fails -> every cycle enqueues on_failure
    loaded = load_settings(
        environ={},
        use_default_path=False,
        overrides={
            "markets.spot.base_urls": [fake.url],
            "upstream.backoff_base": 0.05,
            "upstream.backoff_ceiling": 0.05,
            "celery.enabled": True,
            "celery.broker_url": broker.url,
            "celery.on_failure": "tests.record_failure",
            "celery.send_timeout": 0.5,
            "celery.max_pending": 3,
        },
    )
    cycles = 0
    enough = asyncio.Event()

    def on_cycle(_: object) -> None:
        nonlocal cycles
        cycles += 1
        if cycles >= 20:
            enough.set()

    service = Service(loaded.settings, parse_redis_url(redis_url, "test"), on_cycle=on_cycle)
    broker.pause()
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.001)
            worst = max(worst, time.monotonic() - before - 0.001)

    tick = asyncio.create_task(ticker())
    run = asyncio.create_task(service.run(install_signals=False))
    try:
        async with asyncio.timeout(40):
            await service.started.wait()
            assert service.sender is not None
            stats = service.sender.stats
            await enough.wait()
    finally:
        service.request_stop()
        assert await run == 0
        tick.cancel()
        await asyncio.gather(tick, return_exceptions=True)
        broker.resume()
    # 20 failed cycles went on while every send hung on the paused broker
    assert cycles >= 20
    # every send either timed out or was dropped at the bound; none reached the broker
    assert stats.sent == 0
    assert stats.failed >= 1
    assert stats.dropped >= 1
    assert stats.failed + stats.dropped <= cycles
    assert worst < 0.25, f"event loop stalled for {worst * 1000:.0f} ms"
    print(f"longest event-loop stall with the broker paused: {worst * 1000:.1f} ms")
