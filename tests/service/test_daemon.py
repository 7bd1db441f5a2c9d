"""`symbold run`, `refresh` and `status` as real processes: signals, exit codes, the demo."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.support.daemon_proc import DaemonProcess, clean_env, run_cli
from tests.support.fake_binance import SPOT, FakeBinance, Fault, small_exchange_info
from tests.support.redis_server import RedisServer, free_port

SYMBOLS = tuple(f"C{i:02d}USDT" for i in range(20))


def write_config(tmp_path: Path, fake_url: str, **scheduler: float) -> Path:
    lines = ["[markets.spot]", f'base_urls = ["{fake_url}"]', "interval = 3600.0", "jitter = 0.0"]
    lines += ["[upstream]", "timeout_total = 5.0", "backoff_base = 0.2", "backoff_ceiling = 1.0"]
    lines += ["[scheduler]", *(f"{k} = {v}" for k, v in scheduler.items())]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
async def fake() -> FakeBinance:
    async with FakeBinance() as server:
        server.set_payload(SPOT, small_exchange_info(SYMBOLS))
        yield server  # type: ignore[misc]


async def test_run_refreshes_at_start_and_on_sighup_then_stops_cleanly(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake.url, min_refresh_gap=0.0)
    daemon = await DaemonProcess("run", env={"REDIS_URL": redis_url}, config=config).start()
    try:
        async with asyncio.timeout(20):
            await daemon.wait_event("refresh.ok", market="spot")
            assert fake.requests[SPOT] == 1
            daemon.signal(signal.SIGHUP)
            await daemon.wait_event("refresh.unchanged", market="spot")
            assert fake.requests[SPOT] == 2
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
    finally:
        await daemon.close()
    assert daemon.count("service.stopped") == 1
    stored = json.loads(redis.Redis.from_url(redis_url).get("symbold:{spot}:symbols") or b"[]")
    assert len(stored) == len(SYMBOLS)


async def test_sighup_burst_is_coalesced(redis_url: str, fake: FakeBinance, tmp_path: Path) -> None:
    gap = 0.5
    config = write_config(tmp_path, fake.url, min_refresh_gap=gap)
    daemon = await DaemonProcess("run", env={"REDIS_URL": redis_url}, config=config).start()
    try:
        async with asyncio.timeout(30):
            await daemon.wait_event("service.started")
            await daemon.wait_event("refresh.ok")
            started = time.monotonic()
            for _ in range(1000):
                daemon.signal(signal.SIGHUP)
            burst = time.monotonic() - started
            # the burst ends in at least one forced refresh
            await daemon.wait_event("refresh.forced")
            await daemon.wait_for(lambda: fake.requests[SPOT] >= 2)
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
            elapsed = time.monotonic() - started
    finally:
        await daemon.close()
    forced = daemon.count("refresh.forced")
    assert 1 <= forced <= 1 + (burst + gap) / gap, (forced, burst)
    assert fake.requests[SPOT] == 1 + forced
    assert forced <= 1 + elapsed / gap


async def test_sigterm_during_a_slow_refresh_exits_zero_with_a_whole_snapshot(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake.url, shutdown_timeout=0.5)
    daemon = await DaemonProcess("run", env={"REDIS_URL": redis_url}, config=config).start()
    try:
        async with asyncio.timeout(20):
            await daemon.wait_event("refresh.ok")
            fake.set_mode(SPOT, Fault.stall_body())  # the next cycle hangs mid-body
            daemon.signal(signal.SIGHUP)
            await fake.wait_for_requests(SPOT, 2)
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
            assert time.monotonic() - started < 5.0
    finally:
        await daemon.close()
    assert daemon.count("service.abandoning") == 1
    client = redis.Redis.from_url(redis_url)
    assert len(json.loads(client.get("symbold:{spot}:symbols") or b"[]")) == len(SYMBOLS)
    assert client.hlen("symbold:{spot}:by_symbol") == len(SYMBOLS)


async def test_second_sigterm_exits_at_once(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    config = write_config(tmp_path, fake.url, shutdown_timeout=60.0)
    daemon = await DaemonProcess("run", env={"REDIS_URL": redis_url}, config=config).start()
    try:
        async with asyncio.timeout(20):
            await daemon.wait_event("refresh.ok")
            fake.set_mode(SPOT, Fault.stall_body())
            daemon.signal(signal.SIGHUP)
            await fake.wait_for_requests(SPOT, 2)
            daemon.signal(signal.SIGTERM)
            await daemon.wait_event("service.stopping")
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 1
            assert time.monotonic() - started < 5.0  # not the 60 s grace period
    finally:
        await daemon.close()


async def test_daemon_survives_redis_down_at_start_and_catches_up(
    redis_factory: type[RedisServer], fake: FakeBinance, tmp_path: Path
) -> None:
    port = free_port()
    server = redis_factory(port=port)
    config = write_config(tmp_path, fake.url, check_interval=0.1)
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    daemon = await DaemonProcess("run", env=env, config=config).start()
    try:
        async with asyncio.timeout(30):
            await daemon.wait_event("redis.unavailable")
            assert fake.requests[SPOT] == 0  # no upstream weight spent while Redis is down
            server.start()
            await daemon.wait_event("refresh.ok")
            assert server.client().hlen("symbold:{spot}:by_symbol") == len(SYMBOLS)
            # Redis restarts empty: the daemon republishes what it holds without waiting for
            # the next refresh (interval is an hour)
            server.restart()
            await daemon.wait_event("refresh.fallback")
            assert server.client().hlen("symbold:{spot}:by_symbol") == len(SYMBOLS)
            assert fake.requests[SPOT] == 1
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
    finally:
        await daemon.close()


async def test_refresh_command_exit_codes(
    redis_url: str, redis_factory: type[RedisServer], fake: FakeBinance, tmp_path: Path
) -> None:
    env = {"REDIS_URL": redis_url, "SYMBOLD_SPOT_BASE_URLS": fake.url}
    ok = await asyncio.to_thread(run_cli, "refresh", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"spot: accepted, {len(SYMBOLS)} listed of {len(SYMBOLS)}" in ok.stdout

    fake.set_payload(SPOT, small_exchange_info(SYMBOLS[:5]))  # lost 75%: held back
    held = await asyncio.to_thread(run_cli, "refresh", "--market", "spot", env=env)
    assert held.returncode == 75, held.stdout + held.stderr
    assert "shrink" in held.stderr

    fake.set_mode(SPOT, Fault.status(500))
    failed = await asyncio.to_thread(run_cli, "refresh", env=env)
    assert failed.returncode == 1
    assert "server_error" in failed.stderr or "500" in failed.stderr

    down = {**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    unreachable = await asyncio.to_thread(run_cli, "refresh", env=down)
    assert unreachable.returncode == 69

    status = await asyncio.to_thread(run_cli, "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    spot = json.loads(status.stdout)["spot"]
    assert spot["listed"] == len(SYMBOLS)  # the good snapshot is still served
    # a failed refresh a moment ago: a fallback is served, and it is young, so fresh
    assert spot["serving_fallback"] is True
    assert (spot["fresh"], spot["stale"]) == (True, False)
    assert spot["counters"] == {
        "refresh_success": 1,
        "refresh_error": 1,
        "refresh_rejected": 1,
        "fallback_used": 0,
    }
    assert spot["daemon"] is None
    text = await asyncio.to_thread(run_cli, "status", env=env)
    assert "spot: 20 listed of 20 symbols" in text.stdout
    assert "fresh" in text.stdout
    assert "serving a fallback" in text.stdout


def test_status_with_redis_down_exits_69() -> None:
    result = run_cli("status", env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert result.returncode == 69
    assert "unreachable" in result.stderr


def test_make_demo_runs_offline_with_a_private_redis(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    # point the demo at a port where nothing listens so that it has to start its own server
    env = clean_env({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    result = subprocess.run(
        ["sh", str(root / "scripts" / "demo.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "started a private Redis" in result.stdout
    assert "spot: accepted, 16 listed of 20" in result.stdout
    assert "spot: 16 listed of 20 symbols" in result.stdout


async def test_run_with_wrong_password_exits_78_without_the_secret(
    redis_factory: type[RedisServer], fake: FakeBinance, tmp_path: Path
) -> None:
    server = redis_factory(password="the-right-one").start()
    secret = "Wr0ng-Secret-Value"
    config = write_config(tmp_path, fake.url)
    env = {"REDIS_URL": f"redis://:{secret}@127.0.0.1:{server.port}/0"}
    daemon = await DaemonProcess("run", env=env, config=config).start()
    try:
        async with asyncio.timeout(20):
            assert await daemon.wait() == 78
    finally:
        await daemon.close()
    assert "authentication failed" in daemon.output()
    assert secret not in daemon.output()
    assert fake.requests[SPOT] == 0
