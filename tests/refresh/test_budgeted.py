"""The daemon's exchangeInfo fetch through the shared budget: a real redis-server, the fake
Binance that enforces weight windows, and the real fetcher over loopback sockets."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate

import aiohttp
import pytest
import redis

from daemon.budget import AsyncWeightBudget, BudgetOptions, WindowUsage
from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import Settings
from daemon.contract.keys import market_keys
from daemon.contract.meta import decode_timestamp, encode_timestamp
from daemon.redis.clients import ConnectionConfig
from daemon.refresh.budgeted import (
    BudgetDown,
    FetchDeferred,
    SharedBan,
    endpoint_weight,
    fetch_with_budget,
    response_headers,
    server_time_ms,
)
from daemon.upstream.fetch import FetchResult, RateLimited, SourceConfig, make_session
from tests.support.limited_binance import SAMPLE, LimitedBinance
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.timeout(30)

SPOT = "/api/v3/exchangeInfo"


@pytest.fixture
def fake() -> Iterator[LimitedBinance]:
    with LimitedBinance(limit=200, interval_ms=60_000) as server:
        yield server


def _budget(url: str, market: str = "spot", **options: object) -> AsyncWeightBudget:
    settings = Settings()
    config = ConnectionConfig(url=parse_redis_url(url, "argument"), settings=settings.redis)
    opts = BudgetOptions(**options) if options else None  # type: ignore[arg-type]
    return AsyncWeightBudget(config, settings, market=market, options=opts)


async def _prepared(url: str, fake: LimitedBinance, market: str = "spot") -> None:
    """What the daemon leaves behind after a snapshot: the fake's limits in the meta hash."""
    direct = redis.asyncio.Redis.from_url(url)
    await direct.hset(market_keys(market).meta, "rate_limits", json.dumps(fake.rate_limits()))
    await direct.aclose()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = make_session(SourceConfig(base_urls=("http://127.0.0.1:1",), path=SPOT))
    yield s
    await s.close()


def _used(windows: list[WindowUsage]) -> int:
    return next(w.used for w in windows if w.kind == "REQUEST_WEIGHT")


async def test_spot_fetch_charges_20_observes_and_records_the_clock(
    redis_url: str, fake: LimitedBinance, session: aiohttp.ClientSession
) -> None:
    await _prepared(redis_url, fake)
    # Another program on the IP spent 50 without the budget: the answer's header says so.
    async with session.get(f"{fake.url}/fake/weight?w=50") as r:
        assert r.status == 200
    async with _budget(redis_url) as budget:
        await budget.start_fresh()
        cfg = SourceConfig(base_urls=(fake.url,), path=SPOT)
        result = await fetch_with_budget(budget, session, cfg)
        assert result.status == 200
        assert result.body.startswith(b"{")
        usage = await budget.usage()
        assert _used(usage.windows) == 70  # our 20, raised to Binance's figure 50 + 20
        assert usage.source == "published"
    assert fake.served()[-1].weight == 20
    direct = redis.Redis.from_url(redis_url)
    offset = int(direct.get("symbold:{spot}:time_offset") or b"nan")
    direct.close()
    # Same machine: serverTime was taken before Redis read its clock, so late, never early.
    assert -5000 < offset <= 5


async def test_futures_exchange_info_costs_one(
    redis_url: str, fake: LimitedBinance, session: aiohttp.ClientSession
) -> None:
    await _prepared(redis_url, fake, "usdm")
    async with _budget(redis_url, "usdm") as budget:
        await budget.start_fresh()
        cfg = SourceConfig(base_urls=(fake.url,), path="/fapi/v1/exchangeInfo")
        await fetch_with_budget(budget, session, cfg)
        assert _used((await budget.usage()).windows) == 1
    assert endpoint_weight(SourceConfig(base_urls=(fake.url,), path=SPOT)) == 20
    assert endpoint_weight(SourceConfig(base_urls=(fake.url,), path="/dapi/v1/exchangeInfo")) == 1


async def test_file_source_spends_nothing_and_sets_no_clock(
    redis_url: str, fake: LimitedBinance, session: aiohttp.ClientSession
) -> None:
    await _prepared(redis_url, fake)
    async with _budget(redis_url) as budget:
        await budget.start_fresh()
        cfg = SourceConfig(base_urls=(SAMPLE.as_uri(),), path=SPOT)
        result = await fetch_with_budget(budget, session, cfg)
        assert result.url.startswith("file:")
        assert _used((await budget.usage()).windows) == 0
    direct = redis.Redis.from_url(redis_url)
    assert direct.get("symbold:{spot}:time_offset") is None  # a saved payload's time is old
    direct.close()


async def test_each_http_attempt_is_charged_and_fallback_order_kept(
    redis_url: str, fake: LimitedBinance, session: aiohttp.ClientSession
) -> None:
    await _prepared(redis_url, fake)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    async with _budget(redis_url) as budget:
        await budget.start_fresh()
        cfg = SourceConfig(base_urls=(dead, fake.url), path=SPOT, timeout_connect=2.0)
        result = await fetch_with_budget(budget, session, cfg)
        assert [a.kind for a in result.attempts] == ["connection"]
        assert _used((await budget.usage()).windows) == 40  # 20 per attempt, sent or not


async def test_429_is_stored_once_by_the_budget_and_later_fetches_are_deferred(
    redis_url: str, fake: LimitedBinance, session: aiohttp.ClientSession
) -> None:
    await _prepared(redis_url, fake)
    key = market_keys("spot").ban_until
    async with _budget(redis_url) as budget:
        await budget.start_fresh()
        cfg = SourceConfig(base_urls=(fake.url,), path=SPOT)
        fake.force_next(429, retry_after=30)
        with pytest.raises(SharedBan) as info:
            await fetch_with_budget(budget, session, cfg)
        ban = info.value
        assert isinstance(ban, RateLimited)
        assert ban.status == 429
        assert ban.retry_after is not None
        assert 29 <= ban.retry_after <= 30.01
        direct = redis.asyncio.Redis.from_url(redis_url)
        stored = await direct.get(key)
        ttl = await direct.pttl(key)
        await direct.aclose()
        # The key the daemon reads holds exactly the deadline the error carries.
        assert decode_timestamp(stored) == pytest.approx(ban.until, abs=0.0005)
        assert stored == encode_timestamp(ban.until).encode()
        assert 28_000 < ttl <= 30_000
        with pytest.raises(FetchDeferred) as deferred:
            await fetch_with_budget(budget, session, cfg)
        assert deferred.value.reason == "rate-limit ban"
        assert deferred.value.until == pytest.approx(ban.until, abs=0.001)
        assert 25 < deferred.value.wait <= 30.5
    assert len(fake.served()) == 1  # the deferred fetch sent nothing


async def test_a_longer_stored_ban_is_kept(
    redis_url: str, fake: LimitedBinance, session: aiohttp.ClientSession
) -> None:
    await _prepared(redis_url, fake)
    key = market_keys("spot").ban_until
    longer = time.time() + 600
    direct = redis.Redis.from_url(redis_url)

    def other_process_was_banned_first() -> None:
        # While our request is in flight, a 10-minute ban is stored (as the daemon stores it).
        direct.set(key, encode_timestamp(longer), px=600_000)

    async with _budget(redis_url) as budget:
        await budget.start_fresh()
        fake.force_next(418, retry_after=5)
        fake.before_answer = other_process_was_banned_first
        with pytest.raises(SharedBan) as info:
            await fetch_with_budget(budget, session, SourceConfig(base_urls=(fake.url,), path=SPOT))
    # Our 5 s answer did not shorten it; the error points at the deadline that stands.
    assert info.value.until == pytest.approx(longer, abs=0.001)
    assert 590 < (info.value.retry_after or 0) <= 600.5
    assert decode_timestamp(direct.get(key)) == pytest.approx(longer, abs=0.001)
    direct.close()


async def test_exhausted_budget_defers_without_sending(
    redis_url: str, fake: LimitedBinance, session: aiohttp.ClientSession
) -> None:
    await _prepared(redis_url, fake)
    async with _budget(redis_url, max_wait=0.5) as budget:
        await budget.start_fresh()
        # caps of 200: high 180, normal 162; 150 used leaves 12 < 20
        await budget.acquire(150)
        cfg = SourceConfig(base_urls=(fake.url,), path=SPOT)
        with pytest.raises(FetchDeferred) as info:
            await fetch_with_budget(budget, session, cfg)
        assert info.value.reason == "weight budget exhausted"
        assert "REQUEST_WEIGHT" in str(info.value)
        window_end = (time.time() // 60 + 1) * 60
        assert info.value.until == pytest.approx(window_end, abs=2.0)
        # the reserve is left to priority high: the daemon's normal fetch does not touch it
        assert (await budget.acquire(20, priority="high")).weight == 20
    assert fake.served() == []


async def test_redis_down_fail_closed_sends_nothing(
    redis_factory: type[RedisServer], fake: LimitedBinance, session: aiohttp.ClientSession
) -> None:
    server = redis_factory().start()
    async with _budget(server.url, on_redis_down="fail_closed") as budget:
        server.kill()
        cfg = SourceConfig(base_urls=(fake.url,), path=SPOT)
        with pytest.raises(BudgetDown) as info:
            await fetch_with_budget(budget, session, cfg)
        assert info.value.retryable
    assert fake.served() == []


async def test_without_a_budget_it_is_plain_fetch(
    fake: LimitedBinance, session: aiohttp.ClientSession
) -> None:
    cfg = SourceConfig(base_urls=(fake.url,), path=SPOT)
    result = await fetch_with_budget(None, session, cfg)
    assert result.status == 200
    assert fake.served()[-1].weight == 20


def test_clock_and_header_helpers() -> None:
    body = b'{"timezone":"UTC","serverTime":1768383000417,"rateLimits":[]}'
    assert server_time_ms(body) == 1768383000417
    date = formatdate(1768383000.9, usegmt=True)
    assert server_time_ms(b"{}", {"Date": date}) == 1768383000000  # whole seconds, down
    assert server_time_ms(b"{}", [("date", "garbage")]) is None
    assert server_time_ms(b"{}") is None
    result = FetchResult(body=b"", url="u", status=200, used_weight=33, elapsed_ms=1.0)
    assert response_headers(result) == [("X-MBX-USED-WEIGHT-1M", "33")]
    bare = FetchResult(body=b"", url="u", status=200, used_weight=None, elapsed_ms=1.0)
    assert response_headers(bare) == []
