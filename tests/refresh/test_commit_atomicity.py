"""A commit is atomic and counted once: readers never see a mix of two snapshots, and a
transaction that timed out client-side is neither re-sent nor counted twice.

Real redis-server and fake Binance processes on loopback, nothing mocked (see conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio

from daemon.config.settings import Settings
from daemon.refresh.cycle import MarketRefresher
from tests.refresh.conftest import OwnServer, open_own
from tests.refresh.spot_market import CHANGED_PAYLOAD, KEYS
from tests.support.builders import (
    accepted,
    make_rows,
    make_settings,
    open_refresher,
    payload,
    replace_row,
    symbol_row,
)
from tests.support.fake_binance import SPOT, FakeBinance, Fault
from tests.support.stored_snapshot import read_meta, read_metrics

WATCHED = ["C0000USDT", "C0001FDUSD", "ONLYAUSDT", "ONLYBUSDT"]


@dataclass
class ReaderStats:
    reads: int = 0
    bad: list[str] = field(default_factory=list)


async def _reader_loop(
    url: str,
    stop: asyncio.Event,
    stats: ReaderStats,
    read: Callable[[redis.asyncio.Redis], Awaitable[str | None]],
) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        while not stop.is_set():
            problem = await read(client)
            stats.reads += 1
            if problem is not None and len(stats.bad) < 20:
                stats.bad.append(problem)
    finally:
        await client.aclose()


async def test_readers_never_see_a_mix_of_two_snapshots(
    redis_url: str, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    base = make_rows(40)
    rows_a = [*base, symbol_row("ONLYAUSDT", "ONLYA", "USDT")]
    rows_b = [
        *replace_row(base, "C0000USDT", tick_size="0.00000100"),
        symbol_row("ONLYBUSDT", "ONLYB", "USDT"),
        symbol_row("ONLYB2USDT", "ONLYB2", "USDT"),
    ]
    payloads = [payload(rows_a), payload(rows_b)]
    settings = make_settings(fake.url)

    # What each version looks like, learnt from one commit of each.
    expected: dict[bytes, tuple[Any, ...]] = {}
    async with open_refresher(redis_url, settings) as ref:
        for body in payloads:
            fake.set_payload(SPOT, body)
            await accepted(ref)
            version = await r.hget(KEYS.meta, "version")
            assert version is not None
            expected[version] = (
                await r.get(KEYS.symbols),
                await r.hmget(KEYS.by_symbol, WATCHED),
                await r.hget(KEYS.meta, "count"),
                await r.hlen(KEYS.by_symbol),
            )
    assert len(expected) == 2
    all_symbols = {exp[0] for exp in expected.values()}
    shared = {exp[1][1] for exp in expected.values()}
    assert len(shared) == 1  # C0001FDUSD is the same in both
    tick_values = {exp[1][0] for exp in expected.values()}
    assert len(tick_values) == 2

    async def in_multi(client: redis.asyncio.Redis) -> str | None:
        pipe = client.pipeline(transaction=True)
        pipe.hget(KEYS.meta, "version")
        pipe.get(KEYS.symbols)
        pipe.get(KEYS.last_good)
        pipe.hmget(KEYS.by_symbol, WATCHED)
        pipe.hget(KEYS.meta, "count")
        pipe.hlen(KEYS.by_symbol)
        version, symbols, last_good, by_symbol, count, hlen = await pipe.execute()
        want = expected.get(version)
        if want is None:
            return f"unknown version {version!r}"
        if (symbols, by_symbol, count, hlen) != want:
            return f"mixed read under version {version!r}"
        if last_good != symbols:
            return "last_good differs from symbols"
        return None

    async def one_by_one(client: redis.asyncio.Redis) -> str | None:
        # Single commands, no MULTI: each must still see a whole value of one snapshot.
        if await client.get(KEYS.symbols) not in all_symbols:
            return "symbols missing or foreign"
        if await client.get(KEYS.last_good) not in all_symbols:
            return "last_good missing or foreign"
        if await client.hget(KEYS.meta, "version") not in expected:
            return "version missing or foreign"
        if await client.hget(KEYS.by_symbol, "C0001FDUSD") not in shared:
            return "by_symbol lost a symbol present in both snapshots"
        if await client.hget(KEYS.by_symbol, "C0000USDT") not in tick_values:
            return "by_symbol C0000USDT missing or foreign"
        return None

    stop = asyncio.Event()
    stats = [ReaderStats() for _ in range(4)]
    readers = [
        asyncio.create_task(_reader_loop(redis_url, stop, stats[0], in_multi)),
        asyncio.create_task(_reader_loop(redis_url, stop, stats[1], in_multi)),
        asyncio.create_task(_reader_loop(redis_url, stop, stats[2], one_by_one)),
        asyncio.create_task(_reader_loop(redis_url, stop, stats[3], one_by_one)),
    ]
    cycles = 120
    try:
        async with open_refresher(redis_url, settings) as ref:
            for i in range(cycles):
                fake.set_payload(SPOT, payloads[i % 2])
                await accepted(ref)
    finally:
        stop.set()
        await asyncio.gather(*readers)

    assert [s.bad for s in stats] == [[], [], [], []]
    for s in stats:
        assert s.reads >= cycles  # the readers really ran alongside the writer
    assert await read_metrics(r) == {"refresh_success": cycles + 2}
    assert await r.xlen(KEYS.changes) == cycles + 1


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


@contextlib.asynccontextmanager
async def server_asleep(port: int, seconds: float) -> AsyncIterator[None]:
    """Make the server run DEBUG SLEEP and return once it is asleep.

    "Asleep" is observed, not assumed: a PING on another connection goes unanswered. (A
    sleeping server answers nothing; an awake one answers PING in well under a millisecond.)
    """
    sleeper_r, sleeper_w = await asyncio.open_connection("127.0.0.1", port)
    probe_r, probe_w = await asyncio.open_connection("127.0.0.1", port)
    try:
        sleeper_w.write(_resp("DEBUG", "SLEEP", str(seconds)))
        await sleeper_w.drain()
        for _ in range(100):
            probe_w.write(_resp("PING"))
            await probe_w.drain()
            try:
                await asyncio.wait_for(probe_r.readline(), 0.1)
            except TimeoutError:
                break
        else:
            raise AssertionError("the server never went to sleep")
        yield
        # Wait for the sleep to end (the OK), so nothing is left in flight.
        assert await asyncio.wait_for(sleeper_r.readline(), 5) == b"+OK\r\n"
    finally:
        for writer in (sleeper_w, probe_w):
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _calls(stats: dict[str, Any], command: str) -> int:
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


def run_while_asleep(ref: MarketRefresher, method: str, port: int, seconds: float) -> None:
    """Make the store's `method` run while the server sleeps `seconds` (longer than the
    client's socket timeout): the call times out client-side and redis-py may send it again."""
    real = getattr(ref.store, method)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        async with server_asleep(port, seconds):
            return await real(*args, **kwargs)

    setattr(ref.store, method, wrapped)


SOCKET_TIMEOUT = 0.5


@pytest.fixture
async def sleepy(redis_factory: Any, settings: Settings) -> AsyncIterator[OwnServer]:
    """A refresher whose Redis client gives up after SOCKET_TIMEOUT (retrying 3 times), its
    server (so a test can put it to sleep) and a plain client to it."""
    overrides = {"socket_timeout": SOCKET_TIMEOUT, "retry_attempts": 3}
    async with open_own(redis_factory, settings, overrides) as server:
        yield server


async def test_a_retried_commit_counts_success_exactly_once(
    sleepy: OwnServer, fake: FakeBinance
) -> None:
    ref, admin = sleepy.ref, sleepy.check
    await accepted(ref)
    fake.set_payload(SPOT, CHANGED_PAYLOAD)
    # Forget the held snapshot so the full write runs. Every write is WATCHed now (its keys'
    # types are checked first), and redis-py never re-sends a watched transaction; the
    # one-time token still guards a reply lost after EXEC.
    ref.held = None
    run_while_asleep(ref, "commit", sleepy.server.port, SOCKET_TIMEOUT + 0.4)
    await admin.config_resetstat()

    result = await ref.refresh_once()

    assert result.outcome == "accepted"
    stats = await admin.info("commandstats")
    assert _calls(stats, "exec") == 1
    assert await read_metrics(admin) == {"refresh_success": 2}
    meta = await read_meta(admin)
    assert meta["version"] == result.version
    # One commit, one stream entry: no duplicate.
    entries = await admin.xrange(KEYS.changes)
    assert [e[1][b"version"] for e in entries] == [result.version.encode()]


async def test_incremental_commit_is_not_resent(sleepy: OwnServer, fake: FakeBinance) -> None:
    ref, admin = sleepy.ref, sleepy.check
    await accepted(ref)
    assert ref.held is not None  # so the next commit writes only the difference
    fake.set_payload(SPOT, CHANGED_PAYLOAD)
    run_while_asleep(ref, "commit", sleepy.server.port, SOCKET_TIMEOUT + 0.4)
    result = await ref.refresh_once()
    # A watched transaction that timed out is not re-sent as it is; the store then writes the
    # full snapshot with the same one-time token, so success counts once whether or not the
    # server ran the first EXEC after it woke.
    assert result.outcome in ("accepted", "error")
    assert await read_metrics(admin) == {"refresh_success": 2}
    fresh = await ref.refresh_once()  # the same payload again: nothing half-written
    assert fresh.ok
    assert (await read_meta(admin))["version"] == fresh.version == result.version or (
        result.outcome == "error"
    )
    assert await read_metrics(admin) == {"refresh_success": 3}


async def test_a_retried_failure_record_counts_exactly_once(
    sleepy: OwnServer, fake: FakeBinance
) -> None:
    ref, admin = sleepy.ref, sleepy.check
    await accepted(ref)
    fake.fail(SPOT, Fault.status(500))
    run_while_asleep(ref, "record_failure", sleepy.server.port, SOCKET_TIMEOUT + 0.4)
    await admin.config_resetstat()

    result = await ref.refresh_once()

    assert result.outcome == "error"
    assert result.redis_down is False
    stats = await admin.info("commandstats")
    assert _calls(stats, "exec") == 1  # watched: never re-sent
    assert await read_metrics(admin) == {"refresh_success": 1, "refresh_error": 1}
