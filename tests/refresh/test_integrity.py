"""Issue 16: what the store does with wrong-type keys, unusable rows, bans, leases and tokens.

Real redis-server processes and the local fake Binance; nothing mocked. Each test names the
issue item it covers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import redis.asyncio

from daemon.cli.commands.refresh import exit_code as refresh_exit_code
from daemon.config.settings import Settings
from daemon.contract.keys import MarketKeys, market_keys
from daemon.refresh.cycle import MarketRefresher
from tests.support.builders import (
    SERVER_TIME,
    make_settings,
    open_refresher,
    payload,
    replace_row,
    symbol_row,
)
from tests.support.fake_binance import SPOT, FakeBinance
from tests.support.stored_snapshot import read_metrics

pytestmark = pytest.mark.timeout(60)

KEYS: MarketKeys = market_keys("spot")
ROWS = [
    symbol_row("BTCUSDT", "BTC", "USDT", tick_size="0.01000000", step_size="0.00001000"),
    symbol_row("ETHUSDT", "ETH", "USDT", tick_size="0.01000000", step_size="0.00010000"),
    symbol_row("BNBUSDT", "BNB", "USDT", tick_size="0.10000000", step_size="0.00100000"),
    symbol_row("ADAUSDT", "ADA", "USDT", tick_size="0.00010000", step_size="0.10000000"),
    symbol_row("XRPUSDT", "XRP", "USDT", tick_size="0.00010000", step_size="1.00000000"),
]
BASE = payload(ROWS)
CHANGED = payload(replace_row(ROWS, "ETHUSDT", tick_size="0.10000000"))


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.set_payload(SPOT, BASE)
        yield server


@pytest.fixture
def settings(fake: FakeBinance) -> Settings:
    return make_settings(fake.url, {"guards.confirm_shrink": 3})


async def record(r: redis.asyncio.Redis, symbol: str) -> dict[str, Any]:
    raw = await r.hget(KEYS.by_symbol, symbol)
    assert raw is not None
    decoded: dict[str, Any] = msgspec.json.decode(raw)
    return decoded


async def ok(ref: MarketRefresher, outcome: str = "accepted") -> None:
    result = await ref.refresh_once()
    assert result.outcome == outcome, result


# ============================================================================================
# item 1: a key of the wrong type


WRONG_TYPE_KEYS = ["changes", "meta", "by_symbol", "symbols", "last_good", "metrics"]


@pytest.mark.parametrize("name", WRONG_TYPE_KEYS)
async def test_wrong_type_key_writes_nothing_exits_65_then_is_repaired(
    name: str, redis_url: str, settings: Settings, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    key = getattr(KEYS, name)
    async with open_refresher(redis_url, settings) as ref:
        await ok(ref)
        fake.set_payload(SPOT, CHANGED)
        await ok(ref)  # a stream entry exists now
        before = {k: await r.dump(k) for k in KEYS.all_keys() if k != key}
        await r.delete(key)
        await r.rpush(key, b"not a snapshot")

        fake.set_payload(SPOT, BASE)
        broken = await ref.refresh_once()

        # Nothing of the new version landed, nothing was counted, data corruption reported.
        after = {k: await r.dump(k) for k in KEYS.all_keys() if k != key}
        assert after == before
        assert broken.outcome == "error", broken
        assert broken.problem == "data", broken
        assert refresh_exit_code(broken) == 65
        assert "wrong type" in broken.reason
        assert await r.type(key) == b"list"

        # The next cycle (a fresh process, as cron would run it) rewrites the snapshot whole.
    async with open_refresher(redis_url, settings) as ref:
        await ok(ref)
    expected = {"meta": b"hash", "by_symbol": b"hash", "metrics": b"hash", "changes": b"stream"}
    assert await r.type(key) == expected.get(name, b"string")
    assert (await record(r, "ETHUSDT"))["tick_size"] == "0.01000000"
    assert msgspec.json.decode(await r.get(KEYS.symbols) or b"[]")[0]["symbol"]
    counted = await read_metrics(r)
    if name == "metrics":
        assert counted == {"refresh_success": 1}
    else:
        assert counted == {"refresh_success": 3}


async def test_same_payload_with_by_symbol_a_list_is_not_unchanged(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis
) -> None:
    async with open_refresher(redis_url, settings) as ref:
        await ok(ref)
        await r.delete(KEYS.by_symbol)
        await r.rpush(KEYS.by_symbol, b"x")
        broken = await ref.refresh_once()
        assert broken.outcome == "error", broken
        assert broken.problem == "data", broken
        await ok(ref)  # the repair: a new full write, readers can HGET again
    assert (await record(r, "BTCUSDT"))["symbol"] == "BTCUSDT"


# ============================================================================================
# item 2: values a trading bot cannot use


async def test_a_zero_tick_is_held_until_confirmed_and_named(
    redis_url: str, settings: Settings, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    async with open_refresher(redis_url, settings) as ref:
        await ok(ref)
        fake.set_payload(SPOT, payload(replace_row(ROWS, "BTCUSDT", tick_size="0.00000000")))
        for seen in (1, 2):
            await ok(ref, "unchanged")  # the held row is the only change: nothing new served
            assert (await record(r, "BTCUSDT"))["tick_size"] == "0.01000000"
            held = msgspec.json.decode(await r.hget(KEYS.meta, "held_rows") or b"[]")
            assert [(h["symbol"], h["seen"]) for h in held] == [("BTCUSDT", seen)]
            assert "tick_size became 0.00000000" in held[0]["reason"]
        assert (await read_metrics(r))["rows_held"] == 2
        await ok(ref)  # the third identical payload confirms it
        assert (await record(r, "BTCUSDT"))["tick_size"] == "0.00000000"
        assert await r.hget(KEYS.meta, "held_rows") == b"[]"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"tick_size": "NaN"}, "tick_size"),
        ({"tick_size": "-0.01"}, "tick_size"),
        ({"step_size": "Infinity"}, "step_size"),
        ({"min_notional": "abc"}, "min_notional"),
    ],
)
async def test_an_invalid_decimal_is_never_served(
    change: dict[str, str],
    why: str,
    redis_url: str,
    settings: Settings,
    fake: FakeBinance,
    r: redis.asyncio.Redis,
) -> None:
    async with open_refresher(redis_url, settings) as ref:
        await ok(ref)
        bad = replace_row(ROWS, "ADAUSDT", **change)
        fake.set_payload(SPOT, payload(bad))
        for _ in range(4):  # more than confirm_shrink: invalid is never confirmed
            await ok(ref, "unchanged")
        assert (await record(r, "ADAUSDT"))["tick_size"] == "0.00010000"
        held = msgspec.json.decode(await r.hget(KEYS.meta, "held_rows") or b"[]")
        assert [h["symbol"] for h in held] == ["ADAUSDT"]
        assert held[0]["invalid"]
        assert why in held[0]["reason"]
        # a new symbol with an invalid value is not served at all
        doge = symbol_row("DOGEUSDT", "DOGE", "USDT", status="BREAK", tick_size="NaN")
        fake.set_payload(SPOT, payload([*bad, doge]))
        await ok(ref, "unchanged")
        assert await r.hget(KEYS.by_symbol, "DOGEUSDT") is None


async def test_a_trading_row_losing_its_filters_is_held(
    redis_url: str, settings: Settings, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    async with open_refresher(redis_url, settings) as ref:
        await ok(ref)
        rows = [dict(row) for row in ROWS]
        rows[1] = {**rows[1], "filters": []}
        fake.set_payload(SPOT, payload(rows))
        await ok(ref, "unchanged")
        assert (await record(r, "ETHUSDT"))["tick_size"] == "0.01000000"
        held = msgspec.json.decode(await r.hget(KEYS.meta, "held_rows") or b"[]")
        assert held[0]["symbol"] == "ETHUSDT"
        assert "PRICE_FILTER" in held[0]["reason"]


async def test_a_server_time_an_hour_back_is_held_back_until_confirmed(
    redis_url: str, settings: Settings, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    async with open_refresher(redis_url, settings) as ref:
        await ok(ref)
        stale = payload(replace_row(ROWS, "ETHUSDT", tick_size="0.10000000"))
        stale = stale.replace(str(SERVER_TIME).encode(), str(SERVER_TIME - 3_600_000).encode())
        fake.set_payload(SPOT, stale)
        for _ in range(2):
            result = await ref.refresh_once()
            assert result.outcome == "rejected"
            assert "serverTime went back" in result.reason
        assert (await record(r, "ETHUSDT"))["tick_size"] == "0.01000000"
        await ok(ref)  # confirmed by the third identical reply
        assert (await record(r, "ETHUSDT"))["tick_size"] == "0.10000000"


async def test_many_held_rows_fall_under_the_shrink_guard(
    redis_url: str, settings: Settings, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    async with open_refresher(redis_url, settings) as ref:
        await ok(ref)
        bad = ROWS
        for name in ("BTCUSDT", "ETHUSDT"):  # 2 of 5 listed: 40% > max_shrink 20%
            bad = replace_row(bad, name, tick_size="NaN")
        fake.set_payload(SPOT, payload(bad))
        result = await ref.refresh_once()
        assert result.outcome == "rejected", result
        assert result.reason.startswith("shrink"), result


# ============================================================================================
# item 6: a ban is bounded and re-read


# Named ids: the second value is a time, and a node ID must not change from run to run.
@pytest.mark.parametrize(
    "stored",
    [b"inf", str(time.time() + 10 * 365 * 86400).encode()],
    ids=["inf", "ten_years"],
)
async def test_an_absurd_ban_is_clamped_and_clearing_it_takes_effect(
    stored: bytes,
    redis_url: str,
    settings: Settings,
    fake: FakeBinance,
    r: redis.asyncio.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with open_refresher(redis_url, settings) as ref:
        await ok(ref)
        await r.set(KEYS.ban_until, stored)
        skipped = await ref.refresh_once()
        assert skipped.outcome == "skipped"
        assert skipped.wait is not None
        assert skipped.wait <= 3 * 86400 + 1
        assert "ban.clamped" in capsys.readouterr().out
        # An operator deletes the key: the same running refresher fetches again.
        await r.delete(KEYS.ban_until)
        requests = fake.requests[SPOT]
        await ok(ref, "unchanged")
        assert fake.requests[SPOT] == requests + 1


# ============================================================================================
# item 8: one bounded token set per market


async def test_counting_tokens_stay_in_one_capped_key(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis
) -> None:
    async with open_refresher(redis_url, settings) as ref:
        for _ in range(300):
            await ref.store.record_failure(outcome="error", error="x", token=f"t{_}")
        # re-recording an already counted event does not count it again
        await ref.store.record_failure(outcome="error", error="x", token="t299")
    assert (await read_metrics(r))["refresh_error"] == 300
    extra = [k for k in await r.keys("*") if k.startswith(KEYS.metrics.encode() + b":")]
    assert extra == [f"{KEYS.metrics}:once".encode()]
    assert await r.zcard(extra[0]) <= 256
    assert 0 < await r.ttl(extra[0]) <= 24 * 3600


# ============================================================================================
# item 5: eviction policies


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random"])
async def test_an_evicting_policy_is_warned_about_or_refused(
    policy: str,
    redis_factory: Any,
    fake: FakeBinance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = redis_factory(extra_args=("--maxmemory", "64mb", "--maxmemory-policy", policy))
    server.start()
    warn = make_settings(fake.url)
    async with open_refresher(server.url, warn) as ref:
        await ok(ref)
    out = capsys.readouterr().out
    assert "redis.eviction_policy" in out
    assert policy in out

    refuse = make_settings(fake.url, {"redis.eviction": "refuse"})
    async with open_refresher(server.url, refuse) as ref:
        result = await ref.refresh_once()
    assert result.outcome == "error", result
    assert result.problem == "configuration", result
    assert refresh_exit_code(result) == 78
    assert policy in result.reason


async def test_noeviction_is_quiet(
    redis_factory: Any, fake: FakeBinance, capsys: pytest.CaptureFixture[str]
) -> None:
    server = redis_factory(extra_args=("--maxmemory-policy", "noeviction")).start()
    async with open_refresher(
        server.url, make_settings(fake.url, {"redis.eviction": "refuse"})
    ) as ref:
        await ok(ref)
    assert "redis.eviction_policy" not in capsys.readouterr().out
