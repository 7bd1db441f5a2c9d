"""Serving after Redis lost the cache: a cycle or `watch` republishes the snapshot from
memory or from last_good, whatever upstream says meanwhile.

Real redis-server and fake Binance processes on loopback, nothing mocked (see conftest.py).
"""

from __future__ import annotations

import pytest
import redis.asyncio

from daemon.config.settings import Settings
from daemon.refresh.cycle import MarketRefresher
from tests.refresh.conftest import OwnServer
from tests.refresh.spot_market import CACHE_TTL, KEYS
from tests.support.builders import accepted, open_refresher
from tests.support.fake_binance import SPOT, FakeBinance, Fault
from tests.support.stored_snapshot import read_meta, read_metrics, read_stored


async def test_redis_restarted_empty_then_upstream_fails_republishes_from_memory(
    own: OwnServer, fake: FakeBinance
) -> None:
    server, check, ref = own.server, own.check, own.ref
    good = await accepted(ref)
    stored = await read_stored(check)
    server.restart()
    assert await check.dbsize() == 0
    fake.set_mode(SPOT, Fault.status(500))

    result = await ref.refresh_once()

    assert result.outcome == "error"
    assert result.redis_down is False
    after = await read_stored(check)
    assert after.symbols == stored.symbols
    assert after.last_good == stored.symbols
    assert after.by_symbol == stored.by_symbol
    assert after.refreshed_at == stored.refreshed_at
    assert await check.ttl(KEYS.symbols) == CACHE_TTL
    meta = await read_meta(check)
    assert meta["version"] == good.version
    assert (meta["count"], meta["listed"]) == ("8", "6")
    assert meta["stale"] == "1"
    assert meta["last_error"] == result.reason
    assert await read_metrics(check) == {"refresh_error": 1, "fallback_used": 1}

    # Next failing cycle: the cache is there, nothing is republished again.
    assert (await ref.refresh_once()).outcome == "error"
    assert await read_metrics(check) == {"refresh_error": 2, "fallback_used": 1}


async def test_redis_restarted_empty_then_a_rejected_reply_republishes_too(
    own: OwnServer, fake: FakeBinance
) -> None:
    server, check, ref = own.server, own.check, own.ref
    await accepted(ref)
    stored = await read_stored(check)
    server.restart()
    fake.fail(SPOT, Fault.invalid_json())
    result = await ref.refresh_once()
    assert result.outcome == "rejected"
    after = await read_stored(check)
    assert (after.symbols, after.by_symbol) == (stored.symbols, stored.by_symbol)
    meta = await read_meta(check)
    assert meta["stale"] == "1"
    assert meta["last_error"] == f"rejected: {result.reason}"
    assert await read_metrics(check) == {"refresh_rejected": 1, "fallback_used": 1}


async def test_watch_does_nothing_while_the_cache_is_there(
    refresher: MarketRefresher, r: redis.asyncio.Redis
) -> None:
    assert await refresher.watch() is None  # nothing anywhere yet
    await accepted(refresher)
    assert await refresher.watch() is None
    assert await read_metrics(r) == {"refresh_success": 1}
    assert (await read_meta(r))["stale"] == "0"


@pytest.mark.parametrize("how", ["deleted", "expired"])
async def test_watch_republishes_a_vanished_cache_from_memory(
    how: str, refresher: MarketRefresher, r: redis.asyncio.Redis
) -> None:
    await accepted(refresher)
    stored = await read_stored(r)
    if how == "deleted":
        await r.delete(KEYS.symbols)
    else:
        await r.pexpireat(KEYS.symbols, 1)  # a deadline in the past: expired now
    assert await r.exists(KEYS.symbols) == 0

    assert await refresher.watch() == "memory"

    assert await r.get(KEYS.symbols) == stored.symbols
    assert await r.ttl(KEYS.symbols) == CACHE_TTL
    assert await read_stored(r) == stored
    assert (await read_meta(r))["stale"] == "1"
    assert await read_metrics(r) == {"refresh_success": 1, "fallback_used": 1}
    assert await refresher.watch() is None
    assert await read_metrics(r) == {"refresh_success": 1, "fallback_used": 1}


async def test_watch_republishes_from_last_good_when_nothing_is_in_memory(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis
) -> None:
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
    stored = await read_stored(r)
    await r.delete(KEYS.symbols)

    async with open_refresher(redis_url, settings) as fresh:
        assert fresh.held is None
        assert await fresh.watch() == "last_good"

    assert await r.get(KEYS.symbols) == stored.last_good
    assert await r.ttl(KEYS.symbols) == CACHE_TTL
    assert await r.ttl(KEYS.last_good) == -1
    assert await r.hgetall(KEYS.by_symbol) == stored.by_symbol
    meta = await read_meta(r)
    assert meta["stale"] == "1"
    assert stored.version is not None
    assert meta["version"] == stored.version.decode()
    assert await read_metrics(r) == {"refresh_success": 1, "fallback_used": 1}


async def test_failing_cycle_of_a_fresh_daemon_republishes_from_last_good(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
    stored = await read_stored(r)
    await r.delete(KEYS.symbols)
    fake.fail(SPOT, Fault.status(500))

    async with open_refresher(redis_url, settings) as fresh:
        result = await fresh.refresh_once()

    assert result.outcome == "error"
    assert await r.get(KEYS.symbols) == stored.last_good
    assert await r.ttl(KEYS.symbols) == CACHE_TTL
    meta = await read_meta(r)
    assert (meta["stale"], meta["last_error"]) == ("1", result.reason)
    assert await read_metrics(r) == {
        "refresh_success": 1,
        "refresh_error": 1,
        "fallback_used": 1,
    }


async def test_watch_with_nothing_in_memory_or_redis_does_nothing(
    refresher: MarketRefresher, r: redis.asyncio.Redis
) -> None:
    assert await refresher.watch() is None
    assert await r.dbsize() == 0


async def test_watch_after_redis_restarted_empty_republishes_everything(own: OwnServer) -> None:
    server, check, ref = own.server, own.check, own.ref
    good = await accepted(ref)
    stored = await read_stored(check)
    server.restart()
    assert await ref.watch() == "memory"
    after = await read_stored(check)
    assert after == stored
    meta = await read_meta(check)
    assert (meta["version"], meta["count"], meta["listed"], meta["stale"]) == (
        good.version,
        "8",
        "6",
        "1",
    )
    assert meta["last_error"] == ""
    assert await read_metrics(check) == {"fallback_used": 1}
