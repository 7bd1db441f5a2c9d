"""daemon.snapshot.normalize: how a Binance row maps to a SymbolRecord (every field, notional,
permissions) and that filters and decimals pass through byte for byte.

Pure tests: the only I/O is reading the shipped samples and, when present, the shared
recorded payloads (never copied into the repo).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from daemon.contract.record import decode_record, encode_record
from daemon.snapshot.normalize import normalize
from tests.snapshot.rows import (
    MISSING,
    all_accounted,
    make_filters,
    make_payload,
    make_row,
    only_record,
    raw_filters_of,
    records_by_symbol,
)
from tests.support.fixtures import sample_bytes

RECORD_FIELDS = (
    "symbol",
    "market",
    "status",
    "base",
    "quote",
    "tick_size",
    "min_price",
    "max_price",
    "step_size",
    "min_qty",
    "max_qty",
    "market_step_size",
    "market_min_qty",
    "market_max_qty",
    "min_notional",
    "max_notional",
    "permissions",
    "order_types",
    "filters",
    "contract_type",
    "delivery_date",
    "onboard_date",
    "margin_asset",
)


def test_spot_sample_record_every_field() -> None:
    data = sample_bytes("spot-sample.json")
    rec = records_by_symbol(normalize(data, market="spot"))["BTCUSDT"]
    expected = {
        "symbol": "BTCUSDT",
        "market": "spot",
        "status": "TRADING",
        "base": "BTC",
        "quote": "USDT",
        "tick_size": "0.01000000",
        "min_price": "0.01000000",
        "max_price": "1000000.00000000",
        "step_size": "0.00001000",
        "min_qty": "0.00001000",
        "max_qty": "9000.00000000",
        "market_step_size": "0.00000000",
        "market_min_qty": "0.00000000",
        "market_max_qty": "83.41209517",
        "min_notional": "5.00000000",
        "max_notional": "9000000.00000000",
        "permissions": (
            "MARGIN",
            "SPOT",
            "TRD_GRP_004",
            "TRD_GRP_005",
            "TRD_GRP_006",
            "TRD_GRP_009",
            "TRD_GRP_010",
            "TRD_GRP_011",
            "TRD_GRP_012",
        ),
        "order_types": (
            "LIMIT",
            "LIMIT_MAKER",
            "MARKET",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        ),
        "contract_type": None,
        "delivery_date": None,
        "onboard_date": None,
        "margin_asset": None,
    }
    actual = {f: getattr(rec, f) for f in RECORD_FIELDS if f != "filters"}
    assert actual == expected
    assert bytes(rec.filters_raw) == raw_filters_of(data)["BTCUSDT"]


def test_usdm_sample_record_every_field() -> None:
    data = sample_bytes("usdm-sample.json")
    rec = records_by_symbol(normalize(data, market="usdm"))["BTCUSDT_261225"]
    expected = {
        "symbol": "BTCUSDT_261225",
        "market": "usdm",
        "status": "TRADING",
        "base": "BTC",
        "quote": "USDT",
        "tick_size": "0.1",
        "min_price": "576.3",
        "max_price": "1000000",
        "step_size": "0.001",
        "min_qty": "0.001",
        "max_qty": "500",
        "market_step_size": "0.001",
        "market_min_qty": "0.001",
        "market_max_qty": "500",
        "min_notional": "5",  # futures MIN_NOTIONAL carries `notional`
        "max_notional": None,
        "permissions": ("COPY", "GRID"),
        "order_types": (
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ),
        "contract_type": "NEXT_QUARTER",
        "delivery_date": 1798185600000,  # 2026-12-25 08:00 UTC
        "onboard_date": 1782460800000,
        "margin_asset": "USDT",
    }
    actual = {f: getattr(rec, f) for f in RECORD_FIELDS if f != "filters"}
    assert actual == expected
    assert bytes(rec.filters_raw) == raw_filters_of(data)["BTCUSDT_261225"]


def test_samples_normalize_cleanly() -> None:
    spot = normalize(sample_bytes("spot-sample.json"), market="spot")
    usdm = normalize(sample_bytes("usdm-sample.json"), market="usdm")
    for result in (spot, usdm):
        assert (result.dropped, result.refused, result.duplicates, result.lenient) == (0, (), 0, 0)
        assert all_accounted(result)
    assert Counter(r.status for r in spot.records) == {"TRADING": 16, "BREAK": 3, "HALT": 1}
    assert {r.quote for r in spot.records} >= {"USDT", "FDUSD", "USDC", "BTC", "ETH", "BNB", "TRY"}
    assert all(r.contract_type is not None for r in usdm.records)
    assert spot.weight_limit == 6000
    assert usdm.weight_limit == 2400
    assert spot.server_time == 1768383000417


def test_record_encodes_every_field_in_order_with_nulls() -> None:
    rec = records_by_symbol(normalize(sample_bytes("spot-sample.json"), market="spot"))["LINKETH"]
    decoded = json.loads(encode_record(rec))
    assert tuple(decoded) == RECORD_FIELDS
    # LINKETH has no MARKET_LOT_SIZE: the keys are still there, as null.
    assert decoded["market_step_size"] is None
    assert decoded["market_min_qty"] is None
    assert decoded["market_max_qty"] is None
    assert decoded["contract_type"] is None
    assert decoded["tick_size"] == "0.00000100"


def test_spot_fields_none_for_missing_filters() -> None:
    rec = only_record(make_payload(make_row(filters=[])))
    for field in RECORD_FIELDS[5:16]:
        assert getattr(rec, field) is None, field
    assert bytes(rec.filters_raw) == b"[]"


def test_row_without_filters_key_gets_empty_array() -> None:
    rec = only_record(make_payload(make_row(filters=MISSING)))
    assert bytes(rec.filters_raw) == b"[]"
    assert rec.tick_size is None


def test_first_filter_of_a_type_wins() -> None:
    second = {"filterType": "PRICE_FILTER", "tickSize": "9", "minPrice": "9", "maxPrice": "9"}
    rec = only_record(make_payload(make_row(filters=[*make_filters(), second])))
    assert rec.tick_size == "0.01000000"


@pytest.mark.parametrize(
    ("notional", "min_notional", "expected"),
    [
        ("5.00000000", "10.00000000", "10.00000000"),  # MIN_NOTIONAL larger
        ("10.00000000", "5.00000000", "10.00000000"),  # NOTIONAL larger
        ("0.00010000", "0.0001", "0.00010000"),  # equal value: NOTIONAL's text kept
        ("9.5", "10", "10"),  # by value, not by string comparison ("9.5" > "10" as str)
        (None, "0.00100000", "0.00100000"),  # only MIN_NOTIONAL (2020-era spot)
        ("7.00000000", None, "7.00000000"),  # only NOTIONAL
        (None, None, None),
    ],
)
def test_min_notional_rules(
    notional: str | None, min_notional: str | None, expected: str | None
) -> None:
    overrides: dict[str, Any] = {"NOTIONAL": None}
    if notional is not None:
        overrides["NOTIONAL"] = {
            "filterType": "NOTIONAL",
            "minNotional": notional,
            "maxNotional": "100.00000000",
        }
    if min_notional is not None:
        overrides["MIN_NOTIONAL"] = {
            "filterType": "MIN_NOTIONAL",
            "minNotional": min_notional,
            "applyToMarket": True,
        }
    rec = only_record(make_payload(make_row(filters=make_filters(**overrides))))
    assert rec.min_notional == expected
    assert rec.max_notional == ("100.00000000" if notional is not None else None)


def test_both_notional_filters_in_sample_take_larger() -> None:
    rec = records_by_symbol(normalize(sample_bytes("spot-sample.json"), market="spot"))["LTCBTC"]
    assert rec.min_notional == "0.00010000"  # MIN_NOTIONAL, larger than NOTIONAL's 0.00005000


def test_futures_min_notional_uses_notional_key() -> None:
    mn = {"notional": "100", "filterType": "MIN_NOTIONAL"}
    rec = only_record(make_payload(make_row(filters=[mn])), market="usdm")
    assert rec.min_notional == "100"
    assert rec.max_notional is None


def test_unparsable_notional_does_not_crash() -> None:
    rec = only_record(
        make_payload(
            make_row(
                filters=make_filters(
                    NOTIONAL={"filterType": "NOTIONAL", "minNotional": "NaN"},
                    MIN_NOTIONAL={"filterType": "MIN_NOTIONAL", "minNotional": "1.5"},
                )
            )
        )
    )
    assert rec.min_notional == "1.5"


@pytest.mark.parametrize(
    ("permissions", "permission_sets", "expected"),
    [
        (["SPOT", "MARGIN"], MISSING, ("MARGIN", "SPOT")),
        ([], [["SPOT", "TRD_GRP_002"], ["MARGIN", "SPOT"]], ("MARGIN", "SPOT", "TRD_GRP_002")),
        (["SPOT", "LEVERAGED"], [["SPOT"], ["MARGIN"]], ("LEVERAGED", "MARGIN", "SPOT")),
        (MISSING, ["GRID", "COPY", "DCA", "COPY"], ("COPY", "DCA", "GRID")),  # futures, flat
        ([], [[]], ()),
    ],
)
def test_permissions_union_dedup_sorted(
    permissions: Any, permission_sets: Any, expected: tuple[str, ...]
) -> None:
    rec = only_record(
        make_payload(make_row(permissions=permissions, permissionSets=permission_sets))
    )
    assert rec.permissions == expected


def test_filters_passthrough_byte_exact() -> None:
    filters = (
        b'[ {"maxPrice" : "1000.00000000",\n   "filterType":"PRICE_FILTER",'
        b' "tickSize":"0.00001000", "minPrice":"0.00001000"},\n'
        b'  {"filterType":"TRAILING_DELTA","minTrailingAboveDelta":10,'
        b'"maxTrailingAboveDelta":2000},'
        b'{"filterType":"SOMETHING_NEW","nested":{"a":[1,2.50,"x"]},"big":123456789012345678901234}]'
    )
    payload = (
        b'{"serverTime":1,"symbols":[{"symbol":"ABCUSDT","status":"TRADING","baseAsset":"ABC",'
        b'"quoteAsset":"USDT","filters":' + filters + b"}]}"
    )
    rec = only_record(payload)
    assert bytes(rec.filters_raw) == filters
    encoded = encode_record(rec)
    assert filters in encoded
    assert rec.tick_size == "0.00001000"
    assert rec.max_price == "1000.00000000"
    # Re-decoding the stored record keeps the bytes too.
    assert bytes(decode_record(encoded).filters_raw) == filters


def test_filters_passthrough_byte_exact_on_every_sample_row() -> None:
    for name, market in (("spot-sample.json", "spot"), ("usdm-sample.json", "usdm")):
        data = sample_bytes(name)
        raw = raw_filters_of(data)
        result = normalize(data, market=market)
        assert {r.symbol: bytes(r.filters_raw) for r in result.records} == raw


@pytest.mark.parametrize(
    "text", ["0.00001000", "100000000.00000000", "0.10", "1E-8", "0", "00.100", "5"]
)
def test_decimal_strings_kept_exactly(text: str) -> None:
    price = {"filterType": "PRICE_FILTER", "tickSize": text, "minPrice": text, "maxPrice": text}
    rec = only_record(make_payload(make_row(filters=make_filters(PRICE_FILTER=price))))
    assert (rec.tick_size, rec.min_price, rec.max_price) == (text, text, text)
    assert f'"tick_size":"{text}"'.encode() in encode_record(rec)
