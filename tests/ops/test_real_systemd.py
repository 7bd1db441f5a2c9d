"""The shipped unit under a real systemd (PID 1 of a private namespace), end to end.

One namespace per module: it boots systemd, installs the built wheel into a venv at
/opt/symbold (inside the namespace's /opt overlay, made from /usr/bin/python3 because a
DynamicUser service cannot run a venv under /root), puts the Redis URL with its password in the
credential file /etc/symbold/redis_url only, installs systemd/symbold.service unchanged under
/etc/systemd/system with a drop-in for test timings, and drives it with systemctl.

Outside the namespace (same network namespace, so loopback works both ways): a real
redis-server with requirepass, and the fake Binance on 127.0.0.1.

Each test restarts the service from a known state first (good config, no upstream fault, reset
start limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_binance import SPOT, FakeBinance, Fault, small_exchange_info
from tests.support.redis_server import RedisServer, free_port
from tests.support.systemd_ns import NamespaceError, SystemdNamespace, unavailable_reason

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
UNIT = "symbold.service"
SYMBOLS = tuple(f"T{i:02d}USDT" for i in range(12))
PREFIX = "symbold:{spot}:"
REFRESHED = {"refresh.ok", "refresh.unchanged"}

DROP_IN = """\
# Test timings, as an operator's drop-in would set them; the shipped unit is unchanged.
[Service]
WatchdogSec=3s
RestartSec=1s
# The watchdog kill is SIGABRT: no core file from the test.
LimitCORE=0
"""


def config_toml(upstream: str, health_port: int, extra: str = "") -> str:
    return f"""\
[log]
level = "info"
[scheduler]
min_refresh_gap = 1.0
check_interval = 1.0
[health]
enabled = true
port = {health_port}
# One daemon: without this, a watchdog-killed daemon's lease makes its successor stand by for
# up to ttl*4/3 s, which couples the tests to each other's order.
[lease]
enabled = false
[markets.spot]
enabled = true
base_urls = ["{upstream}"]
interval = 3600.0
{extra}"""


# -- helpers -----------------------------------------------------------------------------------


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll real external state (systemd, Redis, the journal) until `check` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def events(entries: list[dict[str, Any]]) -> list[tuple[str, int, dict[str, Any]]]:
    """(event name, journald priority, fields) of the daemon's own JSON lines."""
    found = []
    for entry in entries:
        message = entry.get("MESSAGE")
        if not isinstance(message, str) or not message.startswith("{"):
            continue
        with contextlib.suppress(ValueError):
            fields = json.loads(message)
            found.append((str(fields.get("event")), int(entry["PRIORITY"]), fields))
    return found


class FakeThread:
    """The fake Binance served from a thread with its own event loop (the tests are sync)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.fake = FakeBinance()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeThread:
        self._thread.start()
        self.call(self.fake.__aenter__())
        self.do(self.fake.set_payload, SPOT, small_exchange_info(SYMBOLS))
        return self

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def do(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)

        return self.call(run())

    @property
    def requests(self) -> int:
        return int(self.do(lambda: self.fake.requests[SPOT]))

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.fake.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


class Deployment:
    """The namespace, the servers outside it, and what the tests do to the service."""

    def __init__(self, ns: SystemdNamespace, redis: RedisServer, fake: FakeThread) -> None:
        self.ns = ns
        self.redis = redis
        self.fake = fake
        self.health_port = free_port()
        self.db = redis.client()

    def good_config(self, extra: str = "") -> str:
        return config_toml(self.fake.fake.url, self.health_port, extra)

    def install(self, wheel: Path) -> None:
        ns = self.ns
        shutil.copy(wheel, ns.work / wheel.name)
        ns.run(["/usr/bin/python3", "-m", "venv", "/opt/symbold"], timeout=120)
        # The host's pip settings (its index mirrors and cache) come along through nsenter.
        ns.run(
            ["/opt/symbold/bin/pip", "install", "--quiet", str(ns.work / wheel.name)], timeout=300
        )
        ns.run(["chmod", "-R", "a+rX", "/opt/symbold"])
        ns.write_file("/etc/symbold/config.toml", self.good_config())
        ns.write_file("/etc/symbold/redis_url", self.redis.url + "\n", mode=0o600)
        ns.write_file(f"/etc/systemd/system/{UNIT}", (REPO / "systemd" / UNIT).read_text())
        ns.write_file(f"/etc/systemd/system/{UNIT}.d/test-timings.conf", DROP_IN)
        ns.systemctl("daemon-reload")

    def fresh_start(self) -> None:
        """Good config, no fault upstream, start limit reset, service (re)started and ready."""
        self.fake.do(self.fake.fake.set_mode, SPOT, None)
        self.ns.write_file("/etc/symbold/config.toml", self.good_config())
        self.ns.systemctl("stop", UNIT, check=False)
        self.ns.systemctl("reset-failed", UNIT, check=False)
        cursor = self.ns.cursor()
        self.ns.systemctl("start", UNIT, timeout=60)
        # READY=1 follows the first fresh snapshot; with a fresh one already in Redis it may
        # come before this process's own first cycle, so every test starts after that cycle.
        wait_until(
            "the first refresh of this start",
            lambda: REFRESHED & {e for e, _, _ in self.events_after(cursor)},
            30,
        )

    def show(self, *props: str) -> dict[str, str]:
        return self.ns.show(UNIT, *props)

    def refreshed_at(self) -> float:
        return float(self.db.get(PREFIX + "refreshed_at") or 0)

    def events_after(self, cursor: str) -> list[tuple[str, int, dict[str, Any]]]:
        return events(self.ns.journal(UNIT, cursor=cursor or None))


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once per session the way a release would be."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (built,) = out.glob("symbold-*.whl")
    return built


def system_python_reason() -> str | None:
    py = Path("/usr/bin/python3")
    if not py.exists():
        return "/usr/bin/python3 is missing (the unit's venv is built from the system Python)"
    probe = subprocess.run(
        [str(py), "-c", "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return "/usr/bin/python3 is older than 3.11 or lacks venv/ensurepip (python3-venv)"
    return None


@pytest.fixture(scope="module")
def deployment(wheel: Path) -> Iterator[Deployment]:
    reason = unavailable_reason() or system_python_reason()
    if reason:
        pytest.skip(f"real systemd test: {reason}")
    password = secrets.token_hex(16)
    with (
        RedisServer(password=password) as redis,
        FakeThread() as fake,
        SystemdNamespace() as ns,
    ):
        dep = Deployment(ns, redis, fake)
        try:
            dep.install(wheel)
            yield dep
        except NamespaceError as err:
            pytest.fail(f"{err}\n{ns.diagnostics()}")
        finally:
            ns.systemctl("stop", UNIT, check=False, timeout=60)
            dep.db.close()


@pytest.fixture
def dep(deployment: Deployment) -> Deployment:
    deployment.fresh_start()
    return deployment


# -- tests -------------------------------------------------------------------------------------


def test_loopback_is_shared_with_the_namespace(dep: Deployment) -> None:
    """The premise of the setup: a server on the host's 127.0.0.1 answers inside, and back."""
    probe = f"import socket; socket.create_connection(('127.0.0.1', {dep.redis.port}), 5).close()"
    dep.ns.run(["/opt/symbold/bin/python", "-c", probe])  # inside -> a server on the host
    with urllib.request.urlopen(f"http://127.0.0.1:{dep.health_port}/healthz", timeout=5) as r:
        assert r.status == 200


def test_started_unit_is_active_with_a_snapshot_from_the_credential(dep: Deployment) -> None:
    props = dep.show("ActiveState", "SubState", "Type", "NotifyAccess", "MainPID")
    assert props["ActiveState"] == "active"
    assert props["SubState"] == "running"
    assert props["Type"] == "notify"
    # The URL (and password) came only from LoadCredential: the snapshot is in that Redis.
    assert json.loads(dep.db.get(PREFIX + "symbols") or b"[]")
    assert dep.db.hget(PREFIX + "meta", "count") == str(len(SYMBOLS)).encode()


def test_ready_only_after_the_first_snapshot(dep: Deployment) -> None:
    dep.ns.systemctl("stop", UNIT)
    dep.db.flushdb()
    dep.fake.do(dep.fake.fake.set_mode, SPOT, Fault.slow(4.0))
    # `systemctl start` of a Type=notify unit returns when READY=1 arrives.
    dep.ns.systemctl("start", UNIT, timeout=60)
    published = dep.db.get(PREFIX + "refreshed_at")
    status = dep.show("StatusText")["StatusText"]
    assert published is not None, f"READY before any snapshot; STATUS was {status!r}"
    assert "symbols" in status


def test_systemctl_reload_refreshes(dep: Deployment) -> None:
    cursor = dep.ns.cursor()
    before = dep.fake.requests
    dep.ns.systemctl("reload", UNIT, timeout=30)
    wait_until("an upstream request after reload", lambda: dep.fake.requests > before, 15)
    wait_until(
        "a refresh logged after reload",
        lambda: REFRESHED & {e for e, _, _ in dep.events_after(cursor)},
        15,
    )
    names = [e for e, _, _ in dep.events_after(cursor)]
    assert "refresh.forced" in names
    assert dep.show("ActiveState")["ActiveState"] == "active"


def test_sighup_refreshes(dep: Deployment) -> None:
    cursor = dep.ns.cursor()
    before = dep.fake.requests
    pid = dep.show("MainPID")["MainPID"]
    dep.ns.systemctl("kill", "--kill-who=main", "--signal=SIGHUP", UNIT)
    wait_until("an upstream request after SIGHUP", lambda: dep.fake.requests > before, 15)
    wait_until(
        "a refresh logged after SIGHUP",
        lambda: REFRESHED & {e for e, _, _ in dep.events_after(cursor)},
        15,
    )
    assert dep.show("MainPID")["MainPID"] == pid  # refreshed in place, not restarted


def test_bad_config_on_reload_is_logged_and_the_old_one_kept(dep: Deployment) -> None:
    cursor = dep.ns.cursor()
    dep.ns.write_file("/etc/symbold/config.toml", dep.good_config() + "bogus_key = 1\n")
    dep.ns.systemctl("reload", UNIT, timeout=30)
    failed = wait_until(
        "config.reload_failed",
        lambda: [(e, p) for e, p, _ in dep.events_after(cursor) if e == "config.reload_failed"],
        15,
    )
    assert failed[0][1] == 3  # error
    assert dep.show("ActiveState")["ActiveState"] == "active"


def test_stalled_process_is_killed_by_the_watchdog_and_restarted(dep: Deployment) -> None:
    """No test-only loop-stall trigger exists in the daemon: SIGSTOP stops every ping, which
    proves the wiring (WatchdogSec -> WATCHDOG_USEC -> pings -> kill and restart)."""
    props = dep.show("MainPID", "NRestarts", "WatchdogUSec")
    assert props["WatchdogUSec"] == "3s"
    cursor = dep.ns.cursor()
    old_pid, restarts = props["MainPID"], int(props["NRestarts"])
    dep.ns.run(["kill", "-STOP", old_pid])

    def restarted() -> bool:
        now = dep.show("MainPID", "NRestarts", "ActiveState")
        return (
            int(now["NRestarts"]) > restarts
            and now["MainPID"] not in ("0", old_pid)
            and now["ActiveState"] == "active"
        )

    wait_until("a watchdog restart", restarted, 30)
    messages = [str(e.get("MESSAGE")) for e in dep.ns.journal(UNIT, cursor=cursor)]
    assert any("Watchdog timeout" in m for m in messages), messages
    assert any("'watchdog'" in m for m in messages), messages  # Failed with result 'watchdog'
    wait_until("a snapshot after the restart", lambda: dep.db.get(PREFIX + "refreshed_at"), 20)


def _start_with_fatal_config(dep: Deployment, config: str) -> tuple[str, int]:
    """Start with `config`; return (cursor before, NRestarts before)."""
    dep.ns.systemctl("stop", UNIT)
    dep.ns.systemctl("reset-failed", UNIT, check=False)
    restarts = int(dep.show("NRestarts")["NRestarts"])
    cursor = dep.ns.cursor()
    dep.ns.write_file("/etc/symbold/config.toml", config)
    started = dep.ns.run(["systemctl", "start", UNIT], check=False, timeout=60)
    assert started.returncode != 0
    return cursor, restarts


def _assert_stopped_for_good(dep: Deployment, restarts: int) -> None:
    props = dep.show("ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert props["ActiveState"] == "failed"
    assert props["Result"] == "exit-code"
    assert props["ExecMainStatus"] == "78"
    # No restart loop: over three RestartSec periods nothing is started again.
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        now = dep.show("ActiveState", "NRestarts")
        assert now == {"ActiveState": "failed", "NRestarts": str(restarts)}
        time.sleep(0.25)


def test_fatal_config_error_exits_78_without_restart_loop(dep: Deployment) -> None:
    _, restarts = _start_with_fatal_config(dep, dep.good_config() + "bogus_key = 1\n")
    _assert_stopped_for_good(dep, restarts)


def test_wrong_redis_password_exits_78_and_stays_secret(dep: Deployment) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    dep.ns.write_file(
        "/etc/symbold/redis_url", f"redis://:{wrong}@127.0.0.1:{dep.redis.port}/0\n", mode=0o600
    )
    try:
        cursor, restarts = _start_with_fatal_config(dep, dep.good_config())
        _assert_stopped_for_good(dep, restarts)
        text = dep.ns.journalctl("--unit", UNIT, f"--after-cursor={cursor}", "-o", "json")
        assert "authentication" in text
        assert wrong not in text
    finally:
        dep.ns.write_file("/etc/symbold/redis_url", dep.redis.url + "\n", mode=0o600)


def test_fatal_config_error_is_logged_at_error_priority(dep: Deployment) -> None:
    cursor, _ = _start_with_fatal_config(dep, dep.good_config() + "bogus_key = 1\n")
    entries = wait_until(
        "the configuration error in the journal",
        lambda: [
            e
            for e in dep.ns.journal(UNIT, cursor=cursor)
            if e.get("SYSLOG_IDENTIFIER") == "symbold" and "bogus_key" in str(e.get("MESSAGE"))
        ],
        10,
    )
    assert all(int(e["PRIORITY"]) <= 3 for e in entries), entries


def test_journald_priorities_of_known_events(dep: Deployment) -> None:
    cursor = dep.ns.cursor()
    # A transient upstream error (500) is a warning; the next good reply is info.
    dep.fake.do(dep.fake.fake.fail, SPOT, Fault.status(500))
    dep.ns.systemctl("reload", UNIT, timeout=30)
    found = wait_until(
        "refresh.failed",
        lambda: [(e, p, f) for e, p, f in dep.events_after(cursor) if e == "refresh.failed"],
        15,
    )
    _, priority, fields = found[0]
    assert fields["level"] == "warning"
    assert priority == 4
    # The start of this test's service: info.
    started = [(e, p) for e, p, _ in events(dep.ns.journal(UNIT)) if e == "service.started"]
    assert started
    assert {p for _, p in started} == {6}
    # Each line is one entry: no entry of ours is a fragment of a JSON object.
    ours = [e for e in dep.ns.journal(UNIT) if e.get("SYSLOG_IDENTIFIER") == "symbold"]
    fragments = [
        e["MESSAGE"]
        for e in ours
        if isinstance(e.get("MESSAGE"), str) and e["MESSAGE"].lstrip().startswith(('"', "}"))
    ]
    assert not fragments


STATUS_RE = re.compile(r"spot: (\d+) symbols, (\d+) s old")


def test_systemctl_status_text(dep: Deployment) -> None:
    text = wait_until(
        "a STATUS with the symbol count",
        lambda: t if "symbols" in (t := dep.ns.systemctl("status", UNIT, check=False)) else "",
        10,
    )
    assert "Active: active (running)" in text
    assert "symbold - Binance symbol metadata cache warmer for Redis" in text
    assert "Main PID:" in text
    match = STATUS_RE.search(text)
    assert match, text
    assert int(match.group(1)) == len(SYMBOLS)


def test_status_line_ages_between_refreshes(dep: Deployment) -> None:
    def age() -> int:
        match = STATUS_RE.search(dep.show("StatusText")["StatusText"])
        return int(match.group(2)) if match else -1

    first = wait_until("a STATUS with an age", lambda: age() >= 0 and age() + 1, 10) - 1
    wait_until("the STATUS age to advance", lambda: age() >= first + 2, 8)


def test_health_and_metrics_endpoints(dep: Deployment) -> None:
    base = f"http://127.0.0.1:{dep.health_port}"
    with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
        assert r.status == 200
        assert r.read().startswith(b"ok")
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        body = r.read().decode()
    for name in ("symbold_refresh_total", "symbold_snapshot_age_seconds", "symbold_symbols"):
        assert name in body


def test_no_password_in_journal_or_unit_state(dep: Deployment) -> None:
    """Runs last: everything the tests above made the daemon log is in the journal."""
    password = dep.redis.password
    assert password
    assert dep.db.get(PREFIX + "refreshed_at")  # the password was used, through the credential
    journal = dep.ns.journalctl("-o", "json")  # the whole journal, systemd's lines too
    assert dep.ns.journalctl("-u", UNIT, "-o", "cat")
    assert password not in journal
    assert password not in dep.ns.systemctl("show", UNIT)
    assert password not in dep.ns.systemctl("status", UNIT, check=False)
    pid = dep.show("MainPID")["MainPID"]
    environ = dep.ns.run(["cat", f"/proc/{pid}/environ", f"/proc/{pid}/cmdline"]).stdout
    assert "CREDENTIALS_DIRECTORY" in environ
    assert password not in environ
