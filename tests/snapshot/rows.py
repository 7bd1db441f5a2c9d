"""Payload and record builders shared by the snapshot tests (pure, no I/O)."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from daemon.contract.record import SymbolRecord
from daemon.snapshot.listing import SnapshotBlobs, build_snapshot, prioritize
from daemon.snapshot.normalize import Normalized, normalize


class RowFilters(msgspec.Struct):
    symbol: str
    filters: msgspec.Raw


class Rows(msgspec.Struct):
    symbols: list[RowFilters]


def raw_filters_of(payload: bytes) -> dict[str, bytes]:
    """symbol -> exact bytes of its `filters` value, read independently of the module."""
    return {r.symbol: bytes(r.filters) for r in msgspec.json.decode(payload, type=Rows).symbols}


def make_filters(**overrides: Any) -> list[dict[str, Any]]:
    base: dict[str, dict[str, Any]] = {
        "PRICE_FILTER": {
            "filterType": "PRICE_FILTER",
            "minPrice": "0.01000000",
            "maxPrice": "1000000.00000000",
            "tickSize": "0.01000000",
        },
        "LOT_SIZE": {
            "filterType": "LOT_SIZE",
            "minQty": "0.00001000",
            "maxQty": "9000.00000000",
            "stepSize": "0.00001000",
        },
        "MARKET_LOT_SIZE": {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": "0.00000000",
            "maxQty": "80.00000000",
            "stepSize": "0.00000000",
        },
        "NOTIONAL": {
            "filterType": "NOTIONAL",
            "minNotional": "5.00000000",
            "applyMinToMarket": True,
            "maxNotional": "9000000.00000000",
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        },
    }
    for name, value in overrides.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return list(base.values())


MISSING: Any = object()


def make_row(symbol: Any = "BTCUSDT", **fields: Any) -> dict[str, Any]:
    """A spot row; a field set to MISSING is left out."""
    fields = {"symbol": symbol, **fields}
    row: dict[str, Any] = {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": "BTC",
        "quoteAsset": "USDT",
        "orderTypes": ["LIMIT", "MARKET"],
        "filters": make_filters(),
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }
    for key, value in fields.items():
        if value is MISSING:
            row.pop(key, None)
        else:
            row[key] = value
    return row


def make_payload(*rows: Any, **top: Any) -> bytes:
    body: dict[str, Any] = {
        "timezone": "UTC",
        "serverTime": 1700000000000,
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            }
        ],
        "exchangeFilters": [],
        "symbols": list(rows),
    }
    body.update(top)
    return json.dumps(body, ensure_ascii=False).encode()


def compact_json(body: Any) -> bytes:
    # The samples' own format: re-serializing like this keeps every row's bytes unchanged.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def only_record(payload: bytes, market: str = "spot") -> SymbolRecord:
    result = normalize(payload, market=market)
    assert len(result.records) == 1, result
    return result.records[0]


def all_accounted(result: Normalized) -> bool:
    return result.rows == (
        len(result.records) + result.dropped + len(result.refused) + result.duplicates
    )


def records_by_symbol(result: Normalized) -> dict[str, SymbolRecord]:
    return {r.symbol: r for r in result.records}


def snapshot_of(data: bytes, market: str = "spot", pinned: tuple[str, ...] = ()) -> SnapshotBlobs:
    result = normalize(data, market=market)
    listed = prioritize(
        result.records,
        list_statuses={"TRADING"},
        quote_priority=("USDT", "FDUSD", "USDC", "BTC"),
        pinned=pinned,
    )
    return build_snapshot(result.records, listed)
