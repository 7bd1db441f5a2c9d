"""Builders for refresh tests: Binance-format payloads and a refresher wired to real servers.

Payloads are built as plain dicts in the exact wire shape of spot ``GET /api/v3/exchangeInfo``
(decimal strings, ``filters`` arrays, ``permissionSets``) and encoded compactly with msgspec,
so the bytes of a row's ``filters`` array in the payload are exactly what the snapshot must
re-emit.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import msgspec

from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import MarketName, Settings, load_settings
from daemon.redis.clients import ConnectionConfig
from daemon.refresh.cycle import CycleResult, MarketRefresher, source_config
from daemon.upstream.fetch import make_session

SERVER_TIME = 1_700_000_123_456

Row = dict[str, Any]


def symbol_row(
    symbol: str,
    base: str,
    quote: str,
    *,
    status: str = "TRADING",
    tick_size: str = "0.01000000",
    step_size: str = "0.00001000",
    min_notional: str = "5.00000000",
) -> Row:
    """One spot exchangeInfo row as Binance sends it (2024+ shape, NOTIONAL filter)."""
    return {
        "symbol": symbol,
        "status": status,
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick_size,
                "maxPrice": "1000000.00000000",
                "tickSize": tick_size,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": step_size,
                "maxQty": "9000.00000000",
                "stepSize": step_size,
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "NOTIONAL",
                "minNotional": min_notional,
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
    }


def make_rows(
    n: int,
    *,
    prefix: str = "C",
    quotes: tuple[str, ...] = ("USDT", "FDUSD", "BTC", "TRY"),
    status: str = "TRADING",
) -> list[Row]:
    """`n` distinct rows named ``<prefix><i:04d><quote>``, cycling through `quotes`."""
    rows = []
    for i in range(n):
        quote = quotes[i % len(quotes)]
        base = f"{prefix}{i:04d}"
        rows.append(symbol_row(base + quote, base, quote, status=status))
    return rows


def payload(rows: Iterable[Row], *, server_time: int = SERVER_TIME) -> bytes:
    """A compact exchangeInfo body holding `rows`."""
    doc = {
        "timezone": "UTC",
        "serverTime": server_time,
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            },
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        ],
        "exchangeFilters": [],
        "symbols": list(rows),
    }
    return msgspec.json.encode(doc)


def replace_row(rows: list[Row], symbol: str, **changes: Any) -> list[Row]:
    """A copy of `rows` where `symbol`'s row is rebuilt by :func:`symbol_row` with `changes`."""
    out = []
    for row in rows:
        if row["symbol"] == symbol:
            args = {"status": row["status"]} | changes
            row = symbol_row(row["symbol"], row["baseAsset"], row["quoteAsset"], **args)
        out.append(row)
    return out


# Fast, bounded defaults for tests: a fault shows up within about a second.
TEST_OVERRIDES: dict[str, Any] = {
    "upstream.timeout_total": 1.0,
    "upstream.timeout_connect": 0.5,
    "upstream.timeout_read": 1.0,
    "redis.connect_timeout": 1.0,
    "redis.socket_timeout": 2.0,
    "redis.retry_attempts": 2,
    "redis.retry_backoff_base": 0.01,
    "redis.retry_backoff_cap": 0.05,
}


def make_settings(
    base_url: str, overrides: Mapping[str, Any] | None = None, *, market: MarketName = "spot"
) -> Settings:
    """Settings with `market` enabled and fetching from `base_url`, the test timeouts above,
    then `overrides` by dotted key (``{"guards.confirm_shrink": 2}``)."""
    values: dict[str, Any] = dict(TEST_OVERRIDES)
    values[f"markets.{market}.enabled"] = True
    values[f"markets.{market}.base_urls"] = [base_url]
    values.update(overrides or {})
    return load_settings(environ={}, use_default_path=False, overrides=values).settings


@contextlib.asynccontextmanager
async def open_refresher(
    redis_url: str,
    settings: Settings,
    market: MarketName = "spot",
    *,
    redis_overrides: Mapping[str, Any] | None = None,
) -> AsyncIterator[MarketRefresher]:
    """A MarketRefresher on its own bytes client and HTTP session, both closed on exit.

    Each call is a fresh refresher with nothing in memory: a restarted daemon.
    """
    redis_settings = settings.redis
    if redis_overrides:
        redis_settings = msgspec.structs.replace(redis_settings, **redis_overrides)
    client = ConnectionConfig(
        url=parse_redis_url(redis_url, "test"), settings=redis_settings
    ).make_async(decode=False)
    cfg = settings.markets.get(market)
    session = make_session(source_config(cfg, settings.upstream))
    try:
        yield MarketRefresher.for_market(settings, market, client=client, session=session)
    finally:
        await session.close()
        await client.aclose()


async def accepted(refresher: MarketRefresher) -> CycleResult:
    """One cycle that must store a new snapshot (the test fails otherwise); its result."""
    result = await refresher.refresh_once()
    assert result.outcome == "accepted", result
    return result


def retick(rows: list[Row], tick: str) -> list[Row]:
    """Every row with another tick size: every record changes, so the next snapshot write
    carries all of them (a large MULTI), not a small incremental one."""
    out = rows
    for row in rows:
        out = replace_row(out, row["symbol"], tick_size=tick)
    return out
