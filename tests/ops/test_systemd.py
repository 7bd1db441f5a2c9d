"""The daemon as a systemd service: sd_notify, watchdog, reload, journald, health, credentials."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from daemon.ops.notify import Notifier, Watchdog, watchdog_interval
from tests.support.daemon_proc import DaemonProcess, run_cli, run_cli_journal
from tests.support.fake_binance import SPOT, FakeBinance, Fault, small_exchange_info
from tests.support.notify_socket import NotifySocket

SYMBOLS = tuple(f"S{i:02d}USDT" for i in range(20))


@pytest.fixture(params=["path", "abstract"])
async def notify(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[NotifySocket]:
    if request.param == "path":
        name = str(tmp_path / "notify.sock")
    else:
        name = f"@symbold-test-{time.monotonic_ns()}"
    sock = NotifySocket(name)
    sock.start()
    yield sock
    await sock.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.set_payload(SPOT, small_exchange_info(SYMBOLS))
        yield server


def config_file(tmp_path: Path, fake_url: str, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[markets.spot]\nbase_urls = ["{fake_url}"]\ninterval = 3600.0\n'
        "[upstream]\ntimeout_total = 2.0\nbackoff_base = 0.1\nbackoff_ceiling = 0.2\n"
        "[scheduler]\nmin_refresh_gap = 0.0\ncheck_interval = 0.1\n" + extra
    )
    return path


async def test_notify_ready_status_watchdog_reload_stopping(
    redis_url: str, fake: FakeBinance, notify: NotifySocket, tmp_path: Path
) -> None:
    env = {"REDIS_URL": redis_url, "NOTIFY_SOCKET": notify.env_value, "WATCHDOG_USEC": "200000"}
    daemon = await DaemonProcess("run", env=env, config=config_file(tmp_path, fake.url)).start()
    try:
        async with asyncio.timeout(20):
            ready = await notify.wait_for("READY", "1")
            # READY=1 comes with the first snapshot, and says so
            assert ready["STATUS"].startswith("spot: 20 symbols, "), ready
            assert ready["STATUS"].endswith(" s old, fresh"), ready
            assert fake.requests[SPOT] == 1
            await notify.wait_for("WATCHDOG", "1", n=3)
            daemon.signal(signal.SIGHUP)
            reloading = await notify.wait_for("RELOADING", "1")
            assert int(reloading["MONOTONIC_USEC"]) > 0
            await notify.wait_for("READY", "1", n=2)
            assert fake.requests[SPOT] == 2  # the reload refreshed before READY=1
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
            await notify.wait_for("STOPPING", "1")
    finally:
        await daemon.close()
    order = [next(iter(m)) for _, m in notify.messages if "WATCHDOG" not in m]
    first_ready = order.index("READY")
    # before READY only STATUS lines saying the service is starting
    before = [m for _, m in notify.messages if "WATCHDOG" not in m][:first_ready]
    assert before
    assert all(m["STATUS"].startswith("starting") for m in before), before
    assert order.index("RELOADING") < len(order) - 1 - order[::-1].index("READY")


async def test_upstream_outage_keeps_watchdog_pings_and_ready_is_sent(
    redis_url: str, fake: FakeBinance, notify: NotifySocket, tmp_path: Path
) -> None:
    fake.set_mode(SPOT, Fault.status(500))
    env = {"REDIS_URL": redis_url, "NOTIFY_SOCKET": notify.env_value, "WATCHDOG_USEC": "100000"}
    config = config_file(tmp_path, fake.url, "[service]\nstart_timeout = 1.0\n")
    daemon = await DaemonProcess("run", env=env, config=config).start()
    try:
        async with asyncio.timeout(20):
            # ready although upstream is down, once start_timeout passed, and says it is degraded
            ready = await notify.wait_for("READY", "1")
            assert ready["STATUS"].startswith("degraded: spot: no snapshot yet, STALE"), ready
            await fake.wait_for_requests(SPOT, 3)  # several failed cycles...
            before = len(notify.having("WATCHDOG"))
            await notify.wait_for("WATCHDOG", "1", n=before + 5)  # ...and pings go on
            line = notify.having("STATUS")[-1]["STATUS"]
            assert "spot: no snapshot yet" in line
            assert "error" in line
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
    finally:
        await daemon.close()


class _PingEvents(Notifier):
    """A Notifier that also lets the test wait for its pings."""

    def __init__(self, environ: dict[str, str]) -> None:
        super().__init__(environ)
        self._ping = asyncio.Event()

    def watchdog(self) -> bool:
        self._ping.set()
        return super().watchdog()

    async def pinged(self, n: int) -> None:
        for _ in range(n):
            self._ping.clear()
            await self._ping.wait()


def _receive_in_thread(sock: socket.socket, out: list[float], stop: threading.Event) -> None:
    """Timestamps of datagrams as they arrive, taken outside the event loop under test."""
    sock.settimeout(0.01)
    while not stop.is_set():
        try:
            sock.recv(4096)
        except TimeoutError:
            continue
        out.append(time.monotonic())


async def test_watchdog_pings_stop_while_the_event_loop_is_wedged(tmp_path: Path) -> None:
    path = str(tmp_path / "wd.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(path)
    arrivals: list[float] = []
    done = threading.Event()
    reader = threading.Thread(target=_receive_in_thread, args=(sink, arrivals, done))
    reader.start()
    stop = asyncio.Event()
    notifier = _PingEvents({"NOTIFY_SOCKET": path})
    dog = Watchdog(notifier, 0.02, lambda: None)
    task = asyncio.create_task(dog.run(stop))
    try:
        async with asyncio.timeout(10):
            await notifier.pinged(5)
            wedge_start = time.monotonic()
            time.sleep(0.5)  # noqa: ASYNC251 - this blocking call IS the wedged loop under test
            wedge_end = time.monotonic()
            await notifier.pinged(3)
        during = [t for t in arrivals if wedge_start + 0.05 < t < wedge_end]
        assert during == []  # a pinger outside the loop (a thread) would keep pinging here
        assert any(t > wedge_end for t in arrivals)  # and pings resume once the loop runs
    finally:
        stop.set()
        await task
        notifier.close()
        done.set()
        reader.join(5)
        sink.close()


async def test_watchdog_withholds_pings_when_liveness_fails(tmp_path: Path) -> None:
    path = str(tmp_path / "wd.sock")
    sink = NotifySocket(path)
    sink.start()
    stop = asyncio.Event()
    healthy = True
    notifier = Notifier({"NOTIFY_SOCKET": path})
    dog = Watchdog(notifier, 0.02, lambda: None if healthy else "market loop ended")
    task = asyncio.create_task(dog.run(stop))
    try:
        async with asyncio.timeout(10):
            await sink.wait_for("WATCHDOG", "1", n=2)
            healthy = False
            pings = dog.pings
            # several intervals pass: count the pinger's own turns through the loop instead
            for _ in range(10):
                await asyncio.sleep(0.02)
            assert dog.pings == pings
    finally:
        stop.set()
        await task
        notifier.close()
        await sink.close()


def test_watchdog_interval_from_environment() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None


async def test_reload_keeps_old_config_on_error_and_applies_a_good_one(
    redis_url: str, fake: FakeBinance, notify: NotifySocket, tmp_path: Path
) -> None:
    config = config_file(tmp_path, fake.url)
    env = {"REDIS_URL": redis_url, "NOTIFY_SOCKET": notify.env_value}
    daemon = await DaemonProcess("run", env=env, config=config).start()
    try:
        async with asyncio.timeout(20):
            await daemon.wait_event("refresh.ok")
            config.write_text("[markets.spot\nbroken = ")
            daemon.signal(signal.SIGHUP)
            await daemon.wait_event("config.reload_failed")
            await notify.wait_for("READY", "1", n=2)
            assert fake.requests[SPOT] == 2  # still refreshing with the old settings
            # a valid new file: another prefix, so the effect is visible in Redis
            config.write_text(
                config_file(tmp_path, fake.url).read_text() + '[redis]\nkey_prefix = "reloaded"\n'
            )
            daemon.signal(signal.SIGHUP)
            await daemon.wait_event("config.reloaded", changed=True)
            await notify.wait_for("READY", "1", n=3)
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
    finally:
        await daemon.close()
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_url)
    assert client.exists("reloaded:{spot}:symbols") == 1
    assert client.exists("symbold:{spot}:symbols") == 1
    client.close()


async def test_health_endpoint_codes_and_metrics(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    config = config_file(tmp_path, fake.url, "[health]\nenabled = true\nport = 0\nmax_age = 1.0\n")
    daemon = await DaemonProcess("run", env={"REDIS_URL": redis_url}, config=config).start()
    try:
        async with asyncio.timeout(20):
            await daemon.wait_event("health.listening")
            port = next(e["port"] for e in daemon.events if e.get("event") == "health.listening")
            host = next(e["host"] for e in daemon.events if e.get("event") == "health.listening")
            assert host == "127.0.0.1"
            await daemon.wait_event("refresh.ok")
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert resp.status == 200
                    assert (await resp.text()).startswith("ok: spot")
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    assert resp.status == 200
                    body = await resp.text()
                assert 'symbold_refresh_total{market="spot",outcome="accepted"} 1.0' in body
                assert 'symbold_symbols{kind="listed",market="spot"} 20.0' in body
                assert "symbold_upstream_latency_seconds_count" in body
                assert 'symbold_upstream_used_weight{market="spot"} 20.0' in body
                fake.set_mode(SPOT, Fault.status(500))
                daemon.signal(signal.SIGHUP)
                await daemon.wait_event("refresh.failed")
                # the snapshot ages past max_age while upstream stays down
                await asyncio.sleep(1.1)
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert resp.status == 503
                    assert "spot: snapshot" in await resp.text()
            daemon.signal(signal.SIGTERM)
            assert await daemon.wait() == 0
    finally:
        await daemon.close()


async def test_status_check_exit_codes_and_journald_lines(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    fresh_cfg = config_file(tmp_path, fake.url, "[health]\nmax_age = 600.0\n")
    env = {"REDIS_URL": redis_url}
    never = await asyncio.to_thread(
        run_cli, "status", "--check", "--config", str(fresh_cfg), env=env
    )
    assert never.returncode == 1
    assert "no snapshot yet" in never.stderr
    code, lines = await asyncio.to_thread(
        run_cli_journal, "refresh", "--config", str(fresh_cfg), env=env
    )
    assert code == 0
    line = next(x for x in lines if "refresh.ok" in x)
    assert line.startswith("<6>{")
    assert json.loads(line[3:])["event"] == "refresh.ok"
    ok = await asyncio.to_thread(run_cli, "status", "--check", "--config", str(fresh_cfg), env=env)
    assert ok.returncode == 0, ok.stderr
    stale_cfg = tmp_path / "stale.toml"
    stale_cfg.write_text(fresh_cfg.read_text().replace("max_age = 600.0", "max_age = 0.001"))
    stale = await asyncio.to_thread(
        run_cli, "status", "--check", "--config", str(stale_cfg), env=env
    )
    assert stale.returncode == 1
    assert "spot: snapshot" in stale.stderr


def test_redis_url_from_systemd_credential(tmp_path: Path, redis_url: str) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "redis_url").write_text(redis_url + "\n")
    result = run_cli(
        "ping",
        "--count",
        "1",
        env={"CREDENTIALS_DIRECTORY": str(creds), "REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    assert result.returncode == 0, result.stderr
    assert "(from credential redis_url)" in result.stdout
