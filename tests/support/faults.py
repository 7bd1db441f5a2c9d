"""Helpers for the reliability suite: a `symbold run` harness steered by sd_notify and its JSON
log, snapshot reads, and process measurements.

The harness runs the daemon as a real child process with ``NOTIFY_SOCKET`` pointing at a
datagram socket of the test. That gives an exact, sleep-free cycle marker: every finished cycle
sends one ``STATUS=`` line, and a SIGHUP (forced refresh) ends with ``READY=1`` once its cycle is
done. Tests drive cycles with :meth:`Harness.cycle` (SIGHUP, wait for READY) and read the
outcome from the log events the cycle produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff

from tests.support.builders import Row, replace_row
from tests.support.daemon_proc import DaemonProcess, Event

PREFIX = "symbold:{spot}:"
SYMBOLS_KEY = PREFIX + "symbols"
LAST_GOOD_KEY = PREFIX + "last_good"
REFRESHED_KEY = PREFIX + "refreshed_at"
BY_SYMBOL_KEY = PREFIX + "by_symbol"
META_KEY = PREFIX + "meta"
METRICS_KEY = PREFIX + "metrics"
BAN_KEY = PREFIX + "ban_until"

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


def retick(rows: list[Row], tick: str) -> list[Row]:
    """Every row with another tick size: every record changes, so the next snapshot write
    carries all of them (a large MULTI), not a small incremental one."""
    out = rows
    for row in rows:
        out = replace_row(out, row["symbol"], tick_size=tick)
    return out


# ============================================================================================
# sd_notify receiver


class NotifySocket:
    """A datagram socket where the daemon's NOTIFY_SOCKET points; messages are kept in order."""

    def __init__(self, path: str | None = None) -> None:
        # An abstract socket by default: a tmp_path can be longer than sun_path allows.
        path = path or f"@symbold-test-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + path[1:] if path.startswith("@") else path)
        self.sock.setblocking(False)
        self.path = path
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> NotifySocket:
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 65536)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            async with self._changed:
                self.messages.append((time.monotonic(), fields))
                self._changed.notify_all()

    def count(self, key: str, value: str | None = None) -> int:
        return sum(1 for _, m in self.messages if key in m and (value is None or m[key] == value))

    def times(self, key: str, value: str | None = None) -> list[float]:
        return [t for t, m in self.messages if key in m and (value is None or m[key] == value)]

    def cycles(self) -> int:
        """Finished cycles: STATUS lines sent on their own (not with READY/STOPPING)."""
        return sum(1 for _, m in self.messages if set(m) == {"STATUS"})

    async def wait_for(self, predicate: Any) -> None:
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sock.close()


# ============================================================================================
# the daemon harness


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
        await self.notify.wait_for(lambda: self.notify.count("READY", "1") >= 1 or self.exited)
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
        await self.notify.wait_for(lambda: self.notify.cycles() >= n)

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
        await self.notify.wait_for(lambda: self.notify.count("READY", "1") > ready)
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


# ============================================================================================
# reading what Redis serves


def direct_client(url: str) -> redis.asyncio.Redis:
    """A plain bytes client for assertions (not the code under test), with short timeouts
    and a few immediate retries so it reconnects by itself after a restart."""
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 3),
    )


@dataclass(frozen=True)
class Snapshot:
    """The data a reader depends on, byte for byte, read in one MULTI."""

    symbols: bytes | None
    last_good: bytes | None
    refreshed_at: bytes | None
    by_symbol: dict[bytes, bytes]
    version: bytes | None
    count: bytes | None

    @property
    def listed(self) -> list[str]:
        return [r["symbol"] for r in json.loads(self.symbols or b"[]")]

    def is_whole(self) -> bool:
        """symbols, last_good, by_symbol and meta describe one snapshot."""
        if self.symbols is None or self.version is None or not self.by_symbol:
            return False
        if self.last_good != self.symbols:
            return False
        listed = json.loads(self.symbols)
        if any(self.by_symbol.get(r["symbol"].encode()) is None for r in listed):
            return False
        return self.count == str(len(self.by_symbol)).encode()

    def same_data(self, other: Snapshot) -> bool:
        return (self.symbols, self.last_good, self.by_symbol, self.version) == (
            other.symbols,
            other.last_good,
            other.by_symbol,
            other.version,
        )


async def read_snapshot(client: redis.asyncio.Redis, *, multi: bool = True) -> Snapshot:
    """One consistent read (a MULTI). ``multi=False`` for a server over maxmemory, which
    refuses even reads inside a transaction."""
    pipe = client.pipeline(transaction=multi)
    pipe.get(SYMBOLS_KEY)
    pipe.get(LAST_GOOD_KEY)
    pipe.get(REFRESHED_KEY)
    pipe.hgetall(BY_SYMBOL_KEY)
    pipe.hget(META_KEY, "version")
    pipe.hget(META_KEY, "count")
    symbols, last_good, refreshed, by_symbol, version, count = await pipe.execute()
    return Snapshot(symbols, last_good, refreshed, by_symbol, version, count)


async def read_metrics(client: redis.asyncio.Redis) -> dict[str, int]:
    raw: dict[bytes, bytes] = await client.hgetall(METRICS_KEY)  # type: ignore[assignment]
    return {k.decode(): int(v) for k, v in raw.items()}


async def read_meta(client: redis.asyncio.Redis) -> dict[str, str]:
    raw: dict[bytes, bytes] = await client.hgetall(META_KEY)  # type: ignore[assignment]
    return {k.decode(): v.decode() for k, v in raw.items()}


async def symbold_client_ids(client: redis.asyncio.Redis, name: str = "symbold") -> list[int]:
    """IDs of the daemon's connections (it names them with CLIENT SETNAME)."""
    return [int(c["id"]) for c in await client.client_list() if c.get("name") == name]


async def kill_clients(client: redis.asyncio.Redis, name: str = "symbold") -> int:
    """CLIENT KILL every connection called `name`; returns how many were killed."""
    killed = 0
    for client_id in await symbold_client_ids(client, name):
        with contextlib.suppress(redis.ResponseError):
            killed += int(await client.client_kill_filter(_id=str(client_id)))
    return killed


# ============================================================================================
# process measurements


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS / VmHWM / VmSize of a process, in KiB, from /proc/PID/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmSize", "VmPeak"):
            out[key] = int(value.split()[0])
    return out


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Stopwatch:
    """Monotonic seconds since creation (or the last `reset`)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def reset(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0
