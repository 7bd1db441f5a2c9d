"""The spot market the refresh-cycle tests run: its keys, the settings they change, and two
payloads (a base one and a changed one) with what the snapshot of each must list."""

from __future__ import annotations

from typing import Any

from daemon.contract.keys import MarketKeys, market_keys
from tests.support.builders import Row, payload, replace_row, symbol_row

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
