"""One refresh cycle (MarketRefresher.refresh_once, watch) against real servers.

Every test runs a real redis-server (the session server's private database through
``redis_url``, or a server of its own from ``redis_factory`` when it kills, restarts or
stalls it) and the local fake Binance on loopback. Nothing is mocked: the refresher talks to
both over real sockets. Assertions read Redis through a separate plain client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff

from daemon.config.settings import Settings
from daemon.contract.keys import MarketKeys, market_keys
from daemon.refresh.cycle import CycleResult, MarketRefresher
from tests.support.builders import (
    SERVER_TIME,
    Row,
    make_rows,
    make_settings,
    open_refresher,
    payload,
    replace_row,
    symbol_row,
)
from tests.support.fake_binance import SPOT, USDM, FakeBinance, Fault

KEYS: MarketKeys = market_keys("spot")
CACHE_TTL = 600
BAN_FALLBACK = 77.0
MAX_BODY = 1_000_000

BASE_ROWS: list[Row] = [
    symbol_row(
        "ETHBTC",
        "ETH",
        "BTC",
        tick_size="0.00001000",
        step_size="0.00010000",
        min_notional="0.00010000",
    ),
    symbol_row("BTCUSDT", "BTC", "USDT", tick_size="0.01000000", step_size="0.00001000"),
    symbol_row("BNBFDUSD", "BNB", "FDUSD", tick_size="0.10000000", step_size="0.00100000"),
    symbol_row("XRPTRY", "XRP", "TRY", tick_size="0.00100000", step_size="0.10000000"),
    symbol_row("LUNAUSDT", "LUNA", "USDT", status="BREAK"),
    symbol_row("ADAUSDT", "ADA", "USDT", tick_size="0.00010000", step_size="0.10000000"),
    symbol_row("币安人生USDT", "币安人生", "USDT", tick_size="0.00001000", step_size="1.00000000"),
    symbol_row("OLDBTC", "OLD", "BTC", status="HALT"),
]
BASE_PAYLOAD = payload(BASE_ROWS)
# Pinned first, then quote rank (USDT, FDUSD, USDC, BTC, ...), then symbol; unknown quotes
# (TRY) last. BREAK and HALT rows are stored in by_symbol but not listed.
BASE_LISTED = ["XRPTRY", "ADAUSDT", "BTCUSDT", "币安人生USDT", "BNBFDUSD", "ETHBTC"]
BASE_ALL = {row["symbol"] for row in BASE_ROWS}

# The changed payload: one symbol added, one delisted (gone from the reply), one tickSize
# changed, one status changed.
CHANGED_ROWS: list[Row] = [
    *replace_row(
        replace_row(
            [r for r in BASE_ROWS if r["symbol"] != "ETHBTC"], "BTCUSDT", tick_size="0.10000000"
        ),
        "ADAUSDT",
        status="BREAK",
        tick_size="0.00010000",
        step_size="0.10000000",
    ),
    symbol_row("DOGEUSDT", "DOGE", "USDT", tick_size="0.00001000", step_size="1.00000000"),
]
CHANGED_PAYLOAD = payload(CHANGED_ROWS)
CHANGED_DIFF: dict[str, Any] = {
    "added": ["DOGEUSDT"],
    "removed": ["ETHBTC"],
    "status_changed": [{"symbol": "ADAUSDT", "old": "TRADING", "new": "BREAK"}],
    "filters_changed": ["BTCUSDT"],
    "other_changed": [],
}


# ============================================================================================
# fixtures and helpers


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.set_payload(SPOT, BASE_PAYLOAD)
        yield server


@pytest.fixture
def settings(fake: FakeBinance) -> Settings:
    return make_settings(
        fake.url,
        {
            "markets.spot.cache_ttl": CACHE_TTL,
            "markets.spot.pinned": ["XRPTRY"],
            "upstream.ban_fallback": BAN_FALLBACK,
            "upstream.max_body_bytes": MAX_BODY,
        },
    )


@pytest.fixture
async def refresher(redis_url: str, settings: Settings) -> AsyncIterator[MarketRefresher]:
    async with open_refresher(redis_url, settings) as ref:
        yield ref


def direct(url: str) -> redis.asyncio.Redis:
    """A plain bytes client for assertions (not the code under test). It retries, so it
    reconnects by itself after a test restarted the server."""
    return redis.asyncio.Redis.from_url(url, retry=redis.asyncio.retry.Retry(NoBackoff(), 3))


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = direct(redis_url)
    yield client
    await client.aclose()


async def read_meta(r: redis.asyncio.Redis) -> dict[str, str]:
    raw = await r.hgetall(KEYS.meta)
    return {k.decode(): v.decode() for k, v in raw.items()}


async def read_metrics(r: redis.asyncio.Redis) -> dict[str, int]:
    raw = await r.hgetall(KEYS.metrics)
    return {k.decode(): int(v) for k, v in raw.items()}


@dataclass(frozen=True)
class Stored:
    """The data a reader depends on, byte for byte."""

    symbols: bytes | None
    last_good: bytes | None
    refreshed_at: bytes | None
    by_symbol: dict[bytes, bytes]
    version: bytes | None


async def read_stored(r: redis.asyncio.Redis) -> Stored:
    return Stored(
        symbols=await r.get(KEYS.symbols),
        last_good=await r.get(KEYS.last_good),
        refreshed_at=await r.get(KEYS.refreshed_at),
        by_symbol=await r.hgetall(KEYS.by_symbol),
        version=await r.hget(KEYS.meta, "version"),
    )


def listed_names(symbols_json: bytes | None) -> list[str]:
    assert symbols_json is not None
    return [rec["symbol"] for rec in json.loads(symbols_json)]


async def accepted(refresher: MarketRefresher) -> CycleResult:
    result = await refresher.refresh_once()
    assert result.outcome == "accepted", result
    return result


# ============================================================================================
# 1. happy path: the data contract


async def test_first_refresh_writes_every_key_per_the_contract(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    before = time.time()
    result = await refresher.refresh_once()
    after = time.time()

    assert result.outcome == "accepted"
    assert result.ok is True
    assert (result.count, result.listed) == (8, 6)
    assert result.reason == ""
    assert result.redis_down is False
    assert result.wait is None
    assert result.version is not None
    assert len(result.version) == 32
    int(result.version, 16)

    # symbols: a JSON array of the listed records, in priority order, with the cache TTL.
    symbols = await r.get(KEYS.symbols)
    assert listed_names(symbols) == BASE_LISTED
    assert await r.ttl(KEYS.symbols) == CACHE_TTL
    # last_good: the very same bytes, never expiring.
    assert await r.get(KEYS.last_good) == symbols
    assert await r.ttl(KEYS.last_good) == -1

    # Decimal strings exactly as sent, never through float; the filter array byte for byte.
    assert symbols is not None
    records = {rec["symbol"]: rec for rec in json.loads(symbols)}
    btc = records["BTCUSDT"]
    assert btc["tick_size"] == "0.01000000"
    assert btc["min_price"] == "0.01000000"
    assert btc["step_size"] == "0.00001000"
    assert btc["min_qty"] == "0.00001000"
    assert btc["max_qty"] == "9000.00000000"
    assert btc["min_notional"] == "5.00000000"
    assert btc["max_notional"] == "9000000.00000000"
    assert (btc["market"], btc["status"], btc["base"], btc["quote"]) == (
        "spot",
        "TRADING",
        "BTC",
        "USDT",
    )
    assert records["ETHBTC"]["min_notional"] == "0.00010000"
    assert records["币安人生USDT"]["base"] == "币安人生"
    for row in BASE_ROWS:
        if row["status"] == "TRADING":
            assert msgspec.json.encode(row["filters"]) in symbols
    assert b"1e-05" not in symbols
    assert "币安人生USDT".encode() in symbols  # UTF-8, not \u escapes

    # refreshed_at: a JSON number, the fetch time.
    refreshed_raw = await r.get(KEYS.refreshed_at)
    assert refreshed_raw is not None
    refreshed = json.loads(refreshed_raw)
    assert isinstance(refreshed, float)
    assert before - 0.001 <= refreshed <= after + 0.001
    assert await r.ttl(KEYS.refreshed_at) == -1

    # by_symbol: every record, whatever its status.
    by_symbol = await r.hgetall(KEYS.by_symbol)
    assert {k.decode() for k in by_symbol} == BASE_ALL
    statuses = {k.decode(): json.loads(v)["status"] for k, v in by_symbol.items()}
    assert statuses["LUNAUSDT"] == "BREAK"
    assert statuses["OLDBTC"] == "HALT"
    assert json.loads(by_symbol[b"BTCUSDT"]) == btc
    for name in BASE_LISTED:  # symbols is made of the very same record bytes
        assert by_symbol[name.encode()] in symbols

    meta = await read_meta(r)
    assert meta == {
        "version": result.version,
        "count": "8",
        "listed": "6",
        "source": f"{fake.url}{SPOT}",
        "server_time": str(SERVER_TIME),
        "fetched_at": refreshed_raw.decode(),
        "duration_ms": f"{result.duration_ms:.1f}",
        "stale": "0",
        "last_error": "",
        "shrink_version": "",
        "shrink_count": "0",
        # no lease in this test: the writer is named by host and pid
        "writer": f"{socket.gethostname()}:{os.getpid()}",
        # the payload's rateLimits, in Binance's exact shape, and the stored format
        "rate_limits": (
            '[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000},'
            '{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":100}]'
        ),
        "format": "1",
        # no row was held back
        "held_rows": "[]",
    }
    assert 0 < float(meta["duration_ms"]) < 5000

    assert await read_metrics(r) == {"refresh_success": 1}
    # No history to diff against: no change event for the very first snapshot.
    assert await r.xlen(KEYS.changes) == 0
    assert await r.ttl(KEYS.meta) == -1

    # Nothing else was written (besides the one set of recent counting tokens).
    names = {k.decode() for k in await r.keys("*")}
    assert await r.zcard(f"{KEYS.metrics}:once") == 1
    assert names - {f"{KEYS.metrics}:once"} == {
        KEYS.symbols,
        KEYS.last_good,
        KEYS.refreshed_at,
        KEYS.by_symbol,
        KEYS.meta,
        KEYS.metrics,
    }
    assert fake.requests[SPOT] == 1


async def test_the_request_sent_upstream(refresher: MarketRefresher, fake: FakeBinance) -> None:
    await accepted(refresher)
    seen = fake.last_request[SPOT]
    assert seen.method == "GET"
    # No symbolStatus filter: it would make halted symbols look delisted.
    assert "symbolStatus" not in seen.query
    assert "gzip" in seen.headers["Accept-Encoding"]


# ============================================================================================
# 2. unchanged and changed


async def test_identical_second_fetch_is_unchanged_and_renews_the_ttl(
    refresher: MarketRefresher, r: redis.asyncio.Redis
) -> None:
    first = await accepted(refresher)
    stored = await read_stored(r)
    first_fetched = float((await read_meta(r))["fetched_at"])
    await r.pexpire(KEYS.symbols, 5000)
    assert await r.ttl(KEYS.symbols) == 5

    second = await refresher.refresh_once()

    assert second.outcome == "unchanged"
    assert second.ok is True
    assert second.version == first.version
    assert (second.count, second.listed) == (8, 6)
    assert await r.ttl(KEYS.symbols) == CACHE_TTL
    after = await read_stored(r)
    assert (after.symbols, after.last_good, after.by_symbol, after.version) == (
        stored.symbols,
        stored.last_good,
        stored.by_symbol,
        stored.version,
    )
    meta = await read_meta(r)
    assert float(meta["fetched_at"]) >= first_fetched
    assert after.refreshed_at == meta["fetched_at"].encode()
    assert meta["stale"] == "0"
    assert await r.xlen(KEYS.changes) == 0
    assert await read_metrics(r) == {"refresh_success": 2}


async def test_unchanged_content_rewrites_keys_that_went_missing(
    refresher: MarketRefresher, r: redis.asyncio.Redis
) -> None:
    await accepted(refresher)
    stored = await read_stored(r)
    await r.delete(KEYS.by_symbol, KEYS.last_good)

    result = await refresher.refresh_once()

    assert result.outcome == "unchanged"
    after = await read_stored(r)
    assert after.by_symbol == stored.by_symbol
    assert after.last_good == stored.symbols
    assert await read_metrics(r) == {"refresh_success": 2}


async def test_changed_payload_writes_a_change_event_and_publishes_it(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    first = await accepted(refresher)
    pubsub = r.pubsub()
    await pubsub.subscribe(KEYS.events)
    try:
        confirm = await pubsub.get_message(timeout=2)
        assert confirm is not None
        assert confirm["type"] == "subscribe"
        fake.set_payload(SPOT, CHANGED_PAYLOAD)

        second = await refresher.refresh_once()

        assert second.outcome == "accepted"
        assert second.version != first.version
        assert (second.count, second.listed) == (8, 5)
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None
        assert message["channel"] == KEYS.events.encode()
        extra = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
        assert extra is None
    finally:
        await pubsub.aclose()

    event = json.loads(message["data"])
    assert event == {"market": "spot", "version": second.version, **CHANGED_DIFF}

    entries = await r.xrange(KEYS.changes)
    assert len(entries) == 1
    _, fields = entries[0]
    assert fields == {b"version": second.version.encode(), b"diff": message["data"]}

    symbols = await r.get(KEYS.symbols)
    assert listed_names(symbols) == [
        "XRPTRY",
        "BTCUSDT",
        "DOGEUSDT",
        "币安人生USDT",
        "BNBFDUSD",
    ]
    assert symbols is not None
    assert json.loads(symbols)[1]["tick_size"] == "0.10000000"
    by_symbol = await r.hgetall(KEYS.by_symbol)
    assert {k.decode() for k in by_symbol} == BASE_ALL - {"ETHBTC"} | {"DOGEUSDT"}
    assert json.loads(by_symbol[b"ADAUSDT"])["status"] == "BREAK"
    assert await r.get(KEYS.last_good) == symbols
    meta = await read_meta(r)
    assert (meta["version"], meta["count"], meta["listed"]) == (second.version, "8", "5")
    assert await read_metrics(r) == {"refresh_success": 2}

    # The same content again: unchanged, no second entry.
    third = await refresher.refresh_once()
    assert third.outcome == "unchanged"
    assert await r.xlen(KEYS.changes) == 1
    assert await read_metrics(r) == {"refresh_success": 3}


async def test_restarted_daemon_diffs_against_what_redis_holds(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
    fake.set_payload(SPOT, CHANGED_PAYLOAD)
    async with open_refresher(redis_url, settings) as second:
        assert second.held is None
        result = await accepted(second)

    entries = await r.xrange(KEYS.changes)
    assert len(entries) == 1
    event = json.loads(entries[0][1][b"diff"])
    assert event == {"market": "spot", "version": result.version, **CHANGED_DIFF}


async def test_changes_stream_is_trimmed_to_about_changes_maxlen(
    redis_url: str, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    settings = make_settings(fake.url, {"scheduler.changes_maxlen": 5})
    payloads = [BASE_PAYLOAD, CHANGED_PAYLOAD]
    async with open_refresher(redis_url, settings) as ref:
        for i in range(250):
            fake.set_payload(SPOT, payloads[i % 2])
            await accepted(ref)
    # 249 change entries were appended. XADD MAXLEN ~ trims whole stream nodes (at most 100
    # entries each by default), so it keeps at least 5 and less than one node more.
    length = await r.xlen(KEYS.changes)
    assert 5 <= length <= 5 + 100


# -- recorded Binance payloads ---------------------------------------------------------------

from tests.support.fixtures import FIXTURES  # noqa: E402

DEFAULT_QUOTES = ("USDT", "FDUSD", "USDC", "BTC", "ETH", "BNB")


def recorded(name: str) -> bytes:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"recorded Binance fixture {path} is not on this machine")
    return path.read_bytes()


def expected_listing(rows: list[Row], statuses: tuple[str, ...] = ("TRADING",)) -> list[str]:
    """The listing order, worked out here independently: quote rank, then symbol."""
    rank = {q: i for i, q in enumerate(DEFAULT_QUOTES)}
    listed = [row for row in rows if row["status"] in statuses]
    listed.sort(key=lambda row: (rank.get(row["quoteAsset"], len(rank)), row["symbol"]))
    return [row["symbol"] for row in listed]


async def test_recorded_spot_payload_then_an_older_smaller_one(
    redis_url: str, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    body = recorded("spot-exchangeinfo-2023-09.json")
    older = recorded("spot-exchangeinfo-2020-11.json")
    rows = json.loads(body)["symbols"]
    fake.set_payload(SPOT, body)
    async with open_refresher(redis_url, make_settings(fake.url)) as ref:
        result = await accepted(ref)
        assert (result.count, result.listed) == (2292, 1340)
        symbols = await r.get(KEYS.symbols)
        assert listed_names(symbols) == expected_listing(rows)
        assert await r.hlen(KEYS.by_symbol) == 2292
        btc = json.loads(await r.hget(KEYS.by_symbol, "BTCUSDT") or b"{}")
        price = next(row for row in rows if row["symbol"] == "BTCUSDT")["filters"][0]
        assert (btc["tick_size"], btc["min_price"], btc["max_price"]) == (
            price["tickSize"],
            price["minPrice"],
            price["maxPrice"],
        )
        assert btc["tick_size"] == "0.01000000"
        assert (await read_meta(r))["server_time"] == "1694185561976"

        # The 2020 payload lists 860 of 1340: a 36% loss, held back by the guard.
        fake.set_payload(SPOT, older)
        shrunk = await ref.refresh_once()
        assert shrunk.outcome == "rejected"
        assert shrunk.reason.startswith("shrink: 860 listed vs 1340 last good")
        assert await r.get(KEYS.symbols) == symbols
    assert await read_metrics(r) == {"refresh_success": 1, "refresh_rejected": 1}


async def test_recorded_usdm_payload(
    redis_url: str, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    body = recorded("usdm-futures-exchangeinfo-2025-12.json")
    rows = json.loads(body)["symbols"]
    fake.set_payload(USDM, body)
    keys = market_keys("usdm")
    async with open_refresher(
        redis_url, make_settings(fake.url, market="usdm"), market="usdm"
    ) as ref:
        result = await accepted(ref)
    assert (result.count, result.listed) == (660, 559)
    assert fake.requests[USDM] == 1
    assert listed_names(await r.get(keys.symbols)) == expected_listing(rows)
    by_symbol = await r.hgetall(keys.by_symbol)
    assert {k.decode() for k in by_symbol} == {row["symbol"] for row in rows}
    assert json.loads(by_symbol["币安人生USDT".encode()])["market"] == "usdm"
    opening = json.loads(by_symbol[b"OPENUSDT"])
    assert (opening["status"], opening["tick_size"], opening["min_price"]) == (
        "PENDING_TRADING",
        "0",
        "0",
    )
    assert await r.exists(KEYS.symbols) == 0  # spot keys untouched


# ============================================================================================
# 3. upstream faults never replace good data


@dataclass(frozen=True)
class FaultCase:
    id: str
    arm: Callable[[FakeBinance], None]
    outcome: str
    reason_has: tuple[str, ...]
    permanent: bool = False
    counter: str = "refresh_error"
    requests: int = 1


def queue(*faults: Fault) -> Callable[[FakeBinance], None]:
    return lambda fake: fake.fail(SPOT, *faults)


def sticky(fault: Fault) -> Callable[[FakeBinance], None]:
    return lambda fake: fake.set_mode(SPOT, fault)


FAULTS = [
    FaultCase(
        "500",
        queue(Fault.status(500)),
        "error",
        ("all_hosts_failed", "-> server_error:", "HTTP 500"),
    ),
    FaultCase("503", queue(Fault.status(503)), "error", ("-> server_error:", "HTTP 503")),
    FaultCase(
        "502_html", queue(Fault.html_502()), "error", ("-> server_error:", "502 Bad Gateway")
    ),
    FaultCase(
        "404", queue(Fault.status(404)), "error", ("-> http_status:", "HTTP 404"), permanent=True
    ),
    FaultCase("403", queue(Fault.forbidden()), "error", ("forbidden:", "HTTP 403"), permanent=True),
    FaultCase(
        "451",
        queue(Fault.unavailable_for_legal()),
        "error",
        ("legal_restriction:", "HTTP 451", "restricted location"),
        permanent=True,
    ),
    # aiohttp retries an idempotent GET once after a reset before any response.
    FaultCase("reset", sticky(Fault.reset()), "error", ("-> connection:",), requests=2),
    FaultCase(
        "reset_mid_body",
        queue(Fault.reset(mid_body=True)),
        "error",
        ("-> truncated:", "Connection reset by peer"),
    ),
    FaultCase("slow", queue(Fault.slow(30)), "error", ("-> timeout:",)),
    FaultCase("stall_body", queue(Fault.stall_body()), "error", ("-> timeout:",)),
    FaultCase("truncated", queue(Fault.truncated()), "error", ("-> truncated:",)),
    FaultCase("corrupt_gzip", queue(Fault.corrupt_gzip()), "error", ("-> bad_encoding:",)),
    FaultCase(
        "body_too_large",
        queue(Fault.custom(b" " * (MAX_BODY + 1))),
        "error",
        ("body_too_large:", f"max_body_bytes={MAX_BODY}"),
        permanent=True,
    ),
    FaultCase(
        "gzip_bomb_too_large",
        queue(Fault.gzip_bomb(MAX_BODY * 8)),
        "error",
        ("body_too_large:",),
        permanent=True,
    ),
    FaultCase(
        "invalid_json",
        queue(Fault.invalid_json()),
        "rejected",
        ("malformed reply: exchangeInfo payload is not valid JSON",),
        counter="refresh_rejected",
    ),
    FaultCase(
        "wrong_shape_list",
        queue(Fault.wrong_shape("list")),
        "rejected",
        ("malformed reply: exchangeInfo payload has an unusable shape",),
        counter="refresh_rejected",
    ),
    FaultCase(
        "wrong_shape_no_symbols",
        queue(Fault.wrong_shape("no_symbols")),
        "rejected",
        ("malformed reply:", "symbols"),
        counter="refresh_rejected",
    ),
    FaultCase(
        "wrong_shape_symbols_not_list",
        queue(Fault.wrong_shape("symbols_not_list")),
        "rejected",
        ("malformed reply:", "$.symbols"),
        counter="refresh_rejected",
    ),
    FaultCase(
        "empty_symbols",
        queue(Fault.empty_symbols()),
        "rejected",
        ("empty",),
        counter="refresh_rejected",
    ),
    FaultCase(
        "only_unusable_rows",
        queue(Fault.custom(b'{"serverTime":1,"symbols":[1,"x",{"symbol":"A"},null]}')),
        "rejected",
        ("empty",),
        counter="refresh_rejected",
    ),
    FaultCase(
        "nothing_listed",
        queue(Fault.custom(payload(make_rows(5, status="BREAK")))),
        "rejected",
        ("empty",),
        counter="refresh_rejected",
    ),
]


@pytest.mark.parametrize("case", FAULTS, ids=[c.id for c in FAULTS])
async def test_upstream_fault_never_replaces_good_data(
    case: FaultCase, refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    good = await accepted(refresher)
    stored = await read_stored(r)
    ttl_before = await r.pttl(KEYS.symbols)
    requests_before = fake.requests[SPOT]
    case.arm(fake)

    result = await refresher.refresh_once()

    assert result.outcome == case.outcome, result
    assert result.ok is False
    assert result.redis_down is False
    assert result.wait is None
    assert result.permanent is case.permanent
    for part in case.reason_has:
        assert part in result.reason
    if case.reason_has == ("empty",):
        assert result.reason == "empty"
    assert fake.requests[SPOT] - requests_before == case.requests
    # Byte-identical data; the symbols TTL was not renewed by a failed cycle.
    assert await read_stored(r) == stored
    assert 0 < await r.pttl(KEYS.symbols) <= ttl_before
    meta = await read_meta(r)
    assert meta["version"] == good.version
    assert (meta["count"], meta["listed"]) == ("8", "6")
    assert meta["stale"] == "1"
    expected_error = result.reason if case.outcome == "error" else f"rejected: {result.reason}"
    assert meta["last_error"] == expected_error[:500]
    assert meta["last_error"] != ""
    assert await read_metrics(r) == {"refresh_success": 1, case.counter: 1}
    assert await r.get(KEYS.ban_until) is None
    assert await r.xlen(KEYS.changes) == 0

    # Recovery: the next good reply is the same content, so "unchanged", and meta is fresh.
    fake.set_mode(SPOT, None)
    again = await refresher.refresh_once()
    assert again.outcome == "unchanged"
    meta = await read_meta(r)
    assert (meta["stale"], meta["last_error"]) == ("0", "")
    assert await read_metrics(r) == {"refresh_success": 2, case.counter: 1}


async def test_a_failure_is_counted_exactly_once_per_cycle(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    await accepted(refresher)
    fake.set_mode(SPOT, Fault.status(500))
    for _ in range(5):
        assert (await refresher.refresh_once()).outcome == "error"
    fake.set_mode(SPOT, Fault.invalid_json())
    for _ in range(3):
        assert (await refresher.refresh_once()).outcome == "rejected"
    assert await read_metrics(r) == {
        "refresh_success": 1,
        "refresh_error": 5,
        "refresh_rejected": 3,
    }


async def test_failure_before_any_good_snapshot_writes_no_data(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    fake.fail(SPOT, Fault.status(500))
    result = await refresher.refresh_once()
    assert result.outcome == "error"
    assert await r.exists(KEYS.symbols, KEYS.last_good, KEYS.by_symbol, KEYS.refreshed_at) == 0
    meta = await read_meta(r)
    assert meta == {"stale": "1", "last_error": result.reason}
    assert await read_metrics(r) == {"refresh_error": 1}


async def test_a_long_error_is_cut_to_500_characters_in_meta(
    redis_url: str, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    # Three hosts failing with long error bodies make a reason well over 500 characters.
    settings = make_settings(fake.url, {"markets.spot.base_urls": [fake.url] * 3})
    long_error = Fault.status(500, body=b'{"code":-1,"msg":"' + b"x" * 2000 + b'"}')
    async with open_refresher(redis_url, settings) as refresher:
        await accepted(refresher)
        fake.fail(SPOT, long_error, long_error, long_error)
        result = await refresher.refresh_once()
    assert fake.requests[SPOT] == 4
    assert result.outcome == "error"
    assert len(result.reason) > 500
    assert (await read_meta(r))["last_error"] == result.reason[:500]


# -- rate limits ---------------------------------------------------------------------------------


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


# ============================================================================================
# 4. the shrink guard


async def test_shrink_is_held_back_until_confirmed_and_the_streak_survives_a_restart(
    redis_url: str, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    settings = make_settings(fake.url)  # max_shrink 0.2, confirm_shrink 3
    full = payload(make_rows(50))
    shrunk = payload(make_rows(20))  # 60% fewer
    fake.set_payload(SPOT, full)
    async with open_refresher(redis_url, settings) as ref:
        good = await accepted(ref)
        assert good.listed == 50
        stored = await read_stored(r)
        fake.set_payload(SPOT, shrunk)

        first = await ref.refresh_once()
        assert first.outcome == "rejected"
        assert first.reason == (
            "shrink: 20 listed vs 50 last good (more than 20% lost; 1/3 confirmations)"
        )
        assert first.listed == 20
        assert first.version is not None
        assert await read_stored(r) == stored
        meta = await read_meta(r)
        assert (meta["version"], meta["listed"], meta["stale"]) == (good.version, "50", "1")
        assert meta["last_error"] == f"rejected: {first.reason}"
        assert (meta["shrink_version"], meta["shrink_count"]) == (first.version, "1")
        assert await read_metrics(r) == {"refresh_success": 1, "refresh_rejected": 1}

        second = await ref.refresh_once()
        assert second.outcome == "rejected"
        assert second.reason.endswith("(more than 20% lost; 2/3 confirmations)")
        assert (await read_meta(r))["shrink_count"] == "2"
        assert await read_stored(r) == stored

    # A restarted daemon (nothing in memory) continues the streak from meta.
    async with open_refresher(redis_url, settings) as restarted:
        third = await restarted.refresh_once()
    assert third.outcome == "accepted"
    assert third.listed == 20
    assert third.version == first.version
    meta = await read_meta(r)
    assert (meta["version"], meta["listed"], meta["stale"], meta["last_error"]) == (
        first.version,
        "20",
        "0",
        "",
    )
    assert (meta["shrink_version"], meta["shrink_count"]) == ("", "0")
    assert len(listed_names(await r.get(KEYS.symbols))) == 20
    assert await read_metrics(r) == {"refresh_success": 2, "refresh_rejected": 2}
    # The accepted shrink is a change: 30 symbols removed.
    entries = await r.xrange(KEYS.changes)
    assert len(entries) == 1
    assert len(json.loads(entries[0][1][b"diff"])["removed"]) == 30


async def test_a_different_shrunk_reply_restarts_the_streak(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    fake.set_payload(SPOT, payload(make_rows(50)))
    good = await accepted(refresher)
    shrunk_a = payload(make_rows(20))
    shrunk_b = payload(make_rows(21))

    fake.set_payload(SPOT, shrunk_a)
    a1 = await refresher.refresh_once()
    a2 = await refresher.refresh_once()
    assert (a1.outcome, a2.outcome) == ("rejected", "rejected")
    assert (await read_meta(r))["shrink_count"] == "2"

    fake.set_payload(SPOT, shrunk_b)
    b1 = await refresher.refresh_once()
    assert b1.outcome == "rejected"
    assert b1.reason.endswith("1/3 confirmations)")
    meta = await read_meta(r)
    assert (meta["shrink_version"], meta["shrink_count"]) == (b1.version, "1")

    fake.set_payload(SPOT, shrunk_a)
    a3 = await refresher.refresh_once()
    assert a3.outcome == "rejected"
    assert a3.reason.endswith("1/3 confirmations)")
    meta = await read_meta(r)
    assert (meta["version"], meta["shrink_version"], meta["shrink_count"]) == (
        good.version,
        a1.version,
        "1",
    )
    assert await read_metrics(r) == {"refresh_success": 1, "refresh_rejected": 4}


async def test_a_good_reply_in_between_resets_the_streak(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    full = payload(make_rows(50))
    shrunk = payload(make_rows(20))
    fake.set_payload(SPOT, full)
    await accepted(refresher)
    fake.set_payload(SPOT, shrunk)
    assert (await refresher.refresh_once()).outcome == "rejected"
    assert (await refresher.refresh_once()).outcome == "rejected"
    fake.set_payload(SPOT, full)
    assert (await refresher.refresh_once()).outcome == "unchanged"
    meta = await read_meta(r)
    assert (meta["shrink_version"], meta["shrink_count"]) == ("", "0")
    fake.set_payload(SPOT, shrunk)
    again = await refresher.refresh_once()
    assert again.outcome == "rejected"
    assert again.reason.endswith("1/3 confirmations)")


async def test_losing_exactly_max_shrink_is_accepted(
    refresher: MarketRefresher, fake: FakeBinance
) -> None:
    fake.set_payload(SPOT, payload(make_rows(50)))
    await accepted(refresher)
    fake.set_payload(SPOT, payload(make_rows(40)))  # exactly 20% fewer
    result = await refresher.refresh_once()
    assert result.outcome == "accepted"
    assert result.listed == 40
    fake.set_payload(SPOT, payload(make_rows(31)))  # 40 -> 31 is 22.5% fewer
    assert (await refresher.refresh_once()).outcome == "rejected"


async def test_shrink_guard_counts_listed_symbols_not_rows(
    refresher: MarketRefresher, fake: FakeBinance
) -> None:
    rows = make_rows(50)
    fake.set_payload(SPOT, payload(rows))
    await accepted(refresher)
    # Same 50 rows, but 30 of them moved to BREAK: only 20 listed.
    broken = [
        symbol_row(row["symbol"], row["baseAsset"], row["quoteAsset"], status="BREAK")
        if i >= 20
        else row
        for i, row in enumerate(rows)
    ]
    fake.set_payload(SPOT, payload(broken))
    result = await refresher.refresh_once()
    assert result.outcome == "rejected"
    assert result.reason.startswith("shrink: 20 listed vs 50 last good")


# ============================================================================================
# 5. fallback: serving after Redis lost the cache, and Redis down


async def test_redis_restarted_empty_then_upstream_fails_republishes_from_memory(
    redis_factory: Any, settings: Settings, fake: FakeBinance
) -> None:
    server = redis_factory().start()
    check = direct(server.url)
    try:
        async with open_refresher(server.url, settings) as ref:
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
    finally:
        await check.aclose()


async def test_redis_restarted_empty_then_a_rejected_reply_republishes_too(
    redis_factory: Any, settings: Settings, fake: FakeBinance
) -> None:
    server = redis_factory().start()
    check = direct(server.url)
    try:
        async with open_refresher(server.url, settings) as ref:
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
    finally:
        await check.aclose()


async def test_shrink_guard_holds_after_redis_restarted_empty(
    redis_factory: Any, fake: FakeBinance
) -> None:
    """The daemon still knows the last good count from memory, so an empty Redis does not
    turn a shrunk reply into a "first" snapshot."""
    server = redis_factory().start()
    check = direct(server.url)
    try:
        fake.set_payload(SPOT, payload(make_rows(50)))
        async with open_refresher(server.url, make_settings(fake.url)) as ref:
            await accepted(ref)
            stored = await read_stored(check)
            server.restart()
            fake.set_payload(SPOT, payload(make_rows(10)))
            result = await ref.refresh_once()
            assert result.outcome == "rejected"
            assert result.reason.startswith("shrink: 10 listed vs 50 last good")
            assert await check.get(KEYS.symbols) == stored.symbols
            assert await read_metrics(check) == {"refresh_rejected": 1, "fallback_used": 1}
    finally:
        await check.aclose()


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


async def test_watch_after_redis_restarted_empty_republishes_everything(
    redis_factory: Any, settings: Settings
) -> None:
    server = redis_factory().start()
    check = direct(server.url)
    try:
        async with open_refresher(server.url, settings) as ref:
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
    finally:
        await check.aclose()


async def test_redis_down_returns_an_error_without_asking_upstream(
    redis_factory: Any, settings: Settings, fake: FakeBinance
) -> None:
    server = redis_factory().start()
    async with open_refresher(server.url, settings) as ref:
        await accepted(ref)
        server.kill()
        requests = fake.requests[SPOT]

        result = await ref.refresh_once()

        assert result.outcome == "error"
        assert result.redis_down is True
        assert result.reason.startswith("redis: ConnectionError")
        assert result.ok is False
        assert fake.requests[SPOT] == requests
        with pytest.raises(redis.ConnectionError):
            await ref.watch()

        # Back (empty): the next cycle writes a full snapshot again.
        server.start()
        again = await ref.refresh_once()
        assert again.outcome == "accepted"
        check = direct(server.url)
        try:
            assert listed_names(await check.get(KEYS.symbols)) == BASE_LISTED
        finally:
            await check.aclose()


async def test_redis_refusing_writes_is_reported_not_raised(
    redis_factory: Any, settings: Settings, fake: FakeBinance
) -> None:
    """maxmemory 1 with noeviction: reads work, every write fails with OOM (not retried)."""
    server = redis_factory().start()
    check = direct(server.url)
    try:
        async with open_refresher(server.url, settings) as ref:
            await accepted(ref)
            stored = await read_stored(check)
            fake.set_payload(SPOT, CHANGED_PAYLOAD)
            await check.config_set("maxmemory", "1")

            result = await ref.refresh_once()  # the commit is refused
            assert result.outcome == "error"
            assert result.redis_down is True
            assert result.reason.startswith("redis: OutOfMemoryError: ")

            fake.set_payload(SPOT, BASE_PAYLOAD)
            fake.set_mode(SPOT, Fault.status(500))
            result = await ref.refresh_once()  # recording the failure is refused
            assert result.outcome == "error"
            assert result.redis_down is True

            await check.config_set("maxmemory", "0")
            assert await read_stored(check) == stored
    finally:
        await check.aclose()


async def test_redis_refusing_writes_during_a_ban_is_reported_not_raised(
    redis_factory: Any, settings: Settings, fake: FakeBinance
) -> None:
    """A banned cycle that finds the cache gone tries to republish; a refused write there
    must not escape refresh_once either."""
    server = redis_factory().start()
    check = direct(server.url)
    try:
        async with open_refresher(server.url, settings) as ref:
            await accepted(ref)
            fake.fail(SPOT, Fault.rate_limited(retry_after=60))
            assert (await ref.refresh_once()).outcome == "error"
            await check.delete(KEYS.symbols)
            await check.config_set("maxmemory", "1")

            result = await ref.refresh_once()

            assert result.outcome == "error"
            assert result.redis_down is True
            assert fake.requests[SPOT] == 2
            await check.config_set("maxmemory", "0")
            # Once writes work again, the banned cycle republishes and still does not fetch.
            skipped = await ref.refresh_once()
            assert skipped.outcome == "skipped"
            assert await check.exists(KEYS.symbols) == 1
            assert fake.requests[SPOT] == 2
    finally:
        await check.aclose()


# ============================================================================================
# overlap


async def test_an_overlapping_cycle_is_skipped(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    fake.fail(SPOT, Fault.slow(0.3))
    first = asyncio.create_task(refresher.refresh_once())
    await asyncio.wait_for(fake.wait_for_requests(SPOT, 1), 5)

    overlap = await refresher.refresh_once()

    assert overlap.outcome == "skipped"
    assert overlap.reason == "a refresh is already running"
    assert (await first).outcome == "accepted"
    assert fake.requests[SPOT] == 1
    assert await read_metrics(r) == {"refresh_success": 1}


# ============================================================================================
# 6. atomicity: readers never see a mix of two snapshots


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


# ============================================================================================
# 7. exact counters when redis-py retries a transaction that timed out


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


async def test_a_retried_commit_counts_success_exactly_once(
    redis_factory: Any, settings: Settings, fake: FakeBinance
) -> None:
    server = redis_factory().start()
    admin = direct(server.url)
    socket_timeout = 0.5
    try:
        async with open_refresher(
            server.url,
            settings,
            redis_overrides={"socket_timeout": socket_timeout, "retry_attempts": 3},
        ) as ref:
            await accepted(ref)
            fake.set_payload(SPOT, CHANGED_PAYLOAD)
            # Forget the held snapshot so the full write runs. Every write is WATCHed now (its
            # keys' types are checked first), and redis-py never re-sends a watched
            # transaction; the token still guards a reply lost after EXEC
            # (tests/snapshot/test_store_integrity.py re-sends one on purpose).
            ref.held = None
            run_while_asleep(ref, "commit", server.port, socket_timeout + 0.4)
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
    finally:
        await admin.aclose()


async def test_incremental_commit_is_not_resent(
    redis_factory: Any, settings: Settings, fake: FakeBinance
) -> None:
    server = redis_factory().start()
    admin = direct(server.url)
    socket_timeout = 0.5
    try:
        async with open_refresher(
            server.url,
            settings,
            redis_overrides={"socket_timeout": socket_timeout, "retry_attempts": 3},
        ) as ref:
            await accepted(ref)
            assert ref.held is not None  # so the next commit writes only the difference
            fake.set_payload(SPOT, CHANGED_PAYLOAD)
            run_while_asleep(ref, "commit", server.port, socket_timeout + 0.4)
            result = await ref.refresh_once()
            # A watched transaction that timed out is not re-sent as it is; the store then
            # writes the full snapshot with the same one-time token, so success counts once
            # whether or not the server ran the first EXEC after it woke.
            assert result.outcome in ("accepted", "error")
            assert await read_metrics(admin) == {"refresh_success": 2}
            fresh = await ref.refresh_once()  # the same payload again: nothing half-written
            assert fresh.ok
            assert (await read_meta(admin))["version"] == fresh.version == result.version or (
                result.outcome == "error"
            )
            assert await read_metrics(admin) == {"refresh_success": 3}
    finally:
        await admin.aclose()


async def test_a_retried_failure_record_counts_exactly_once(
    redis_factory: Any, settings: Settings, fake: FakeBinance
) -> None:
    server = redis_factory().start()
    admin = direct(server.url)
    socket_timeout = 0.5
    try:
        async with open_refresher(
            server.url,
            settings,
            redis_overrides={"socket_timeout": socket_timeout, "retry_attempts": 3},
        ) as ref:
            await accepted(ref)
            fake.fail(SPOT, Fault.status(500))
            run_while_asleep(ref, "record_failure", server.port, socket_timeout + 0.4)
            await admin.config_resetstat()

            result = await ref.refresh_once()

            assert result.outcome == "error"
            assert result.redis_down is False
            stats = await admin.info("commandstats")
            assert _calls(stats, "exec") == 1  # watched: never re-sent
            assert await read_metrics(admin) == {"refresh_success": 1, "refresh_error": 1}
    finally:
        await admin.aclose()
