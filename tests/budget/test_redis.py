"""One process against a real redis-server: acquire/observe/ban semantics, both twins, and the
aiohttp middleware and ccxt recipe against the limited fake Binance."""

from __future__ import annotations

import time
from collections.abc import Iterator

import aiohttp
import pytest

from daemon.budget import (
    AsyncWeightBudget,
    Banned,
    BudgetExhausted,
    Limit,
    WeightBudget,
    rate_limits_json,
)
from daemon.budget.ccxt_recipe import use_budget
from daemon.budget.http_trace import BudgetMiddleware
from daemon.contract.keys import market_keys
from tests.support.limited_binance import LimitedBinance

pytestmark = pytest.mark.timeout(30)

LIMITS = [Limit("REQUEST_WEIGHT", "MINUTE", 1, 100), Limit("ORDERS", "MINUTE", 1, 10)]


@pytest.fixture
def budget(redis_url: str) -> Iterator[WeightBudget]:
    import redis

    direct = redis.Redis.from_url(redis_url)
    direct.hset(market_keys("spot").meta, "rate_limits", rate_limits_json(LIMITS))
    direct.close()
    with WeightBudget.from_url(redis_url, account="main") as b:
        b.start_fresh()
        yield b


def test_all_or_nothing_and_the_reserve(budget: WeightBudget) -> None:
    # caps: high = 90, normal = 81 (weight); orders high 9, normal 8
    budget.acquire(80)
    with pytest.raises(BudgetExhausted) as info:
        budget.acquire(2, wait=False)
    assert info.value.reset_at > time.time() - 5
    assert budget.acquire(10, priority="high").weight == 10  # the reserve
    with pytest.raises(BudgetExhausted):
        budget.acquire(1, priority="high", wait=False)
    before = {w.kind: w.used for w in budget.usage().windows}
    # an order that fits ORDERS but not REQUEST_WEIGHT charges neither
    with pytest.raises(BudgetExhausted):
        budget.acquire(1, orders=1, priority="high", wait=False)
    assert {w.kind: w.used for w in budget.usage().windows} == before
    assert budget.stats().denials == 3


def test_observe_only_raises_and_respects_the_grant_window(budget: WeightBudget) -> None:
    grant = budget.acquire(5)
    assert budget.observe({"X-MBX-USED-WEIGHT-1M": "40"}, grant=grant) == 35
    assert budget.observe({"X-MBX-USED-WEIGHT-1M": "10"}, grant=grant) == 0
    old = type(grant)(5, 0, "normal", grant.at_ms - 120_000)
    assert budget.observe({"X-MBX-USED-WEIGHT-1M": "90"}, grant=old) == 0
    assert budget.observe({"X-MBX-ORDER-COUNT-1M": "4"}) == 4
    assert {w.kind: w.used for w in budget.usage().windows} == {"REQUEST_WEIGHT": 40, "ORDERS": 4}


def test_ban_is_shared_never_shortened_and_clamped(budget: WeightBudget, redis_url: str) -> None:
    until = budget.report_limited(418, {"Retry-After": "600"})
    assert budget.report_limited(429, 5) == until  # a shorter one keeps the later deadline
    with WeightBudget.from_url(redis_url) as other, pytest.raises(Banned) as info:
        other.acquire(1)
    assert info.value.until == until
    assert budget.report_limited(418, 10 * 86_400) <= time.time() + 3 * 86_400 + 5


async def test_async_twin_sees_the_same_counts(budget: WeightBudget, redis_url: str) -> None:
    budget.acquire(30)
    async with AsyncWeightBudget.from_url(redis_url) as ab:
        await ab.acquire(20)
        usage = await ab.usage()
    assert next(w.used for w in usage.windows if w.kind == "REQUEST_WEIGHT") == 50


def test_time_offset_moves_the_windows(budget: WeightBudget) -> None:
    usage = budget.usage()
    offset = budget.record_server_time(int((usage.now + 3600) * 1000))
    assert 3_590_000 < offset < 3_610_000
    assert budget.usage().now > usage.now + 3590


def test_a_server_time_days_away_is_not_stored(budget: WeightBudget) -> None:
    """A saved or replayed payload's serverTime is no reading of Binance's clock: it must not
    shift every process's windows by years."""
    usage = budget.usage()
    offset = budget.record_server_time(1_700_000_000_000)  # a fixed time, years ago
    assert offset < -86_400_000
    assert budget.usage().now == pytest.approx(usage.now, abs=60)


def test_waiting_acquire_returns_after_the_window_rolls(redis_url: str) -> None:
    import redis

    direct = redis.Redis.from_url(redis_url)
    limit = [Limit("REQUEST_WEIGHT", "SECOND", 1, 10)]
    direct.hset(market_keys("spot").meta, "rate_limits", rate_limits_json(limit))
    direct.close()
    with WeightBudget.from_url(redis_url) as b:
        b.start_fresh()
        first = b.acquire(8)
        second = b.acquire(8, timeout=3)
        assert second.at_ms // 1000 > first.at_ms // 1000
        assert b.stats().waits >= 1


async def test_aiohttp_middleware_against_the_fake(redis_url: str) -> None:
    import redis

    with LimitedBinance(limit=100, interval_ms=60_000) as fake:
        direct = redis.Redis.from_url(redis_url)
        direct.hset(market_keys("spot").meta, "rate_limits", rate_limits_json(LIMITS))
        direct.close()
        async with AsyncWeightBudget.from_url(redis_url) as budget:
            await budget.start_fresh()
            mw = BudgetMiddleware(budget, extra_hosts=[f"127.0.0.1:{fake.port}"])
            async with aiohttp.ClientSession(middlewares=(mw,)) as session:
                for _ in range(3):
                    async with session.get(f"{fake.url}/api/v3/exchangeInfo") as r:
                        assert r.status == 200
                with pytest.raises(BudgetExhausted):  # 60 + 20 > 81: refused before sending
                    await budget.acquire(30, wait=False)
                fake.force_next(429, retry_after=30)
                async with session.get(f"{fake.url}/api/v3/depth?limit=5") as r:
                    assert r.status == 429
                with pytest.raises(Banned):
                    async with session.get(f"{fake.url}/api/v3/depth"):
                        pass
            assert fake.count(200) == 3


async def test_ccxt_recipe_against_the_fake(redis_url: str) -> None:
    ccxt = pytest.importorskip("ccxt.async_support")
    with LimitedBinance(limit=1000, interval_ms=60_000) as fake:
        async with AsyncWeightBudget.from_url(redis_url) as budget:
            await budget.start_fresh()
            exchange = ccxt.binance({"options": {"fetchMarkets": {"types": ["spot"]}}})
            # Every API URL of the exchange points at the loopback fake, never at Binance.
            exchange.urls["api"] = dict.fromkeys(exchange.urls["api"], f"{fake.url}/api/v3")
            use_budget(exchange, budget)
            try:
                assert exchange.enableRateLimit is False
                await exchange.load_markets()
                book = await exchange.fetch_order_book("BTC/USDT", limit=5)
                assert book["bids"][0][0] == 100.0
                usage = await budget.usage()
                used = next(w.used for w in usage.windows if w.kind == "REQUEST_WEIGHT")
                assert used == 25  # exchangeInfo 20 + depth 5, as the fake counted
                assert fake.window_weights()[max(fake.window_weights())] == 25
                fake.force_next(418, retry_after=120)
                with pytest.raises(ccxt.BaseError):
                    await exchange.fetch_order_book("BTC/USDT", limit=5)
                with pytest.raises(Banned):
                    await exchange.fetch_order_book("BTC/USDT", limit=5)
            finally:
                await exchange.close()
            assert len(fake.served()) == 3
