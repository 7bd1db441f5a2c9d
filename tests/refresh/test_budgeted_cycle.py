"""The refresh cycle draws its fetches from the shared weight budget.

Real redis-server, the fake Binance that enforces weight windows (tests/support/limited_binance)
and the real cycle over loopback sockets. Other processes of the bot are played by separate
budget objects on their own connections, as another process would hold them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio

from daemon.budget import AsyncWeightBudget, Banned, WeightBudget, WindowUsage
from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import Settings
from daemon.contract.keys import market_keys
from daemon.contract.meta import decode_timestamp
from daemon.redis.clients import ConnectionConfig
from daemon.refresh.cycle import MarketRefresher, Outcome, source_config
from daemon.refresh.oneshot import refresh_markets
from daemon.upstream.fetch import make_session
from tests.support.builders import make_settings
from tests.support.daemon_proc import run_cli
from tests.support.limited_binance import LimitedBinance
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)

KEYS = market_keys("spot")
MINUTE = 60_000
# Caps of the fake's limit of 200 a minute: high floor(200 x 0.9) = 180, normal 162.
LIMIT, NORMAL_CAP = 200, 162


@pytest.fixture
def fake() -> Iterator[LimitedBinance]:
    with LimitedBinance(limit=LIMIT, interval_ms=MINUTE) as server:
        yield server


def _settings(fake: LimitedBinance) -> Settings:
    return make_settings(fake.url, {"upstream.ban_fallback": 45.0})


def _budget(url: str, settings: Settings) -> AsyncWeightBudget:
    config = ConnectionConfig(url=parse_redis_url(url, "test"), settings=settings.redis)
    return AsyncWeightBudget(config, settings, market="spot")


@contextlib.asynccontextmanager
async def _refresher(url: str, settings: Settings) -> AsyncIterator[MarketRefresher]:
    """A refresher wired to its market's budget, as the service builds it."""
    config = ConnectionConfig(url=parse_redis_url(url, "test"), settings=settings.redis)
    client = config.make_async(decode=False)
    session = make_session(source_config(settings.markets.get("spot"), settings.upstream))
    budget = _budget(url, settings)
    try:
        yield MarketRefresher.for_market(
            settings, "spot", client=client, session=session, budget=budget
        )
    finally:
        await budget.aclose()
        await session.close()
        await client.aclose()


async def _publish_limits(url: str, fake: LimitedBinance) -> None:
    """The fake's rateLimits in the meta hash, as a daemon that refreshed before left them."""
    direct = redis.asyncio.Redis.from_url(url)
    await direct.hset(KEYS.meta, "rate_limits", json.dumps(fake.rate_limits()))
    await direct.aclose()


async def _clear_of_window_end(margin: float = 3.0) -> None:
    """Start in the first part of a minute window, so that a test's steps share one window."""
    left = 60.0 - time.time() % 60.0
    if left < margin:
        await asyncio.sleep(left + 0.05)


@contextlib.asynccontextmanager
async def _charged_refresher(url: str, fake: LimitedBinance) -> AsyncIterator[MarketRefresher]:
    """A wired refresher on a budget that knows the fake's limits and starts with nothing
    spent, early enough in a minute window for a test's steps to share it."""
    await _publish_limits(url, fake)
    await _clear_of_window_end()
    async with _refresher(url, _settings(fake)) as ref:
        assert ref.budget is not None
        await ref.budget.start_fresh()
        yield ref


def _weight_used(windows: list[WindowUsage]) -> int:
    return next(w.used for w in windows if w.kind == "REQUEST_WEIGHT")


async def test_a_cycle_charges_the_endpoint_weight_to_the_shared_budget(
    redis_url: str, fake: LimitedBinance
) -> None:
    async with _charged_refresher(redis_url, fake) as ref:
        assert ref.budget is not None
        first = await ref.refresh_once()
        assert first.outcome is Outcome.ACCEPTED, first
        second = await ref.refresh_once()
        assert second.outcome is Outcome.UNCHANGED, second
        usage = await ref.budget.usage()
        # 20 per spot exchangeInfo, confirmed by the fake's own header after each answer.
        assert _weight_used(usage.windows) == 40
        assert ref.budget.stats().acquired == 2
    assert [s.weight for s in fake.served()] == [20, 20]


async def test_a_ban_stored_by_another_process_skips_the_cycle_without_a_request(
    redis_url: str, fake: LimitedBinance
) -> None:
    settings = _settings(fake)
    with WeightBudget.from_url(redis_url, settings=settings) as other:
        until = other.report_limited(418, 30)
    async with _refresher(redis_url, settings) as ref:
        result = await ref.refresh_once()
    assert result.outcome is Outcome.SKIPPED
    assert result.reason == "rate-limit ban"
    assert result.wait is not None
    assert 28.0 < result.wait <= 30.5
    assert ref.ban_until == pytest.approx(until, abs=0.01)
    assert fake.served() == []


async def test_a_full_window_skips_the_cycle_until_the_window_resets(
    redis_url: str, fake: LimitedBinance
) -> None:
    async with _charged_refresher(redis_url, fake) as ref:
        assert (await ref.refresh_once()).ok
        # Another process takes the rest of the normal share: 20 + 130 of 162, 12 left.
        with WeightBudget.from_url(redis_url, settings=_settings(fake)) as other:
            other.acquire(NORMAL_CAP - 20 - 12, wait=False)
        started = time.monotonic()
        result = await ref.refresh_once()
        # Skipped at once: the cycle does not wait for the window ([budget] max_wait is 60 s).
        assert time.monotonic() - started < 5.0
    assert result.outcome is Outcome.SKIPPED, result
    assert result.reason == "weight budget exhausted"
    window_end = (time.time() // 60 + 1) * 60
    assert result.wait is not None
    assert result.wait == pytest.approx(window_end - time.time(), abs=2.0)
    assert len(fake.served()) == 1  # the skipped cycle sent nothing


async def test_a_first_start_declares_a_new_budget_fresh_but_keeps_a_known_one(
    redis_url: str, fake: LimitedBinance
) -> None:
    """Nothing served and no budget marker (a first deployment): the budget starts fresh
    instead of writing off the current minute, so the daemon refreshes at once and again.
    A daemon that holds a snapshot when Redis comes back empty does not: the rest of that
    minute is written off and its fetches wait, while it republishes what it holds."""
    settings = _settings(fake)
    await _clear_of_window_end()
    async with _refresher(redis_url, settings) as ref:
        first = await ref.refresh_once()
        assert first.outcome is Outcome.ACCEPTED, first
        second = await ref.refresh_once()
        assert second.outcome is Outcome.UNCHANGED, second
        direct = redis.asyncio.Redis.from_url(redis_url)
        await direct.flushdb()  # Redis came back empty; this daemon still holds a snapshot
        third = await ref.refresh_once()
        assert await direct.hlen(KEYS.by_symbol) > 0  # republished from memory
        await direct.aclose()
    assert third.outcome is Outcome.SKIPPED, third
    assert third.reason == "weight budget exhausted"
    assert len(fake.served()) == 2


async def test_a_429_is_stored_once_and_honoured_by_another_budget(
    redis_factory: type[RedisServer], fake: LimitedBinance
) -> None:
    server = redis_factory().start()
    settings = _settings(fake)
    watcher = redis.asyncio.Redis.from_url(server.url)
    await watcher.config_set("notify-keyspace-events", "K$")
    events = watcher.pubsub()
    await events.subscribe(f"__keyspace@0__:{KEYS.ban_until}")
    await events.get_message(timeout=5.0)  # the subscribe confirmation
    try:
        async with _refresher(server.url, settings) as ref:
            assert ref.budget is not None
            await ref.budget.start_fresh()
            fake.force_next(429, retry_after=30)
            result = await ref.refresh_once()
            assert result.outcome is Outcome.FAILED
            assert result.wait is not None
            assert 29.0 <= result.wait <= 30.01
            # The next cycle honours it without a request.
            again = await ref.refresh_once()
            assert again.outcome is Outcome.SKIPPED
            assert again.reason == "rate-limit ban"
        writes = []
        while (msg := await events.get_message(timeout=0.5)) is not None:
            writes.append(msg["data"])
        assert writes == [b"set"]  # written by the budget alone, not a second time by the cycle
        stored = decode_timestamp(await watcher.get(KEYS.ban_until))
        assert stored is not None
        with (
            WeightBudget.from_url(server.url, settings=settings) as other,
            pytest.raises(Banned) as banned,
        ):
            other.acquire(1)
        assert banned.value.until == pytest.approx(stored, abs=0.001)
        assert len(fake.served()) == 1
    finally:
        await events.aclose()
        await watcher.aclose()


async def test_deleting_the_stored_ban_lifts_it_for_the_next_cycle(
    redis_url: str, fake: LimitedBinance
) -> None:
    """The budget remembers a ban it stored; the cycle's rule (the key is the authority)
    still holds: an operator who deletes ban_until gets the next cycle fetching."""
    settings = _settings(fake)
    async with _refresher(redis_url, settings) as ref:
        assert ref.budget is not None
        await ref.budget.start_fresh()
        fake.force_next(429, retry_after=30)
        assert (await ref.refresh_once()).outcome is Outcome.FAILED
        direct = redis.asyncio.Redis.from_url(redis_url)
        assert await direct.delete(KEYS.ban_until) == 1
        await direct.aclose()
        result = await ref.refresh_once()
    assert result.outcome is Outcome.ACCEPTED, result
    assert [s.status for s in fake.served()] == [429, 200]


async def test_redis_refusing_writes_is_reported_as_such_not_as_a_full_budget(
    redis_factory: type[RedisServer], fake: LimitedBinance
) -> None:
    """The budget cannot write its counters either; its local fallback writes off the window
    in which that began. The cycle still fetches and reports the Redis problem itself."""
    server = redis_factory().start()
    async with _refresher(server.url, _settings(fake)) as ref:
        assert ref.budget is not None
        await ref.budget.start_fresh()
        assert (await ref.refresh_once()).ok
        admin = redis.asyncio.Redis.from_url(server.url)
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1")
        await admin.aclose()
        result = await ref.refresh_once()
    assert result.outcome is Outcome.FAILED, result
    assert result.problem is not None  # a Redis problem, with its kind
    assert "OOM" in result.reason or "memory" in result.reason
    assert len(fake.served()) == 2


@pytest.mark.parametrize("own_fetches", [True, False])
async def test_one_shot_refresh_charges_its_fetch_unless_own_fetches_is_false(
    redis_url: str, fake: LimitedBinance, own_fetches: bool
) -> None:
    settings = make_settings(fake.url, {"budget.own_fetches": own_fetches})
    url = parse_redis_url(redis_url, "test")
    with WeightBudget.from_url(redis_url, settings=settings) as other:
        other.start_fresh()
        await _clear_of_window_end()
        [first] = await refresh_markets(settings, url, ["spot"])
        assert first.ok, first
        assert _weight_used(other.usage().windows) == (20 if own_fetches else 0)
        other.report_limited(429, 30)
        [banned] = await refresh_markets(settings, url, ["spot"])
    # Charged or not, a stored deadline is honoured and nothing is sent.
    assert banned.outcome is Outcome.SKIPPED
    assert banned.reason == "rate-limit ban"
    assert len(fake.served()) == 1


def test_symbold_refresh_exits_75_when_the_budget_has_no_room(
    redis_url: str, fake: LimitedBinance
) -> None:
    left = 60.0 - time.time() % 60.0
    if left < 8.0:
        time.sleep(left + 0.05)  # two CLI runs must fall in one minute window
    env = {"REDIS_URL": redis_url, "SYMBOLD_SPOT_BASE_URLS": fake.url}
    settings = _settings(fake)
    with WeightBudget.from_url(redis_url, settings=settings) as other:
        other.start_fresh()
        first = run_cli("refresh", "--market", "spot", env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        # The first refresh published the fake's limits; another process takes the rest.
        direct = redis.Redis.from_url(redis_url)
        assert direct.hget(KEYS.meta, "rate_limits") is not None
        direct.close()
        other.acquire(NORMAL_CAP - 20 - 12, wait=False)
        second = run_cli("refresh", "--market", "spot", env=env)
    assert second.returncode == 75, second.stdout + second.stderr
    assert "weight budget exhausted" in second.stderr
    assert len(fake.served()) == 1
