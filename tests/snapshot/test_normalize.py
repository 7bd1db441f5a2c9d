"""Tests for daemon.snapshot.normalize: mapping, validation, ordering, snapshot blobs and diffs.

Pure tests: the only I/O is reading the shipped samples and, when present, the shared
recorded payloads (never copied into the repo).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import msgspec
import pytest

from daemon.contract.ratelimits import RateLimit, request_weight_limit
from daemon.contract.record import MAX_SYMBOL_LENGTH, SymbolRecord, decode_record, encode_record
from daemon.snapshot.diff import diff_snapshots
from daemon.snapshot.listing import SnapshotBlobs, build_snapshot, prioritize
from daemon.snapshot.normalize import Normalized, RowMemo, is_acceptable_symbol, normalize
from daemon.snapshot.payload import PayloadError, decode_payload
from tests.support.fixtures import FIXTURES, SAMPLES

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


# --- helpers -------------------------------------------------------------------------------


def _sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def _fixture(name: str) -> bytes:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"shared Binance fixture {path} not present (set SYMBOLD_BINANCE_FIXTURES)")
    return path.read_bytes()


class _RowFilters(msgspec.Struct):
    symbol: str
    filters: msgspec.Raw


class _Rows(msgspec.Struct):
    symbols: list[_RowFilters]


def _raw_filters(payload: bytes) -> dict[str, bytes]:
    """symbol -> exact bytes of its `filters` value, read independently of the module."""
    return {r.symbol: bytes(r.filters) for r in msgspec.json.decode(payload, type=_Rows).symbols}


def _filters(**overrides: Any) -> list[dict[str, Any]]:
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


_MISSING: Any = object()


def _row(symbol: Any = "BTCUSDT", **fields: Any) -> dict[str, Any]:
    """A spot row; a field set to _MISSING is left out."""
    fields = {"symbol": symbol, **fields}
    row: dict[str, Any] = {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": "BTC",
        "quoteAsset": "USDT",
        "orderTypes": ["LIMIT", "MARKET"],
        "filters": _filters(),
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }
    for key, value in fields.items():
        if value is _MISSING:
            row.pop(key, None)
        else:
            row[key] = value
    return row


def _payload(*rows: Any, **top: Any) -> bytes:
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


def _compact(body: Any) -> bytes:
    # The samples' own format: re-serializing like this keeps every row's bytes unchanged.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _one(payload: bytes, market: str = "spot") -> SymbolRecord:
    result = normalize(payload, market=market)
    assert len(result.records) == 1, result
    return result.records[0]


def _accounted(result: Normalized) -> bool:
    return result.rows == (
        len(result.records) + result.dropped + len(result.refused) + result.duplicates
    )


def _by_symbol(result: Normalized) -> dict[str, SymbolRecord]:
    return {r.symbol: r for r in result.records}


# --- field mapping ---------------------------------------------------------------------


def test_spot_sample_record_every_field() -> None:
    data = _sample("spot-sample.json")
    rec = _by_symbol(normalize(data, market="spot"))["BTCUSDT"]
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
    assert bytes(rec.filters_raw) == _raw_filters(data)["BTCUSDT"]


def test_usdm_sample_record_every_field() -> None:
    data = _sample("usdm-sample.json")
    rec = _by_symbol(normalize(data, market="usdm"))["BTCUSDT_261225"]
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
    assert bytes(rec.filters_raw) == _raw_filters(data)["BTCUSDT_261225"]


def test_samples_normalize_cleanly() -> None:
    spot = normalize(_sample("spot-sample.json"), market="spot")
    usdm = normalize(_sample("usdm-sample.json"), market="usdm")
    for result in (spot, usdm):
        assert (result.dropped, result.refused, result.duplicates, result.lenient) == (0, (), 0, 0)
        assert _accounted(result)
    assert Counter(r.status for r in spot.records) == {"TRADING": 16, "BREAK": 3, "HALT": 1}
    assert {r.quote for r in spot.records} >= {"USDT", "FDUSD", "USDC", "BTC", "ETH", "BNB", "TRY"}
    assert all(r.contract_type is not None for r in usdm.records)
    assert spot.weight_limit == 6000
    assert usdm.weight_limit == 2400
    assert spot.server_time == 1768383000417


def test_record_encodes_every_field_in_order_with_nulls() -> None:
    rec = _by_symbol(normalize(_sample("spot-sample.json"), market="spot"))["LINKETH"]
    decoded = json.loads(encode_record(rec))
    assert tuple(decoded) == RECORD_FIELDS
    # LINKETH has no MARKET_LOT_SIZE: the keys are still there, as null.
    assert decoded["market_step_size"] is None
    assert decoded["market_min_qty"] is None
    assert decoded["market_max_qty"] is None
    assert decoded["contract_type"] is None
    assert decoded["tick_size"] == "0.00000100"


def test_spot_fields_none_for_missing_filters() -> None:
    rec = _one(_payload(_row(filters=[])))
    for field in RECORD_FIELDS[5:16]:
        assert getattr(rec, field) is None, field
    assert bytes(rec.filters_raw) == b"[]"


def test_row_without_filters_key_gets_empty_array() -> None:
    rec = _one(_payload(_row(filters=_MISSING)))
    assert bytes(rec.filters_raw) == b"[]"
    assert rec.tick_size is None


def test_first_filter_of_a_type_wins() -> None:
    second = {"filterType": "PRICE_FILTER", "tickSize": "9", "minPrice": "9", "maxPrice": "9"}
    rec = _one(_payload(_row(filters=[*_filters(), second])))
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
    rec = _one(_payload(_row(filters=_filters(**overrides))))
    assert rec.min_notional == expected
    assert rec.max_notional == ("100.00000000" if notional is not None else None)


def test_both_notional_filters_in_sample_take_larger() -> None:
    rec = _by_symbol(normalize(_sample("spot-sample.json"), market="spot"))["LTCBTC"]
    assert rec.min_notional == "0.00010000"  # MIN_NOTIONAL, larger than NOTIONAL's 0.00005000


def test_futures_min_notional_uses_notional_key() -> None:
    mn = {"notional": "100", "filterType": "MIN_NOTIONAL"}
    rec = _one(_payload(_row(filters=[mn])), market="usdm")
    assert rec.min_notional == "100"
    assert rec.max_notional is None


def test_unparsable_notional_does_not_crash() -> None:
    rec = _one(
        _payload(
            _row(
                filters=_filters(
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
        (["SPOT", "MARGIN"], _MISSING, ("MARGIN", "SPOT")),
        ([], [["SPOT", "TRD_GRP_002"], ["MARGIN", "SPOT"]], ("MARGIN", "SPOT", "TRD_GRP_002")),
        (["SPOT", "LEVERAGED"], [["SPOT"], ["MARGIN"]], ("LEVERAGED", "MARGIN", "SPOT")),
        (_MISSING, ["GRID", "COPY", "DCA", "COPY"], ("COPY", "DCA", "GRID")),  # futures, flat
        ([], [[]], ()),
    ],
)
def test_permissions_union_dedup_sorted(
    permissions: Any, permission_sets: Any, expected: tuple[str, ...]
) -> None:
    rec = _one(_payload(_row(permissions=permissions, permissionSets=permission_sets)))
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
    rec = _one(payload)
    assert bytes(rec.filters_raw) == filters
    encoded = encode_record(rec)
    assert filters in encoded
    assert rec.tick_size == "0.00001000"
    assert rec.max_price == "1000.00000000"
    # Re-decoding the stored record keeps the bytes too.
    assert bytes(decode_record(encoded).filters_raw) == filters


def test_filters_passthrough_byte_exact_on_every_sample_row() -> None:
    for name, market in (("spot-sample.json", "spot"), ("usdm-sample.json", "usdm")):
        data = _sample(name)
        raw = _raw_filters(data)
        result = normalize(data, market=market)
        assert {r.symbol: bytes(r.filters_raw) for r in result.records} == raw


@pytest.mark.parametrize(
    "text", ["0.00001000", "100000000.00000000", "0.10", "1E-8", "0", "00.100", "5"]
)
def test_decimal_strings_kept_exactly(text: str) -> None:
    price = {"filterType": "PRICE_FILTER", "tickSize": text, "minPrice": text, "maxPrice": text}
    rec = _one(_payload(_row(filters=_filters(PRICE_FILTER=price))))
    assert (rec.tick_size, rec.min_price, rec.max_price) == (text, text, text)
    assert f'"tick_size":"{text}"'.encode() in encode_record(rec)


# --- validation and counting -------------------------------------------------------------


def test_dropped_refused_duplicates_are_counted() -> None:
    long_name = "A" * (MAX_SYMBOL_LENGTH + 1)
    rows = [
        _row("BTCUSDT"),
        _row("BTC\x00USDT"),  # control character
        _row("BTC\nUSDT"),  # newline
        _row("BTC USDT"),  # space
        _row("BTC\tUSDT"),  # tab
        _row("BTC\u00a0USDT"),  # NO-BREAK SPACE (Zs)
        _row("BTC\u200bUSDT"),  # ZERO WIDTH SPACE (Cf)
        _row("BTC\u202eUSDT"),  # RIGHT-TO-LEFT OVERRIDE (Cf)
        _row("BTC\u2028USDT"),  # LINE SEPARATOR (Zl)
        _row(long_name),
        _row("ETHUSDT", baseAsset=_MISSING),  # missing base
        _row("ETHBTC", quoteAsset=""),  # empty quote
        _row("BNBUSDT", status=None),  # status not a string
        _row(symbol=""),  # empty symbol
        _row(symbol=_MISSING),
        _row(symbol=12345),  # symbol not a string
        "not an object",
        None,
        _row("BTCUSDT", status="BREAK"),  # duplicate: the first one wins
        _row("SOLUSDT"),
        _row("SOLUSDT"),
    ]
    result = normalize(_payload(*rows), market="spot")
    assert [r.symbol for r in result.records] == ["BTCUSDT", "SOLUSDT"]
    assert result.records[0].status == "TRADING"
    assert len(result.refused) == 9
    assert result.dropped == 8
    assert result.duplicates == 2
    assert result.rows == len(rows)
    assert _accounted(result)
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
    assert _one(_payload(_row(name))).symbol == name


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
    rec = _one(_payload(_row("币安人生USDT", baseAsset="币安人生")))
    assert rec.symbol == "币安人生USDT"
    assert rec.base == "币安人生"
    assert "币安人生USDT".encode() in encode_record(rec)


def test_unknown_status_filter_and_field_pass_through() -> None:
    weird_filter = {"filterType": "BRAND_NEW_FILTER", "limits": {"a": [1, 2]}, "flag": True}
    row = _row(
        "NEWUSDT",
        status="CANCEL_ONLY",
        filters=[*_filters(), weird_filter],
        someNewField={"nested": [1, "two", None]},
        anotherFlag=True,
    )
    result = normalize(_payload(row, _row("ODDUSDT", status="SOMETHING_UNSEEN")), market="spot")
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
    row = _row(
        "ODDUSDT",
        orderTypes=None,
        permissions="SPOT",
        permissionSets=[["SPOT", 7], "MARGIN", 3],
        deliveryDate="soon",
        onboardDate=True,
        contractType=5,
        marginAsset="USDT",
    )
    result = normalize(_payload(row, _row("ETHUSDT", baseAsset="ETH")), market="usdm")
    assert result.lenient == 1
    odd, eth = result.records
    assert odd.order_types == ()
    assert odd.permissions == ("MARGIN", "SPOT")
    assert (odd.delivery_date, odd.onboard_date, odd.contract_type) == (None, None, None)
    assert odd.margin_asset == "USDT"
    assert odd.tick_size == "0.01000000"
    assert eth.base == "ETH"


def test_filters_that_are_not_an_array_become_empty() -> None:
    result = normalize(_payload(_row(filters={"filterType": "PRICE_FILTER"})), market="spot")
    (rec,) = result.records
    assert bytes(rec.filters_raw) == b"[]"
    assert rec.tick_size is None
    assert result.lenient == 1


def test_odd_header_does_not_sink_the_rows() -> None:
    result = normalize(_payload(_row(), serverTime="soon", rateLimits="many"), market="spot")
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
    data = _sample("spot-sample.json")
    for cut in (1, len(data) // 3, len(data) // 2, len(data) - 3):
        with pytest.raises(PayloadError, match="not valid JSON"):
            normalize(data[:cut], market="spot")


def test_payload_error_is_a_value_error() -> None:
    assert issubclass(PayloadError, ValueError)


def test_empty_symbols_list_is_fine() -> None:
    result = normalize(_payload(), market="spot")
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


# --- prioritize ----------------------------------------------------------------------------

_TEMPLATE = _one(_payload(_row("TEMPLATE")))


def _rec(symbol: str, quote: str, status: str = "TRADING") -> SymbolRecord:
    return msgspec.structs.replace(_TEMPLATE, symbol=symbol, quote=quote, status=status)


_POOL = [
    _rec("ETHBTC", "BTC"),
    _rec("XRPUSDT", "USDT"),
    _rec("BTCUSDT", "USDT"),
    _rec("ADAUSDT", "USDT"),
    _rec("BTCFDUSD", "FDUSD"),
    _rec("ETHUSDT", "USDT"),
    _rec("BTCTRY", "TRY"),
    _rec("BTCEUR", "EUR"),
    _rec("SOLUSDT", "USDT", status="BREAK"),
    _rec("LUNAUSDT", "USDT", status="HALT"),
    _rec("BNBBTC", "BTC"),
]


def _order(records: list[SymbolRecord], **kwargs: Any) -> list[str]:
    params: dict[str, Any] = {
        "list_statuses": {"TRADING"},
        "quote_priority": ("USDT", "FDUSD", "BTC"),
        "pinned": (),
    }
    params.update(kwargs)
    return [r.symbol for r in prioritize(records, **params)]


def test_prioritize_quote_rank_then_symbol_unknown_quotes_last() -> None:
    assert _order(_POOL) == [
        "ADAUSDT",
        "BTCUSDT",
        "ETHUSDT",
        "XRPUSDT",
        "BTCFDUSD",
        "BNBBTC",
        "ETHBTC",
        "BTCEUR",  # unknown quotes: after every known one, by symbol
        "BTCTRY",
    ]


def test_prioritize_pinned_first_in_given_order_only_if_present_and_listed() -> None:
    order = _order(_POOL, pinned=("ETHBTC", "SOLUSDT", "NOPEUSDT", "BTCTRY", "ETHBTC"))
    assert order[:2] == ["ETHBTC", "BTCTRY"]
    assert "SOLUSDT" not in order  # pinned but BREAK: not listed
    assert order.count("ETHBTC") == 1
    assert order[2:] == ["ADAUSDT", "BTCUSDT", "ETHUSDT", "XRPUSDT", "BTCFDUSD", "BNBBTC", "BTCEUR"]


def test_prioritize_statuses_and_determinism() -> None:
    expected = _order(_POOL, list_statuses=("TRADING", "BREAK"), pinned=("BTCUSDT",))
    assert expected[0] == "BTCUSDT"
    assert "SOLUSDT" in expected
    assert "LUNAUSDT" not in expected
    rng = random.Random(7)
    for _ in range(5):
        shuffled = _POOL[:]
        rng.shuffle(shuffled)
        assert _order(shuffled, list_statuses=("TRADING", "BREAK"), pinned=("BTCUSDT",)) == expected


def test_prioritize_symbol_order_is_plain_str_order() -> None:
    records = [_rec("币安人生USDT", "USDT"), _rec("ZECUSDT", "USDT"), _rec("1INCHUSDT", "USDT")]
    assert _order(records) == ["1INCHUSDT", "ZECUSDT", "币安人生USDT"]


def test_prioritize_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError, match="list_statuses"):
        prioritize(_POOL, list_statuses="TRADING", quote_priority=(), pinned=())
    with pytest.raises(TypeError, match="pinned"):
        prioritize(_POOL, list_statuses={"TRADING"}, quote_priority=(), pinned="BTCUSDT")


# --- snapshot blobs ------------------------------------------------------------------------


def _snapshot(data: bytes, market: str = "spot", pinned: tuple[str, ...] = ()) -> SnapshotBlobs:
    result = normalize(data, market=market)
    listed = prioritize(
        result.records,
        list_statuses={"TRADING"},
        quote_priority=("USDT", "FDUSD", "USDC", "BTC"),
        pinned=pinned,
    )
    return build_snapshot(result.records, listed)


def test_snapshot_contents() -> None:
    data = _sample("spot-sample.json")
    result = normalize(data, market="spot")
    listed = prioritize(
        result.records, list_statuses={"TRADING"}, quote_priority=("USDT",), pinned=("ETHBTC",)
    )
    snap = build_snapshot(result.records, listed)
    assert snap.count == len(snap.by_symbol) == 20  # every status
    assert snap.listed == len(listed) == 16
    assert snap.by_symbol["GASBTC"] == encode_record(_by_symbol(result)["GASBTC"])
    assert {decode_record(v).symbol for v in snap.by_symbol.values()} == set(snap.by_symbol)
    # symbols_json is exactly the listed records, in order, same bytes as encoding each.
    assert json.loads(snap.symbols_json) == [json.loads(encode_record(r)) for r in listed]
    assert msgspec.json.decode(snap.symbols_json, type=list[SymbolRecord]) == listed
    assert snap.symbols_json == b"[" + b",".join(encode_record(r) for r in listed) + b"]"
    assert json.loads(snap.symbols_json)[0]["symbol"] == "ETHBTC"
    assert len(snap.version) == 32
    int(snap.version, 16)


def test_empty_snapshot() -> None:
    snap = build_snapshot([], [])
    assert (snap.by_symbol, snap.symbols_json, snap.count, snap.listed) == ({}, b"[]", 0, 0)
    assert json.loads(snap.symbols_json) == []


def test_version_stable_and_independent_of_upstream_row_order() -> None:
    data = _sample("spot-sample.json")
    first = _snapshot(data)
    assert _snapshot(data).version == first.version
    body = json.loads(data)
    body["symbols"].reverse()
    body["serverTime"] += 60_000  # a later fetch of the same content
    assert _snapshot(_compact(body)).version == first.version


def test_version_changes_when_one_tick_size_changes() -> None:
    data = _sample("spot-sample.json")
    before = _snapshot(data)
    body = json.loads(data)
    row = next(r for r in body["symbols"] if r["symbol"] == "ANTUSDT")
    assert row["status"] == "BREAK"
    price = next(f for f in row["filters"] if f["filterType"] == "PRICE_FILTER")
    price["tickSize"] = "0.00200000"
    after = _snapshot(_compact(body))
    assert after.version != before.version
    # The change is in an unlisted (BREAK) row: symbols_json is unchanged, by_symbol is not.
    assert after.symbols_json == before.symbols_json
    assert after.by_symbol[row["symbol"]] != before.by_symbol[row["symbol"]]


def test_version_changes_when_listing_order_changes() -> None:
    data = _sample("spot-sample.json")
    assert _snapshot(data).version != _snapshot(data, pinned=("GASBTC", "BTCTRY")).version
    assert _snapshot(data).version != _snapshot(data, pinned=("BTCTRY",)).version


def test_build_snapshot_rejects_inconsistent_input() -> None:
    records = list(normalize(_sample("spot-sample.json"), market="spot").records)
    with pytest.raises(ValueError, match="duplicate"):
        build_snapshot([*records, records[0]], [])
    with pytest.raises(ValueError, match="not in records"):
        build_snapshot(records[1:], [records[0]])


def test_encode_decode_record_round_trip() -> None:
    for name, market in (("spot-sample.json", "spot"), ("usdm-sample.json", "usdm")):
        for rec in normalize(_sample(name), market=market).records:
            again = decode_record(encode_record(rec))
            assert again == rec
            assert encode_record(again) == encode_record(rec)


# --- diff ----------------------------------------------------------------------------------


def test_diff_identical_is_empty() -> None:
    snap = _snapshot(_sample("spot-sample.json"))
    diff = diff_snapshots(snap.by_symbol, dict(snap.by_symbol))
    assert diff.is_empty
    assert diff.to_builtins() == {
        "added": [],
        "removed": [],
        "status_changed": [],
        "filters_changed": [],
        "other_changed": [],
    }
    assert diff_snapshots({}, {}).is_empty


def test_diff_reports_each_kind_of_change() -> None:
    data = _sample("spot-sample.json")
    old = _snapshot(data)
    body = json.loads(data)
    rows = {r["symbol"]: r for r in body["symbols"]}
    rows["ANTUSDT"]["status"] = "TRADING"  # status change
    next(f for f in rows["ETHBTC"]["filters"] if f["filterType"] == "LOT_SIZE")["stepSize"] = (
        "0.00100000"  # step change
    )
    rows["XRPUSDT"]["filters"].append({"filterType": "MAX_POSITION", "maxPosition": "10.0"})
    rows["DOGEUSDT"]["permissionSets"] = [["SPOT"]]  # not a filter change
    del rows["WAVESBTC"]
    rows["PEPEUSDT"] = dict(rows["DOGEUSDT"], symbol="PEPEUSDT", baseAsset="PEPE")
    body["symbols"] = list(rows.values())
    new = _snapshot(_compact(body))

    diff = diff_snapshots(old.by_symbol, new.by_symbol)
    assert diff.added == ("PEPEUSDT",)
    assert diff.removed == ("WAVESBTC",)
    assert diff.status_changed == (("ANTUSDT", "BREAK", "TRADING"),)
    assert diff.filters_changed == ("ETHBTC", "XRPUSDT")
    assert diff.other_changed == ("DOGEUSDT",)
    assert not diff.is_empty
    builtins = diff.to_builtins()
    assert builtins["status_changed"] == [{"symbol": "ANTUSDT", "old": "BREAK", "new": "TRADING"}]
    assert json.loads(json.dumps(builtins)) == builtins

    # Same answer from records, and from a mix of records and stored bytes.
    old_records = {s: decode_record(b) for s, b in old.by_symbol.items()}
    new_records = {s: decode_record(b) for s, b in new.by_symbol.items()}
    assert diff_snapshots(old_records, new_records) == diff
    assert diff_snapshots(old.by_symbol, new_records) == diff
    # And it is directional.
    reverse = diff_snapshots(new.by_symbol, old.by_symbol)
    assert (reverse.added, reverse.removed) == (("WAVESBTC",), ("PEPEUSDT",))
    assert reverse.status_changed == (("ANTUSDT", "TRADING", "BREAK"),)


def test_diff_ignores_filter_key_order() -> None:
    # USD-M sends the keys of each filter object in a varying order.
    a = _one(_payload(_row(filters=[{"filterType": "PRICE_FILTER", "tickSize": "0.1"}])))
    b = _one(_payload(_row(filters=[{"tickSize": "0.1", "filterType": "PRICE_FILTER"}])))
    assert encode_record(a) != encode_record(b)
    assert diff_snapshots({"BTCUSDT": a}, {"BTCUSDT": b}).is_empty


def test_diff_treats_an_unreadable_old_value_as_changed() -> None:
    rec = _one(_payload(_row()))
    diff = diff_snapshots({"BTCUSDT": b"\x00garbage"}, {"BTCUSDT": rec})
    assert diff.status_changed == (("BTCUSDT", "", "TRADING"),)
    assert diff.filters_changed == ("BTCUSDT",)
    assert diff.other_changed == ("BTCUSDT",)


# --- recorded real payloads (skipped when the shared folder is absent) ---------------------


def test_fixture_spot_2023_09() -> None:
    data = _fixture("spot-exchangeinfo-2023-09.json")
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
    raw = _raw_filters(data)
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
    data = _fixture("spot-exchangeinfo-2020-11.json")
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
    data = _fixture("usdm-futures-exchangeinfo-2025-12.json")
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
    assert _by_symbol(result)["BTCUSDT_260327"].contract_type == "CURRENT_QUARTER"


def test_fixture_spot_testnet_2024_09_permissions_from_permission_sets() -> None:
    data = _fixture("spot-testnet-exchangeinfo-2024-09.json")
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
    old = _snapshot(_fixture("spot-exchangeinfo-2020-11.json"))
    new = _snapshot(_fixture("spot-exchangeinfo-2023-09.json"))
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
    return [_row(f"S{i:03d}USDT") for i in range(n)]


@pytest.mark.parametrize(
    "edit",
    ["identical", "in_place", "inserted_first", "removed_middle", "reordered", "odd_rows"],
)
def test_memo_gives_the_same_result_as_a_fresh_run(edit: str) -> None:
    before = _rows(30)
    after = [dict(r) for r in before]
    if edit == "in_place":
        after[10] = _row("S010USDT", status="BREAK")
    elif edit == "inserted_first":
        after.insert(0, _row("NEWUSDT"))
    elif edit == "removed_middle":
        del after[15]
    elif edit == "reordered":
        after.reverse()
    elif edit == "odd_rows":
        after[3] = _row("BAD NAME")  # refused
        after[4] = _row("S000USDT")  # duplicate of row 0
        after[5] = {"symbol": "NOBASE", "status": "TRADING"}  # dropped
        after[6] = _row("S006USDT", filters=[{"filterType": "PRICE_FILTER", "tickSize": 0.5}])

    memo = RowMemo()
    normalize(_payload(*before), market="spot", memo=memo)
    warm = normalize(_payload(*after), market="spot", memo=memo)
    cold = normalize(_payload(*after), market="spot")
    _same(warm, cold)
    assert _accounted(warm)
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
    again = normalize(_payload(*after), market="spot", memo=memo)
    _same(again, cold)
    assert again.processed == 0


def test_memo_keeps_records_independent_of_the_payload_buffer() -> None:
    memo = RowMemo()
    body = bytearray(_payload(*_rows(3)))
    first = normalize(bytes(body), market="spot", memo=memo)
    filters = bytes(first.records[0].filters_raw)
    body[:] = b" " * len(body)  # the caller reuses its buffer
    assert bytes(first.records[0].filters_raw) == filters


def test_build_snapshot_with_and_without_encoded_agree() -> None:
    result = normalize(_payload(*_rows(12)), market="spot")
    listed = prioritize(result.records, list_statuses={"TRADING"}, quote_priority=[], pinned=[])
    with_encoded = build_snapshot(result.records, listed, result.encoded)
    without = build_snapshot(result.records, listed)
    assert with_encoded == without


def test_coinm_rows_take_their_status_from_contract_status() -> None:
    # /dapi/v1/exchangeInfo names the field contractStatus and sends no status at all.
    row = _row("BTCUSD_PERP", quoteAsset="USD", contractType="PERPETUAL", marginAsset="BTC")
    del row["status"]
    row["contractStatus"] = "TRADING"
    rec = _one(_payload(row), market="coinm")
    assert rec.status == "TRADING"
    assert rec.contract_type == "PERPETUAL"
    # `status`, when present, wins
    both = _row("ETHUSD_PERP", quoteAsset="USD", status="BREAK", contractStatus="TRADING")
    assert _one(_payload(both), market="coinm").status == "BREAK"


def test_memo_does_not_keep_the_payload_body_alive() -> None:
    import sys

    memo = RowMemo()
    body = _payload(*_rows(5))
    before = sys.getrefcount(body)
    result = normalize(body, market="spot", memo=memo)
    # a Raw slice keeps a reference to the whole body; the memo and the records must not
    assert sys.getrefcount(body) == before
    assert result.records
    normalize(body, market="spot", memo=memo)  # an all-unchanged pass keeps none either
    assert sys.getrefcount(body) == before
