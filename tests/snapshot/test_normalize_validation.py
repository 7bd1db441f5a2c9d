"""daemon.snapshot.normalize on rows it must refuse, count or take leniently: bad and
duplicate names, unknown values, odd types, a malformed header.

Pure tests: the only I/O is reading the shipped samples and, when present, the shared
recorded payloads (never copied into the repo).
"""

from __future__ import annotations

import json

import pytest

from daemon.contract.record import MAX_SYMBOL_LENGTH, encode_record
from daemon.snapshot.normalize import is_acceptable_symbol, normalize
from tests.snapshot.rows import (
    MISSING,
    all_accounted,
    make_filters,
    make_payload,
    make_row,
    only_record,
)


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
