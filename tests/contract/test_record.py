"""The stored record format: today's JSON still decodes, re-encodes byte for byte, and its
filters read as typed values. Pure tests, no Redis."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from daemon.contract import (
    Filters,
    SymbolRecord,
    decode_filters,
    decode_listing,
    decode_record,
    encode_record,
    record_to_dict,
)
from daemon.contract import filters as f
from daemon.contract.record import encode_record_array, encode_records
from daemon.snapshot.normalize import digest, normalize
from tests.support.fixtures import SAMPLES, sample_bytes

# Exactly what the daemon wrote before the contract package existed (the spot sample's
# BTCUSDT), copied here so a format change cannot slip through by changing both sides.
SPOT_BTCUSDT = (
    b'{"symbol":"BTCUSDT","market":"spot","status":"TRADING","base":"BTC","quote":"USDT",'
    b'"tick_size":"0.01000000","min_price":"0.01000000","max_price":"1000000.00000000",'
    b'"step_size":"0.00001000","min_qty":"0.00001000","max_qty":"9000.00000000",'
    b'"market_step_size":"0.00000000","market_min_qty":"0.00000000",'
    b'"market_max_qty":"83.41209517","min_notional":"5.00000000",'
    b'"max_notional":"9000000.00000000","permissions":["MARGIN","SPOT","TRD_GRP_004",'
    b'"TRD_GRP_005","TRD_GRP_006","TRD_GRP_009","TRD_GRP_010","TRD_GRP_011","TRD_GRP_012"],'
    b'"order_types":["LIMIT","LIMIT_MAKER","MARKET","STOP_LOSS","STOP_LOSS_LIMIT",'
    b'"TAKE_PROFIT","TAKE_PROFIT_LIMIT"],"filters":[{"filterType":"PRICE_FILTER",'
    b'"minPrice":"0.01000000","maxPrice":"1000000.00000000","tickSize":"0.01000000"},'
    b'{"filterType":"LOT_SIZE","minQty":"0.00001000","maxQty":"9000.00000000",'
    b'"stepSize":"0.00001000"},{"filterType":"ICEBERG_PARTS","limit":50},'
    b'{"filterType":"MARKET_LOT_SIZE","minQty":"0.00000000","maxQty":"83.41209517",'
    b'"stepSize":"0.00000000"},{"filterType":"TRAILING_DELTA","minTrailingAboveDelta":10,'
    b'"maxTrailingAboveDelta":2000,"minTrailingBelowDelta":10,"maxTrailingBelowDelta":2000},'
    b'{"filterType":"PERCENT_PRICE_BY_SIDE","bidMultiplierUp":"5","bidMultiplierDown":"0.2",'
    b'"askMultiplierUp":"5","askMultiplierDown":"0.2","avgPriceMins":5},'
    b'{"filterType":"NOTIONAL","minNotional":"5.00000000","applyMinToMarket":true,'
    b'"maxNotional":"9000000.00000000","applyMaxToMarket":false,"avgPriceMins":5},'
    b'{"filterType":"MAX_NUM_ORDERS","maxNumOrders":200},'
    b'{"filterType":"MAX_NUM_ORDER_LISTS","maxNumOrderLists":20},'
    b'{"filterType":"MAX_NUM_ALGO_ORDERS","maxNumAlgoOrders":5},'
    b'{"filterType":"MAX_NUM_ORDER_AMENDS","maxNumOrderAmends":10}],'
    b'"contract_type":null,"delivery_date":null,"onboard_date":null,"margin_asset":null}'
)

USDM_BTCUSDT = (
    b'{"symbol":"BTCUSDT","market":"usdm","status":"TRADING","base":"BTC","quote":"USDT",'
    b'"tick_size":"0.10","min_price":"556.80","max_price":"4529764","step_size":"0.001",'
    b'"min_qty":"0.001","max_qty":"1000","market_step_size":"0.001","market_min_qty":"0.001",'
    b'"market_max_qty":"120","min_notional":"100","max_notional":null,'
    b'"permissions":["COPY","DCA","GRID","RPI"],"order_types":["LIMIT","MARKET","STOP",'
    b'"STOP_MARKET","TAKE_PROFIT","TAKE_PROFIT_MARKET","TRAILING_STOP_MARKET"],'
    b'"filters":[{"filterType":"PRICE_FILTER","minPrice":"556.80","maxPrice":"4529764",'
    b'"tickSize":"0.10"},{"filterType":"LOT_SIZE","stepSize":"0.001","maxQty":"1000",'
    b'"minQty":"0.001"},{"filterType":"MARKET_LOT_SIZE","stepSize":"0.001","maxQty":"120",'
    b'"minQty":"0.001"},{"filterType":"MAX_NUM_ORDERS","limit":200},'
    b'{"filterType":"MIN_NOTIONAL","notional":"100"},{"filterType":"PERCENT_PRICE",'
    b'"multiplierUp":"1.0500","multiplierDown":"0.9500","multiplierDecimal":"4"},'
    b'{"filterType":"POSITION_RISK_CONTROL","positionControlSide":"NONE"}],'
    b'"contract_type":"PERPETUAL","delivery_date":4133404800000,"onboard_date":1569398400000,'
    b'"margin_asset":"USDT"}'
)


def _record(filters: bytes) -> SymbolRecord:
    rec = json.loads(SPOT_BTCUSDT)
    rec["filters"] = "@"
    return decode_record(json.dumps(rec).replace('"@"', filters.decode()))


def test_todays_spot_record_decodes_and_reencodes_byte_for_byte() -> None:
    rec = decode_record(SPOT_BTCUSDT)
    assert encode_record(rec) == SPOT_BTCUSDT
    assert rec.tick_size == "0.01000000"
    assert (
        bytes(rec.filters_raw)
        == json.dumps(json.loads(SPOT_BTCUSDT)["filters"], separators=(",", ":")).encode()
    )
    assert record_to_dict(rec) == json.loads(SPOT_BTCUSDT)


def test_todays_daemon_output_is_unchanged() -> None:
    # The normalizer still writes exactly today's bytes for the shipped samples.
    for market, expected in (("spot", SPOT_BTCUSDT), ("usdm", USDM_BTCUSDT)):
        result = normalize((SAMPLES / f"{market}-sample.json").read_bytes(), market=market)
        btc = next(rec for rec in result.records if rec.symbol == "BTCUSDT")
        assert encode_record(btc) == expected
        assert result.digests["BTCUSDT"] == digest(expected)


def test_spot_filters_typed() -> None:
    flt = decode_record(SPOT_BTCUSDT).filters
    assert isinstance(flt, Filters)
    price = flt["PRICE_FILTER"]
    assert price == f.PriceFilter(
        min_price="0.01000000", max_price="1000000.00000000", tick_size="0.01000000"
    )
    lot = flt.get("LOT_SIZE")
    assert lot is not None
    assert lot.step_size == "0.00001000"
    assert flt["ICEBERG_PARTS"].limit == 50
    assert flt["TRAILING_DELTA"].max_trailing_below_delta == 2000
    side = flt["PERCENT_PRICE_BY_SIDE"]
    assert (side.bid_multiplier_down, side.avg_price_mins) == ("0.2", 5)
    notional = flt["NOTIONAL"]
    assert notional.apply_min_to_market is True
    assert notional.apply_max_to_market is False
    assert notional.min_notional == "5.00000000"
    assert flt["MAX_NUM_ORDERS"].max_num_orders == 200
    assert flt["MAX_NUM_ALGO_ORDERS"].max_num_algo_orders == 5
    assert flt["MAX_NUM_ORDER_LISTS"].max_num_order_lists == 20
    assert flt["MAX_NUM_ORDER_AMENDS"].max_num_order_amends == 10
    # iteration is by filterType in upstream order
    assert list(flt) == [e["filterType"] for e in json.loads(SPOT_BTCUSDT)["filters"]]
    assert flt.get("MIN_NOTIONAL") is None
    assert "MIN_NOTIONAL" not in flt
    with pytest.raises(KeyError):
        flt["MAX_POSITION"]


def test_futures_filters_typed() -> None:
    flt = decode_record(USDM_BTCUSDT).filters
    assert flt["MIN_NOTIONAL"] == f.MinNotional(notional="100")
    assert flt["MAX_NUM_ORDERS"].limit == 200
    percent = flt["PERCENT_PRICE"]
    assert (percent.multiplier_up, percent.multiplier_down, percent.multiplier_decimal) == (
        "1.0500",
        "0.9500",
        "4",
    )
    assert flt["POSITION_RISK_CONTROL"].position_control_side == "NONE"


def test_typed_filters_encode_back_to_binance_shape() -> None:
    upstream = json.loads(SPOT_BTCUSDT)["filters"] + json.loads(USDM_BTCUSDT)["filters"]
    entries = decode_filters(json.dumps(upstream)).entries
    assert [msgspec.to_builtins(e) for e in entries] == upstream


def test_unknown_filter_type_and_odd_values() -> None:
    rec = _record(
        b'[{"filterType":"BRAND_NEW","limits":{"a":[1,2]},"ratio":0.50,"on":true},'
        b'{"filterType":"PRICE_FILTER","tickSize":0.00001000,"minPrice":1,"maxPrice":true},'
        b'{"filterType":"LOT_SIZE","stepSize":"0.1","minQty":null,"extra":"x"},'
        b'{"filterType":"MAX_NUM_ORDERS","maxNumOrders":"200","limit":false},'
        b'{"filterType":"NOTIONAL","applyMinToMarket":1,"avgPriceMins":5.0},'
        b'{"filterType":"PRICE_FILTER","tickSize":"9"},'
        b'42,"text",{"noType":1},{"filterType":7}]'
    )
    flt = rec.filters
    # unknown type: a plain dict; a fractional number keeps its exact text
    assert flt["BRAND_NEW"] == {
        "filterType": "BRAND_NEW",
        "limits": {"a": [1, 2]},
        "ratio": "0.50",
        "on": True,
    }
    # known type with odd values: usable ones kept as exact text, the rest None
    assert flt["PRICE_FILTER"] == f.PriceFilter(
        tick_size="0.00001000", min_price="1", max_price=None
    )
    assert flt["LOT_SIZE"] == f.LotSize(step_size="0.1")
    assert flt["MAX_NUM_ORDERS"] == f.MaxNumOrders(max_num_orders=None, limit=None)
    assert flt["NOTIONAL"] == f.Notional()
    # the first PRICE_FILTER wins the lookup; entries keeps both, in order; junk is left out
    assert [e.tick_size for e in flt.entries if isinstance(e, f.PriceFilter)] == [
        "0.00001000",
        "9",
    ]
    assert list(flt) == ["BRAND_NEW", "PRICE_FILTER", "LOT_SIZE", "MAX_NUM_ORDERS", "NOTIONAL"]
    assert len(flt.entries) == 6
    # the raw array is untouched
    assert b'"tickSize":0.00001000' in bytes(rec.filters_raw)


@pytest.mark.parametrize("raw", [b"[]", b"{}", b"null", b"[", b'"x"'])
def test_filters_that_are_not_an_array_give_an_empty_view(raw: bytes) -> None:
    assert dict(decode_filters(raw)) == {}
    assert decode_filters(raw).entries == ()


def test_filters_decoded_lazily_and_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import daemon.contract.record as record_module

    calls: list[bytes] = []
    real = record_module.decode_filters

    def counting(raw: Any) -> Filters:
        calls.append(bytes(raw))
        return real(raw)

    monkeypatch.setattr(record_module, "decode_filters", counting)
    records = decode_listing(b"[" + SPOT_BTCUSDT + b"," + USDM_BTCUSDT + b"]")
    assert calls == []  # decoding records does not decode filters
    first = records[0].filters
    assert records[0].filters is first  # cached on the record
    assert len(calls) == 1
    assert records[1].filters["MIN_NOTIONAL"].notional == "100"
    assert len(calls) == 2


def test_cached_view_changes_neither_equality_nor_encoding() -> None:
    a, b = decode_record(SPOT_BTCUSDT), decode_record(SPOT_BTCUSDT)
    assert a.filters["LOT_SIZE"].min_qty == "0.00001000"  # a has its view cached, b not
    assert a == b
    assert encode_record(a) == SPOT_BTCUSDT
    assert msgspec.structs.replace(a, tick_size="1") != b


def test_incomplete_record_is_refused() -> None:
    partial = json.loads(SPOT_BTCUSDT)
    del partial["margin_asset"]
    with pytest.raises(msgspec.DecodeError):
        decode_record(json.dumps(partial))


def test_a_record_from_a_newer_daemon_with_an_extra_field_still_decodes() -> None:
    # Additive changes are how the format evolves: today's reader ignores unknown keys.
    newer = SPOT_BTCUSDT[:-1] + b',"added_later":{"x":1}}'
    assert decode_record(newer) == decode_record(SPOT_BTCUSDT)


def test_known_filter_types_table() -> None:
    assert set(f.FILTER_TYPES) >= {
        "PRICE_FILTER",
        "PERCENT_PRICE",
        "PERCENT_PRICE_BY_SIDE",
        "LOT_SIZE",
        "MARKET_LOT_SIZE",
        "MIN_NOTIONAL",
        "NOTIONAL",
        "ICEBERG_PARTS",
        "TRAILING_DELTA",
        "MAX_NUM_ORDERS",
        "MAX_NUM_ALGO_ORDERS",
        "MAX_NUM_ICEBERG_ORDERS",
        "MAX_POSITION",
    }
    for name, cls in f.FILTER_TYPES.items():
        assert cls().filter_type == name


def test_encode_decode_record_round_trip() -> None:
    for name, market in (("spot-sample.json", "spot"), ("usdm-sample.json", "usdm")):
        for rec in normalize(sample_bytes(name), market=market).records:
            again = decode_record(encode_record(rec))
            assert again == rec
            assert encode_record(again) == encode_record(rec)


@pytest.mark.parametrize("count", [0, 1, 2, 63, 64, 65, 129, 200])
def test_record_array_is_the_records_json_joined(count: int) -> None:
    base = decode_record(SPOT_BTCUSDT)
    records = [msgspec.structs.replace(base, symbol=f"S{i}USDT") for i in range(count)]
    joined = b"[" + b",".join(encode_record(rec) for rec in records) + b"]"
    assert encode_record_array(records) == joined
    assert encode_records(records) == [encode_record(rec) for rec in records]
