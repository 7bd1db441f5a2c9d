"""One refresh cycle writing and publishing a snapshot (MarketRefresher.refresh_once):
every key per the data contract, unchanged and changed payloads, the change event and stream,
recorded Binance payloads, and one cycle at a time.

Real redis-server and fake Binance processes on loopback, nothing mocked (see conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import msgspec
import redis.asyncio

from daemon.config.settings import Settings
from daemon.contract.keys import market_keys
from daemon.contract.rows import decode_row_digests
from daemon.refresh.cycle import MarketRefresher
from daemon.snapshot.normalize import digest
from tests.refresh.spot_market import (
    BASE_ALL,
    BASE_LISTED,
    BASE_PAYLOAD,
    BASE_ROWS,
    CACHE_TTL,
    CHANGED_DIFF,
    CHANGED_PAYLOAD,
    KEYS,
)
from tests.support.builders import SERVER_TIME, Row, accepted, make_settings, open_refresher
from tests.support.fake_binance import SPOT, USDM, FakeBinance, Fault
from tests.support.fixtures import fixture_bytes
from tests.support.stored_snapshot import listed_names, read_meta, read_metrics, read_stored


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

    # meta:rows: the digests of the upstream rows this snapshot came from, in upstream order,
    # for this very version (what a restarted daemon may trust instead of deriving again).
    stored_rows = decode_row_digests(await r.get(f"{KEYS.meta}:rows"))
    assert stored_rows is not None
    assert stored_rows.version == result.version
    upstream = [msgspec.json.encode(row) for row in BASE_ROWS]
    assert stored_rows.digests == b"".join(digest(row) for row in upstream)
    assert await r.ttl(f"{KEYS.meta}:rows") == -1

    # Nothing else was written (besides the one set of recent counting tokens).
    names = {k.decode() for k in await r.keys("*")}
    assert await r.zcard(f"{KEYS.metrics}:once") == 1
    assert names - {f"{KEYS.metrics}:once"} == {
        KEYS.symbols,
        KEYS.last_good,
        KEYS.refreshed_at,
        KEYS.by_symbol,
        KEYS.meta,
        f"{KEYS.meta}:rows",
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


DEFAULT_QUOTES = ("USDT", "FDUSD", "USDC", "BTC", "ETH", "BNB")


def expected_listing(rows: list[Row], statuses: tuple[str, ...] = ("TRADING",)) -> list[str]:
    """The listing order, worked out here independently: quote rank, then symbol."""
    rank = {q: i for i, q in enumerate(DEFAULT_QUOTES)}
    listed = [row for row in rows if row["status"] in statuses]
    listed.sort(key=lambda row: (rank.get(row["quoteAsset"], len(rank)), row["symbol"]))
    return [row["symbol"] for row in listed]


async def test_recorded_spot_payload_then_an_older_smaller_one(
    redis_url: str, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    body = fixture_bytes("spot-exchangeinfo-2023-09.json")
    older = fixture_bytes("spot-exchangeinfo-2020-11.json")
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
    body = fixture_bytes("usdm-futures-exchangeinfo-2025-12.json")
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
