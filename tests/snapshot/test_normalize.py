"""Tests for daemon.snapshot.normalize and .payload: mapping, validation, payload errors, the
row memo, and the recorded real payloads.

Pure tests: the only I/O is reading the shipped samples and, when present, the shared
recorded payloads (never copied into the repo).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from daemon.contract.ratelimits import RateLimit, request_weight_limit
from daemon.contract.record import MAX_SYMBOL_LENGTH, decode_record, encode_record
from daemon.snapshot.diff import diff_snapshots
from daemon.snapshot.listing import build_snapshot, prioritize
from daemon.snapshot.normalize import Normalized, RowMemo, is_acceptable_symbol, normalize
from daemon.snapshot.payload import PayloadError, decode_payload
from tests.snapshot.rows import (
    MISSING,
    all_accounted,
    fixture_bytes,
    make_filters,
    make_payload,
    make_row,
    only_record,
    raw_filters_of,
    records_by_symbol,
    sample_bytes,
    snapshot_of,
)

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


# --- field mapping ---------------------------------------------------------------------


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


# --- notional --------------------------------------------------------------------------


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


# --- permissions -----------------------------------------------------------------------


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


# --- byte-exact passthrough and decimals -------------------------------------------------


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


# --- validation and counting -------------------------------------------------------------


def test_dropped_refused_duplicates_are_counted() -> None:
    long_name = "A" * (MAX_SYMBOL_LENGTH + 1)
    rows = [
        make_row("BTCUSDT"),
        make_row("BTC\x00USDT"),  # control character
        make_row("BTC\nUSDT"),  # newline
        make_row("BTC USDT"),  # space
        make_row("BTC\tUSDT"),  # tab
        make_row("BTC\u00a0USDT"),  # NO-BREAK SPACE (Zs)
        make_row("BTC\u200bUSDT"),  # ZERO WIDTH SPACE (Cf)
        make_row("BTC\u202eUSDT"),  # RIGHT-TO-LEFT OVERRIDE (Cf)
        make_row("BTC\u2028USDT"),  # LINE SEPARATOR (Zl)
        make_row(long_name),
        make_row("ETHUSDT", baseAsset=MISSING),  # missing base
        make_row("ETHBTC", quoteAsset=""),  # empty quote
        make_row("BNBUSDT", status=None),  # status not a string
        make_row(symbol=""),  # empty symbol
        make_row(symbol=MISSING),
        make_row(symbol=12345),  # symbol not a string
        "not an object",
        None,
        make_row("BTCUSDT", status="BREAK"),  # duplicate: the first one wins
        make_row("SOLUSDT"),
        make_row("SOLUSDT"),
    ]
    result = normalize(make_payload(*rows), market="spot")
    assert [r.symbol for r in result.records] == ["BTCUSDT", "SOLUSDT"]
    assert result.records[0].status == "TRADING"
    assert len(result.refused) == 9
    assert result.dropped == 8
    assert result.duplicates == 2
    assert result.rows == len(rows)
    assert all_accounted(result)
    # Names are safe to log: escaped, single-line, bounded.
    for name in result.refused:
        assert name.isprintable()
        assert len(name) < MAX_SYMBOL_LENGTH + 40
    assert "'BTC\\x00USDT'" in result.refused
    assert "'BTC\\nUSDT'" in result.refused
    assert "'BTC\\u200bUSDT'" in result.refused
    assert any(n.startswith("'AAAA") and n.endswith("...(+1 chars)") for n in result.refused)


def test_64_character_name_is_accepted() -> None:
    name = "B" * MAX_SYMBOL_LENGTH
    assert only_record(make_payload(make_row(name))).symbol == name


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("BTCUSDT", True),
        ("BTCUSDT_260327", True),
        ("IDOL", True),
        ("币安人生USDT", True),
        ("测试测试USDT", True),
        ("", False),
        ("BTC USDT", False),
        ("BTC\x7fUSDT", False),
        ("BTC\u3000USDT", False),  # IDEOGRAPHIC SPACE
        ("BTC\u2029USDT", False),  # PARAGRAPH SEPARATOR
        ("BTC\u0085USDT", False),  # NEXT LINE (Cc)
        ("BTC\ufeffUSDT", False),  # BOM / ZWNBSP (Cf)
        ("X" * 65, False),
    ],
)
def test_is_acceptable_symbol(name: str, ok: bool) -> None:
    assert is_acceptable_symbol(name) is ok


def test_non_ascii_symbol_accepted_and_encoded_as_utf8() -> None:
    rec = only_record(make_payload(make_row("币安人生USDT", baseAsset="币安人生")))
    assert rec.symbol == "币安人生USDT"
    assert rec.base == "币安人生"
    assert "币安人生USDT".encode() in encode_record(rec)


def test_unknown_status_filter_and_field_pass_through() -> None:
    weird_filter = {"filterType": "BRAND_NEW_FILTER", "limits": {"a": [1, 2]}, "flag": True}
    row = make_row(
        "NEWUSDT",
        status="CANCEL_ONLY",
        filters=[*make_filters(), weird_filter],
        someNewField={"nested": [1, "two", None]},
        anotherFlag=True,
    )
    result = normalize(
        make_payload(row, make_row("ODDUSDT", status="SOMETHING_UNSEEN")), market="spot"
    )
    assert [r.status for r in result.records] == ["CANCEL_ONLY", "SOMETHING_UNSEEN"]
    assert result.lenient == 0
    assert json.loads(bytes(result.records[0].filters_raw))[-1] == weird_filter
    assert result.records[0].tick_size == "0.01000000"


def test_json_number_filter_values_do_not_crash_and_keep_their_text() -> None:
    filters = (
        b'[{"filterType":"PRICE_FILTER","tickSize":0.00001000,"minPrice":1e-8,"maxPrice":1000},'
        b'{"filterType":"LOT_SIZE","stepSize":"0.001","minQty":true,"maxQty":null}]'
    )
    payload = (
        b'{"symbols":[{"symbol":"NUMUSDT","status":"TRADING","baseAsset":"NUM",'
        b'"quoteAsset":"USDT","filters":' + filters + b"},"
        b'{"symbol":"OKUSDT","status":"TRADING","baseAsset":"OK","quoteAsset":"USDT"}]}'
    )
    result = normalize(payload, market="spot")
    assert [r.symbol for r in result.records] == ["NUMUSDT", "OKUSDT"]
    assert result.lenient == 1
    rec = result.records[0]
    assert rec.tick_size == "0.00001000"  # exact source text, not str(float) == "1e-05"
    assert rec.min_price == "1e-8"
    assert rec.max_price == "1000"
    assert rec.step_size == "0.001"
    assert rec.min_qty is None  # a boolean is not a quantity
    assert rec.max_qty is None
    assert bytes(rec.filters_raw) == filters


def test_row_fields_of_unexpected_type_take_the_lenient_path() -> None:
    row = make_row(
        "ODDUSDT",
        orderTypes=None,
        permissions="SPOT",
        permissionSets=[["SPOT", 7], "MARGIN", 3],
        deliveryDate="soon",
        onboardDate=True,
        contractType=5,
        marginAsset="USDT",
    )
    result = normalize(make_payload(row, make_row("ETHUSDT", baseAsset="ETH")), market="usdm")
    assert result.lenient == 1
    odd, eth = result.records
    assert odd.order_types == ()
    assert odd.permissions == ("MARGIN", "SPOT")
    assert (odd.delivery_date, odd.onboard_date, odd.contract_type) == (None, None, None)
    assert odd.margin_asset == "USDT"
    assert odd.tick_size == "0.01000000"
    assert eth.base == "ETH"


def test_filters_that_are_not_an_array_become_empty() -> None:
    result = normalize(
        make_payload(make_row(filters={"filterType": "PRICE_FILTER"})), market="spot"
    )
    (rec,) = result.records
    assert bytes(rec.filters_raw) == b"[]"
    assert rec.tick_size is None
    assert result.lenient == 1


def test_odd_header_does_not_sink_the_rows() -> None:
    result = normalize(
        make_payload(make_row(), serverTime="soon", rateLimits="many"), market="spot"
    )
    assert len(result.records) == 1
    assert (result.server_time, result.weight_limit) == (None, None)


# --- payload errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"[]", "object"),
        (b'"symbols"', "object"),
        (b"42", "object"),
        (b"{}", "symbols"),
        (b'{"serverTime":1,"rateLimits":[]}', "symbols"),
        (b'{"symbols":{}}', "symbols"),
        (b'{"symbols":null}', "symbols"),
        (b'{"symbols":"BTCUSDT"}', "symbols"),
        (b"not json", "JSON"),
        (b"", "JSON"),
        (b'{"symbols":[]} trailing', "JSON"),
        (b"<html>502 Bad Gateway</html>", "JSON"),
    ],
)
def test_payload_errors(payload: bytes, fragment: str) -> None:
    with pytest.raises(PayloadError, match=fragment):
        normalize(payload, market="spot")
    with pytest.raises(PayloadError):
        decode_payload(payload)


def test_truncated_payload_is_a_payload_error() -> None:
    data = sample_bytes("spot-sample.json")
    for cut in (1, len(data) // 3, len(data) // 2, len(data) - 3):
        with pytest.raises(PayloadError, match="not valid JSON"):
            normalize(data[:cut], market="spot")


def test_payload_error_is_a_value_error() -> None:
    assert issubclass(PayloadError, ValueError)


def test_empty_symbols_list_is_fine() -> None:
    result = normalize(make_payload(), market="spot")
    assert result.records == ()
    assert result.rows == 0
    assert result.weight_limit == 6000


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ([RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 6000)], 6000),
        (
            [RateLimit("ORDERS", "SECOND", 10, 50), RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 1200)],
            1200,
        ),
        ([RateLimit("REQUEST_WEIGHT", "MINUTE", 5, 30000)], None),
        ([RateLimit("RAW_REQUESTS", "MINUTE", 1, 6000)], None),
        ([RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 0)], None),
        ([], None),
    ],
)
def test_request_weight_limit(limits: list[RateLimit], expected: int | None) -> None:
    assert request_weight_limit(limits) == expected


# --- recorded real payloads (skipped when the shared folder is absent) ---------------------


def test_fixture_spot_2023_09() -> None:
    data = fixture_bytes("spot-exchangeinfo-2023-09.json")
    result = normalize(data, market="spot")
    assert len(result.records) == result.rows == 2292
    assert (result.dropped, result.refused, result.duplicates, result.lenient) == (0, (), 0, 0)
    assert result.server_time == 1694185561976
    assert result.weight_limit == 6000
    listed = prioritize(
        result.records, list_statuses={"TRADING"}, quote_priority=("USDT",), pinned=()
    )
    snap = build_snapshot(result.records, listed)
    assert snap.count == 2292
    assert snap.listed == 1340
    # Independent cross-check against the stdlib parser (decimal strings compared as text).
    upstream = {row["symbol"]: row for row in json.loads(data)["symbols"]}
    raw = raw_filters_of(data)
    for rec in result.records:
        row = upstream[rec.symbol]
        filters = {f["filterType"]: f for f in row["filters"]}
        assert rec.tick_size == filters["PRICE_FILTER"]["tickSize"]
        assert rec.step_size == filters["LOT_SIZE"]["stepSize"]
        assert rec.min_notional == filters["NOTIONAL"]["minNotional"]
        assert rec.max_notional == filters["NOTIONAL"]["maxNotional"]
        assert rec.market_step_size == filters.get("MARKET_LOT_SIZE", {}).get("stepSize")
        assert rec.permissions == tuple(sorted(set(row["permissions"])))
        assert bytes(rec.filters_raw) == raw[rec.symbol]


def test_fixture_spot_2020_11_uses_min_notional() -> None:
    data = fixture_bytes("spot-exchangeinfo-2020-11.json")
    result = normalize(data, market="spot")
    assert len(result.records) == 1160
    upstream = {row["symbol"]: row for row in json.loads(data)["symbols"]}
    for rec in result.records:
        filters = {f["filterType"]: f for f in upstream[rec.symbol]["filters"]}
        assert "NOTIONAL" not in filters
        assert rec.min_notional == filters["MIN_NOTIONAL"]["minNotional"]
        assert rec.max_notional is None
    assert result.weight_limit == 1200


def test_fixture_usdm_2025_12() -> None:
    data = fixture_bytes("usdm-futures-exchangeinfo-2025-12.json")
    result = normalize(data, market="usdm")
    assert len(result.records) == 660
    assert result.lenient == 0
    assert all(r.contract_type is not None for r in result.records)
    assert Counter(r.status for r in result.records)["SETTLING"] == 49
    upstream = {row["symbol"]: row for row in json.loads(data)["symbols"]}
    for rec in result.records:
        row = upstream[rec.symbol]
        filters = {f["filterType"]: f for f in row["filters"]}
        assert rec.min_notional == filters["MIN_NOTIONAL"]["notional"]
        assert rec.tick_size == filters["PRICE_FILTER"]["tickSize"]
        assert rec.delivery_date == row["deliveryDate"]
        assert rec.margin_asset == row["marginAsset"]
        assert rec.permissions == tuple(sorted(set(row["permissionSets"])))
    names = {r.symbol for r in result.records}
    assert {"币安人生USDT", "测试测试USDT", "IDOL"} <= names
    assert records_by_symbol(result)["BTCUSDT_260327"].contract_type == "CURRENT_QUARTER"


def test_fixture_spot_testnet_2024_09_permissions_from_permission_sets() -> None:
    data = fixture_bytes("spot-testnet-exchangeinfo-2024-09.json")
    result = normalize(data, market="spot")
    assert len(result.records) == 1248
    upstream = {row["symbol"]: row for row in json.loads(data)["symbols"]}
    for rec in result.records:
        row = upstream[rec.symbol]
        assert row["permissions"] == []
        expected = tuple(sorted({p for group in row["permissionSets"] for p in group}))
        assert expected
        assert rec.permissions == expected


def test_fixture_versions_differ_between_payloads_and_diff_works() -> None:
    old = snapshot_of(fixture_bytes("spot-exchangeinfo-2020-11.json"))
    new = snapshot_of(fixture_bytes("spot-exchangeinfo-2023-09.json"))
    assert old.version != new.version
    diff = diff_snapshots(old.by_symbol, new.by_symbol)
    assert len(diff.added) == len(set(new.by_symbol) - set(old.by_symbol)) > 0
    assert len(diff.removed) == len(set(old.by_symbol) - set(new.by_symbol))
    assert all(
        json.loads(old.by_symbol[s])["status"] != json.loads(new.by_symbol[s])["status"]
        for s, _, _ in diff.status_changed
    )


# ---------------------------------------------------------------------------------------
# The row memo: the result never depends on it, only the work does
# ---------------------------------------------------------------------------------------


def _same(a: Normalized, b: Normalized) -> None:
    assert a.records == b.records
    assert dict(a.encoded) == dict(b.encoded)
    assert (a.rows, a.dropped, a.refused, a.duplicates, a.lenient) == (
        b.rows,
        b.dropped,
        b.refused,
        b.duplicates,
        b.lenient,
    )


def _rows(n: int) -> list[dict[str, Any]]:
    return [make_row(f"S{i:03d}USDT") for i in range(n)]


@pytest.mark.parametrize(
    "edit",
    ["identical", "in_place", "inserted_first", "removed_middle", "reordered", "odd_rows"],
)
def test_memo_gives_the_same_result_as_a_fresh_run(edit: str) -> None:
    before = _rows(30)
    after = [dict(r) for r in before]
    if edit == "in_place":
        after[10] = make_row("S010USDT", status="BREAK")
    elif edit == "inserted_first":
        after.insert(0, make_row("NEWUSDT"))
    elif edit == "removed_middle":
        del after[15]
    elif edit == "reordered":
        after.reverse()
    elif edit == "odd_rows":
        after[3] = make_row("BAD NAME")  # refused
        after[4] = make_row("S000USDT")  # duplicate of row 0
        after[5] = {"symbol": "NOBASE", "status": "TRADING"}  # dropped
        after[6] = make_row("S006USDT", filters=[{"filterType": "PRICE_FILTER", "tickSize": 0.5}])

    memo = RowMemo()
    normalize(make_payload(*before), market="spot", memo=memo)
    warm = normalize(make_payload(*after), market="spot", memo=memo)
    cold = normalize(make_payload(*after), market="spot")
    _same(warm, cold)
    assert all_accounted(warm)
    expected_work = {
        "identical": 0,
        "in_place": 1,
        "inserted_first": 1,
        "removed_middle": 0,
        "reordered": 0,
        "odd_rows": 3,  # the duplicate has the very bytes of row 0: found, not decoded
    }[edit]
    assert warm.processed == expected_work
    # and the memo now describes `after`: the same payload again costs nothing
    again = normalize(make_payload(*after), market="spot", memo=memo)
    _same(again, cold)
    assert again.processed == 0


def test_memo_keeps_records_independent_of_the_payload_buffer() -> None:
    memo = RowMemo()
    body = bytearray(make_payload(*_rows(3)))
    first = normalize(bytes(body), market="spot", memo=memo)
    filters = bytes(first.records[0].filters_raw)
    body[:] = b" " * len(body)  # the caller reuses its buffer
    assert bytes(first.records[0].filters_raw) == filters


def test_build_snapshot_with_and_without_encoded_agree() -> None:
    result = normalize(make_payload(*_rows(12)), market="spot")
    listed = prioritize(result.records, list_statuses={"TRADING"}, quote_priority=[], pinned=[])
    with_encoded = build_snapshot(result.records, listed, result.encoded)
    without = build_snapshot(result.records, listed)
    assert with_encoded == without


def test_coinm_rows_take_their_status_from_contract_status() -> None:
    # /dapi/v1/exchangeInfo names the field contractStatus and sends no status at all.
    row = make_row("BTCUSD_PERP", quoteAsset="USD", contractType="PERPETUAL", marginAsset="BTC")
    del row["status"]
    row["contractStatus"] = "TRADING"
    rec = only_record(make_payload(row), market="coinm")
    assert rec.status == "TRADING"
    assert rec.contract_type == "PERPETUAL"
    # `status`, when present, wins
    both = make_row("ETHUSD_PERP", quoteAsset="USD", status="BREAK", contractStatus="TRADING")
    assert only_record(make_payload(both), market="coinm").status == "BREAK"


def test_memo_does_not_keep_the_payload_body_alive() -> None:
    import sys

    memo = RowMemo()
    body = make_payload(*_rows(5))
    before = sys.getrefcount(body)
    result = normalize(body, market="spot", memo=memo)
    # a Raw slice keeps a reference to the whole body; the memo and the records must not
    assert sys.getrefcount(body) == before
    assert result.records
    normalize(body, market="spot", memo=memo)  # an all-unchanged pass keeps none either
    assert sys.getrefcount(body) == before
