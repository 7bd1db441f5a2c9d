"""Run `symbold` as a real child process: follow its JSON log lines as events
(`DaemonProcess`), run a command to completion (`run_cli`, `run_cli_journal`), and steer a
`symbold run` by SIGHUP and sd_notify (`Harness`).

The `Harness` gives an exact, sleep-free cycle marker: the daemon's ``NOTIFY_SOCKET`` points at
a datagram socket of the test, every finished cycle sends one ``STATUS=`` line, and a SIGHUP
(forced refresh) ends with ``READY=1`` once its cycle is done. Tests drive cycles with
:meth:`Harness.cycle` and read the outcome from the log events the cycle produced.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.support.notify_socket import NotifySocket

Event = dict[str, Any]

# Events that end a cycle, and what the cycle did.
OUTCOME_EVENTS = {
    "refresh.ok": "accepted",
    "refresh.unchanged": "unchanged",
    "refresh.failed": "error",
    "refresh.rejected": "rejected",
    "refresh.skipped": "skipped",
    "redis.unavailable": "redis_down",
    "redis.auth_failed": "redis_down",  # the password changed under a running daemon
    "redis.write_refused": "redis_down",  # READONLY replica, OOM with noeviction
    "refresh.fenced": "fenced",  # another daemon leads the market
}


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The test process's environment without anything that would steer symbold."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "SYMBOLD_", "JOURNAL_", "NOTIFY_", "WATCHDOG_"))
        and k != "CELERY_BROKER_URL"
    }
    env.update(extra)
    return env


class DaemonProcess:
    """`python -m daemon ARGS` with JSON logs on stdout, read line by line as events."""

    def __init__(
        self,
        *args: str,
        env: Mapping[str, str],
        config: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        """`preexec` runs in the child before exec (e.g. to lower a resource limit there)."""
        self.args = list(args)
        self.preexec = preexec
        if config is not None:
            self.args += ["--config", str(config)]
        self.env = clean_env({**env, "SYMBOLD_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"})
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[Event] = []
        self.raw: list[str] = []
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> DaemonProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon",
            *self.args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=self.preexec,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            text = line.decode(errors="replace").rstrip("\n")
            async with self._changed:
                self.raw.append(text)
                try:
                    event = json.loads(text)
                except ValueError:
                    event = {"event": "<non-json>", "text": text}
                if isinstance(event, dict):
                    self.events.append(event)
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def count(self, name: str, **fields: Any) -> int:
        return sum(
            1
            for e in self.events
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
        )

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds (re-checked at every log line); wrap in a timeout."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate() or self._exited())

        if not predicate():
            raise AssertionError("daemon exited before the condition held:\n" + self.output())

    async def wait_event(self, name: str, n: int = 1, **fields: Any) -> None:
        await self.wait_for(lambda: self.count(name, **fields) >= n)

    def _exited(self) -> bool:
        return self._reader is not None and self._reader.done()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self) -> int:
        assert self.proc is not None
        assert self._reader is not None
        code = await self.proc.wait()
        await self._reader
        return code

    def output(self) -> str:
        return "\n".join(self.raw)

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader


def run_python(
    *argv: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """This interpreter with `argv` (``-c CODE ...``, ``-m MODULE ...``) run to completion within
    30 s, in a clean environment plus `env`; text output captured, the exit status not checked."""
    return subprocess.run(
        [sys.executable, *argv],
        env=clean_env(env or {}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m daemon ARGS` to completion in a clean environment plus `env`."""
    return run_python("-m", "daemon", *args, env=env)


def run_cli_journal(
    *args: str, env: Mapping[str, str] | None = None, matching: bool = True
) -> tuple[int, list[str]]:
    """`python -m daemon ARGS` with stdout and stderr on one pipe, as systemd connects them to
    the journal, and ``JOURNAL_STREAM`` set to that pipe's device:inode (`matching`) or to
    another pipe's (an inherited variable that names some other stream).
    Returns the exit code and the output lines."""
    read_fd, write_fd = os.pipe()
    other_read, other_write = os.pipe()
    named = os.fstat(write_fd if matching else other_write)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", *args],
            env=clean_env({**(env or {}), "JOURNAL_STREAM": f"{named.st_dev}:{named.st_ino}"}),
            stdout=write_fd,
            stderr=write_fd,
        )
    finally:
        os.close(write_fd)
    try:
        with os.fdopen(read_fd, encoding="utf-8", errors="replace") as out:
            text = out.read()  # until the child closes it: it has exited
        code = proc.wait(timeout=30)
    finally:
        os.close(other_read)
        os.close(other_write)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, text.splitlines()


# ============================================================================================
# `symbold run` steered by SIGHUP and sd_notify


def toml_config(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """A TOML document from {"section": {"key": value}} (values: str, bool, int, float, list)."""

    def render(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return json.dumps(value)
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(render(v) for v in value) + "]"
        return repr(value)

    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {render(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


# Fast, bounded settings: a fault shows up within a second or two, and cycles only happen
# when the test asks (SIGHUP), unless a test lowers the backoff to let the daemon retry alone.
BASE_CONFIG: dict[str, dict[str, Any]] = {
    "markets.spot": {"interval": 3600.0, "jitter": 0.0, "cache_ttl": 3600},
    "upstream": {
        "timeout_total": 1.0,
        "timeout_connect": 0.5,
        "timeout_read": 1.0,
        "backoff_base": 30.0,
        "backoff_ceiling": 60.0,
        "ban_fallback": 2.0,
    },
    "redis": {
        "connect_timeout": 0.5,
        "socket_timeout": 1.0,
        "retry_attempts": 2,
        "retry_backoff_base": 0.01,
        "retry_backoff_cap": 0.05,
    },
    "scheduler": {"min_refresh_gap": 0.0, "check_interval": 0.1, "shutdown_timeout": 2.0},
}


def merged_config(
    fake_url: str, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    config = {name: dict(values) for name, values in BASE_CONFIG.items()}
    config["markets.spot"]["base_urls"] = [fake_url]
    for name, values in (overrides or {}).items():
        config.setdefault(name, {}).update(values)
    return config


class Harness:
    """One `symbold run` child process, its sd_notify socket and its JSON log."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        redis_url: str,
        fake_url: str,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        watchdog_usec: int | None = None,
        name: str = "d",
    ) -> None:
        self.dir = tmp_path / name
        self.dir.mkdir(exist_ok=True)
        self.config_path = self.dir / "config.toml"
        self.config_path.write_text(toml_config(merged_config(fake_url, config)))
        self.redis_url = redis_url
        self.watchdog_usec = watchdog_usec
        self.notify = NotifySocket()
        self.proc: DaemonProcess | None = None

    @property
    def d(self) -> DaemonProcess:
        assert self.proc is not None
        return self.proc

    async def start(self) -> Harness:
        self.notify.start()
        env = {"REDIS_URL": self.redis_url, "NOTIFY_SOCKET": self.notify.path}
        if self.watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        self.proc = await DaemonProcess("run", env=env, config=self.config_path).start()
        return self

    async def wait_ready(self) -> None:
        await self.notify.wait_until(lambda: self.notify.count("READY", "1") >= 1 or self.exited)
        assert not self.exited, self.d.output()

    @property
    def exited(self) -> bool:
        return self.d.proc is not None and self.d.proc.returncode is not None

    @property
    def pid(self) -> int:
        assert self.d.proc is not None
        return self.d.proc.pid

    async def wait_cycles(self, n: int) -> None:
        """Wait until `n` cycles have finished in total (counted from the daemon's start)."""
        await self.notify.wait_until(lambda: self.notify.cycles() >= n)

    async def first_cycle(self) -> list[str]:
        """Wait for the cycle the daemon runs at start; returns its outcome events."""
        await self.wait_cycles(1)
        await self.settle(0, 0)
        return self.outcomes()

    async def cycle(self) -> list[str]:
        """Force one refresh (SIGHUP) and wait until it is done; returns the outcome events
        logged meanwhile (e.g. ["error"], ["error", "redis_down"], ["accepted"])."""
        return await self.finish(self.begin())

    def begin(self) -> tuple[int, int, int]:
        """Send SIGHUP; :meth:`finish` waits for that cycle (a test acts in between)."""
        token = (len(self.d.events), self.notify.count("READY", "1"), len(self.notify.messages))
        self.d.signal(signal.SIGHUP)
        return token

    async def finish(self, token: tuple[int, int, int]) -> list[str]:
        mark, ready, seen = token
        await self.notify.wait_until(lambda: self.notify.count("READY", "1") > ready)
        await self.settle(mark, seen)
        return self.outcomes(since=mark)

    async def settle(self, mark: int, seen: int) -> None:
        """The READY datagram can overtake the log lines written before it (another channel):
        wait until the log shows the end of the cycle the last STATUS line describes."""
        statuses = [m["STATUS"] for _, m in self.notify.messages[seen:] if set(m) == {"STATUS"}]
        redis_down = bool(statuses) and "redis unavailable" in statuses[-1]

        def logged() -> bool:
            found = self.outcomes(since=mark)
            return "redis_down" in found if redis_down else bool(found)

        try:
            async with asyncio.timeout(10):
                await self.d.wait_for(logged)
        except TimeoutError:
            raise AssertionError(
                f"cycle ended (STATUS {statuses[-1:]}) but its outcome was never logged:\n"
                + self.d.output()
            ) from None

    def outcomes(self, since: int = 0) -> list[str]:
        return [
            OUTCOME_EVENTS[e["event"]]
            for e in self.d.events[since:]
            if e.get("event") in OUTCOME_EVENTS
        ]

    def events(self, name: str, since: int = 0) -> list[Event]:
        return [e for e in self.d.events[since:] if e.get("event") == name]

    async def stop(self) -> int:
        self.d.signal(signal.SIGTERM)
        return await self.d.wait()

    async def close(self) -> None:
        if self.proc is not None:
            await self.proc.close()
        await self.notify.close()
