"""Rate limits at the refresher level: 429 and 418 store a ban in Redis that this daemon and a
restarted one honour without asking upstream, and a banned cycle still republishes the cache.

Real redis-server and fake Binance processes on loopback, nothing mocked (see conftest.py).
"""

from __future__ import annotations

import time

import redis.asyncio

from daemon.config.settings import Settings
from daemon.refresh.cycle import MarketRefresher
from tests.refresh.spot_market import BAN_FALLBACK, CACHE_TTL, KEYS
from tests.support.builders import accepted, open_refresher
from tests.support.fake_binance import SPOT, FakeBinance, Fault
from tests.support.stored_snapshot import read_meta, read_metrics, read_stored


async def test_429_with_retry_after_stores_a_ban_that_a_restarted_daemon_honours(
    redis_url: str,
    refresher: MarketRefresher,
    settings: Settings,
    r: redis.asyncio.Redis,
    fake: FakeBinance,
) -> None:
    good = await accepted(refresher)
    stored = await read_stored(r)
    fake.fail(SPOT, Fault.rate_limited(retry_after=30))

    before = time.time()
    result = await refresher.refresh_once()
    after = time.time()

    assert result.outcome == "error"
    assert result.wait == 30.0
    assert result.permanent is False
    assert result.reason.startswith("rate_limited: ")
    assert "HTTP 429" in result.reason
    ban_raw = await r.get(KEYS.ban_until)
    assert ban_raw is not None
    assert before + 30 - 0.001 <= float(ban_raw) <= after + 30 + 0.001
    assert 28_000 < await r.pttl(KEYS.ban_until) <= 30_000
    assert await read_stored(r) == stored
    meta = await read_meta(r)
    assert (meta["version"], meta["stale"], meta["last_error"]) == (
        good.version,
        "1",
        result.reason,
    )
    assert await read_metrics(r) == {"refresh_success": 1, "refresh_error": 1}
    assert fake.requests[SPOT] == 2

    # The same daemon waits.
    skipped = await refresher.refresh_once()
    assert skipped.outcome == "skipped"
    assert skipped.reason == "rate-limit ban"
    assert skipped.wait is not None
    assert 28 < skipped.wait <= 30
    # A restarted daemon (nothing in memory) reads the ban from Redis and waits too.
    async with open_refresher(redis_url, settings) as restarted:
        assert restarted.ban_until == 0.0
        skipped = await restarted.refresh_once()
        assert skipped.outcome == "skipped"
        assert skipped.wait is not None
        assert 28 < skipped.wait <= 30
        assert restarted.ban_until == float(ban_raw)
    assert fake.requests[SPOT] == 2  # no request during the ban
    assert await read_stored(r) == stored
    assert await read_metrics(r) == {"refresh_success": 1, "refresh_error": 1}


async def test_429_without_retry_after_uses_the_fallback_ban(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    await accepted(refresher)
    fake.fail(SPOT, Fault.rate_limited())
    result = await refresher.refresh_once()
    assert result.outcome == "error"
    assert result.wait == BAN_FALLBACK
    assert "retry after unknown" in result.reason
    assert BAN_FALLBACK * 1000 - 2000 < await r.pttl(KEYS.ban_until) <= BAN_FALLBACK * 1000
    assert (await refresher.refresh_once()).outcome == "skipped"
    assert fake.requests[SPOT] == 2


async def test_418_ban_deadline_from_the_body(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    await accepted(refresher)
    stored = await read_stored(r)
    fake.fail(SPOT, Fault.banned())  # body: "IP banned until <now + 120 s>"
    result = await refresher.refresh_once()
    assert result.outcome == "error"
    assert result.reason.startswith("banned: ")
    assert result.permanent is False
    assert result.wait is not None
    assert 118 < result.wait <= 120
    assert 117_000 < await r.pttl(KEYS.ban_until) <= 120_000
    assert await read_stored(r) == stored
    assert (await read_meta(r))["stale"] == "1"
    assert await read_metrics(r) == {"refresh_success": 1, "refresh_error": 1}


async def test_418_with_retry_after_header(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    await accepted(refresher)
    fake.fail(SPOT, Fault.banned(retry_after=45))
    result = await refresher.refresh_once()
    assert result.wait == 45.0
    assert 43_000 < await r.pttl(KEYS.ban_until) <= 45_000


async def test_retry_after_zero_does_not_hold_the_next_cycle(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    await accepted(refresher)
    fake.fail(SPOT, Fault.rate_limited(retry_after=0))
    result = await refresher.refresh_once()
    assert result.outcome == "error"
    assert result.wait == 0.0
    again = await refresher.refresh_once()
    assert again.outcome == "unchanged"
    assert fake.requests[SPOT] == 3


async def test_a_banned_cycle_still_republishes_a_vanished_cache(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    await accepted(refresher)
    stored = await read_stored(r)
    fake.fail(SPOT, Fault.rate_limited(retry_after=60))
    await refresher.refresh_once()
    await r.delete(KEYS.symbols)

    skipped = await refresher.refresh_once()

    assert skipped.outcome == "skipped"
    assert await r.get(KEYS.symbols) == stored.symbols
    assert await r.ttl(KEYS.symbols) == CACHE_TTL
    assert await read_metrics(r) == {"refresh_success": 1, "refresh_error": 1, "fallback_used": 1}
    assert fake.requests[SPOT] == 2
