"""Table tests written from Binance's filter documentation (spot "Filters" page, USD-M and
COIN-M exchangeInfo docs): one small hand-made symbol per rule, values on and around each
bound."""

from __future__ import annotations

import decimal
import enum
from decimal import Decimal
from typing import Any

import pytest

from daemon.rules import (
    NoValidOrder,
    OrderValueError,
    RulesError,
    SymbolRules,
    check_order,
    compile_rules,
    fix_order,
    min_quantity,
    round_price,
    round_quantity,
)

SPOT_TYPES = (
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
)
FUTURES_TYPES = (
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
)
PRICE = {
    "filterType": "PRICE_FILTER",
    "minPrice": "0.00000100",
    "maxPrice": "100000.00000000",
    "tickSize": "0.00000100",
}
LOT = {
    "filterType": "LOT_SIZE",
    "minQty": "0.00100000",
    "maxQty": "100000.00000000",
    "stepSize": "0.00100000",
}


def spot(*filters: dict[str, Any], status: str = "TRADING") -> SymbolRules:
    return compile_rules("TESTBTC", "spot", status, SPOT_TYPES, list(filters))


def futures(*filters: dict[str, Any], market: str = "usdm", **kw: Any) -> SymbolRules:
    return compile_rules("TESTUSDT", market, "TRADING", FUTURES_TYPES, list(filters), **kw)


def failures(result: Any) -> set[tuple[str, str]]:
    return {(v.filter_type, v.rule) for v in result.violations}


# --- PRICE_FILTER ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        ("0.00000100", set()),
        ("0.00000099", {("PRICE_FILTER", "minPrice"), ("PRICE_FILTER", "tickSize")}),
        ("0.00000200", set()),
        ("0.00000150", {("PRICE_FILTER", "tickSize")}),
        ("100000", set()),
        ("100000.00000100", {("PRICE_FILTER", "maxPrice")}),
        ("1234.5678", set()),
    ],
)
def test_price_filter_bounds_and_tick(price: str, expected: set[tuple[str, str]]) -> None:
    result = check_order(spot(PRICE, LOT), "BUY", "LIMIT", quantity="1", price=price)
    assert failures(result) == expected
    assert result.ok is (not expected)


def test_price_filter_zero_disables_each_part() -> None:
    rules = spot({"filterType": "PRICE_FILTER", "minPrice": "0", "maxPrice": "0", "tickSize": "0"})
    result = check_order(rules, "SELL", "LIMIT", quantity="1", price="0.000000000123456789")
    assert result.ok
    result = check_order(rules, "SELL", "LIMIT", quantity="1", price="987654321987654321")
    assert result.ok


def test_price_filter_grid_starts_at_min_price() -> None:
    # (price - minPrice) % tickSize == 0: with minPrice 0.05 and tick 0.1, 0.15 is on the grid
    # and 0.1 is not.
    rules = spot(
        {"filterType": "PRICE_FILTER", "minPrice": "0.05", "maxPrice": "0", "tickSize": "0.1"}
    )
    assert check_order(rules, "BUY", "LIMIT", quantity="1", price="0.15").ok
    assert failures(check_order(rules, "BUY", "LIMIT", quantity="1", price="0.1")) == {
        ("PRICE_FILTER", "tickSize")
    }
    assert round_price(rules, "0.12", "floor") == Decimal("0.05")
    assert round_price(rules, "0.12", "ceil") == Decimal("0.15")
    assert round_price(rules, "0.1", "nearest") == Decimal("0.15")  # the tie goes up


def test_price_filter_applies_to_stop_price() -> None:
    result = check_order(
        spot(PRICE, LOT), "SELL", "STOP_LOSS_LIMIT", quantity="1", price="1", stop_price="0.0000005"
    )
    assert {(v.field, v.rule) for v in result.violations} == {
        ("stopPrice", "minPrice"),
        ("stopPrice", "tickSize"),
    }


# --- LOT_SIZE and MARKET_LOT_SIZE --------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "expected"),
    [
        ("0.001", set()),
        ("0.0009", {("LOT_SIZE", "minQty"), ("LOT_SIZE", "stepSize")}),
        ("0.0015", {("LOT_SIZE", "stepSize")}),
        ("100000", set()),
        ("100000.001", {("LOT_SIZE", "maxQty")}),
    ],
)
def test_lot_size(qty: str, expected: set[tuple[str, str]]) -> None:
    assert failures(check_order(spot(LOT), "BUY", "LIMIT", quantity=qty, price="1")) == expected


def test_market_orders_pass_lot_size_and_market_lot_size() -> None:
    # Spot shape: MARKET_LOT_SIZE's min and step are 0 (disabled) while its maxQty binds.
    market_lot = {
        "filterType": "MARKET_LOT_SIZE",
        "minQty": "0.00000000",
        "maxQty": "250.00000000",
        "stepSize": "0.00000000",
    }
    rules = spot(LOT, market_lot)
    assert check_order(rules, "BUY", "MARKET", quantity="250").ok
    assert failures(check_order(rules, "BUY", "MARKET", quantity="250.001")) == {
        ("MARKET_LOT_SIZE", "maxQty")
    }
    # LOT_SIZE still applies to MARKET orders: the market filter's 0 step does not relax it.
    assert failures(check_order(rules, "BUY", "MARKET", quantity="1.0001")) == {
        ("LOT_SIZE", "stepSize")
    }
    # A LIMIT order is not bound by MARKET_LOT_SIZE.
    assert check_order(rules, "BUY", "LIMIT", quantity="1000", price="1").ok
    # MARKET-like stop orders execute at market: the market rule applies to them too.
    result = check_order(rules, "SELL", "STOP_LOSS", quantity="300", stop_price="1")
    assert failures(result) == {("MARKET_LOT_SIZE", "maxQty")}
    assert round_quantity(rules, "300.0009", market=True) == Decimal("300.000")


def test_market_lot_size_step_coarser_than_lot_size() -> None:
    market_lot = {
        "filterType": "MARKET_LOT_SIZE",
        "minQty": "0.1",
        "maxQty": "50",
        "stepSize": "0.1",
    }
    rules = futures(LOT, market_lot)
    assert failures(check_order(rules, "BUY", "MARKET", quantity="0.25")) == {
        ("MARKET_LOT_SIZE", "stepSize")
    }
    assert round_quantity(rules, "0.25", market=True) == Decimal("0.2")
    assert round_quantity(rules, "0.25") == Decimal("0.250")
    assert min_quantity(rules, None, market=True) == Decimal("0.1")


# --- notional ----------------------------------------------------------------------------


def test_min_notional_apply_to_market() -> None:
    on = {
        "filterType": "MIN_NOTIONAL",
        "minNotional": "10",
        "applyToMarket": True,
        "avgPriceMins": 5,
    }
    rules = spot(PRICE, LOT, on)
    assert failures(check_order(rules, "BUY", "LIMIT", quantity="0.999", price="10")) == {
        ("MIN_NOTIONAL", "minNotional")
    }
    assert check_order(rules, "BUY", "LIMIT", quantity="1", price="10").ok
    market = check_order(rules, "BUY", "MARKET", quantity="0.5", reference_price="10")
    assert failures(market) == {("MIN_NOTIONAL", "minNotional")}
    assert market.violations[0].value == Decimal("5.0")
    # Without a reference price the market notional cannot be decided: reported, not passed.
    unknown = check_order(rules, "BUY", "MARKET", quantity="0.5")
    assert unknown.ok
    assert "MIN_NOTIONAL" in unknown.unchecked
    off = spot(PRICE, LOT, {**on, "applyToMarket": False})
    assert check_order(off, "BUY", "MARKET", quantity="0.5", reference_price="10").ok


def test_notional_min_and_max_with_market_flags() -> None:
    notional = {
        "filterType": "NOTIONAL",
        "minNotional": "10.00000000",
        "applyMinToMarket": False,
        "maxNotional": "10000.00000000",
        "applyMaxToMarket": True,
        "avgPriceMins": 5,
    }
    rules = spot(PRICE, LOT, notional)
    assert failures(check_order(rules, "BUY", "LIMIT", quantity="1", price="9.999999")) == {
        ("NOTIONAL", "minNotional")
    }
    assert failures(check_order(rules, "BUY", "LIMIT", quantity="1001", price="10")) == {
        ("NOTIONAL", "maxNotional")
    }
    assert check_order(rules, "BUY", "MARKET", quantity="0.001", reference_price="10").ok
    assert failures(
        check_order(rules, "BUY", "MARKET", quantity="1000.001", reference_price="10")
    ) == {("NOTIONAL", "maxNotional")}
    # quoteOrderQty is the notional itself.
    assert failures(check_order(rules, "BUY", "MARKET", quote_quantity="10000.01")) == {
        ("NOTIONAL", "maxNotional")
    }


def test_usdm_min_notional_uses_notional_and_applies_to_market() -> None:
    rules = futures(
        {
            "filterType": "PRICE_FILTER",
            "minPrice": "261.10",
            "maxPrice": "809484",
            "tickSize": "0.10",
        },
        {"filterType": "LOT_SIZE", "maxQty": "1000", "minQty": "0.001", "stepSize": "0.001"},
        {"notional": "100", "filterType": "MIN_NOTIONAL"},
    )
    assert failures(check_order(rules, "BUY", "LIMIT", quantity="0.001", price="50000")) == {
        ("MIN_NOTIONAL", "notional")
    }
    assert check_order(rules, "BUY", "LIMIT", quantity="0.002", price="50000").ok
    assert failures(
        check_order(rules, "SELL", "MARKET", quantity="0.001", reference_price="50000")
    ) == {("MIN_NOTIONAL", "notional")}
    assert min_quantity(rules, "50000") == Decimal("0.002")


def test_coinm_counts_contracts_and_has_no_notional() -> None:
    rules = futures(
        {"filterType": "PRICE_FILTER", "minPrice": "1000", "maxPrice": "0", "tickSize": "0.1"},
        {"filterType": "LOT_SIZE", "minQty": "1", "maxQty": "1000000", "stepSize": "1"},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "1", "maxQty": "1000", "stepSize": "1"},
        {
            "filterType": "PERCENT_PRICE",
            "multiplierUp": "1.05",
            "multiplierDown": "0.95",
            "multiplierDecimal": 4,
        },
        market="coinm",
        contract_size=100,
    )
    assert rules.contract_size == Decimal(100)
    assert rules.notionals == ()
    assert check_order(rules, "BUY", "LIMIT", quantity=1, price="30000.1").ok
    assert failures(check_order(rules, "BUY", "LIMIT", quantity="1.5", price="30000")) == {
        ("LOT_SIZE", "stepSize")
    }
    assert min_quantity(rules, "30000") == Decimal(1)
    assert round_quantity(rules, "2.9") == Decimal(2)


# --- percent price -----------------------------------------------------------------------


def test_percent_price_spot_bounds_both_sides() -> None:
    # The forum example: average 200, multipliers 5 and 0.2 give 40 <= price <= 1000.
    pp = {
        "filterType": "PERCENT_PRICE",
        "multiplierUp": "5",
        "multiplierDown": "0.2",
        "avgPriceMins": 5,
    }
    rules = spot(PRICE, LOT, pp)
    for side in ("BUY", "SELL"):
        assert check_order(rules, side, "LIMIT", quantity="1", price="40", reference_price="200").ok
        assert check_order(
            rules, side, "LIMIT", quantity="1", price="1000", reference_price="200"
        ).ok
        high = check_order(
            rules, side, "LIMIT", quantity="1", price="1000.000001", reference_price="200"
        )
        assert failures(high) == {("PERCENT_PRICE", "multiplierUp")}
        low = check_order(
            rules, side, "LIMIT", quantity="1", price="39.999999", reference_price="200"
        )
        assert failures(low) == {("PERCENT_PRICE", "multiplierDown")}
    unknown = check_order(rules, "BUY", "LIMIT", quantity="1", price="1")
    assert unknown.ok
    assert "PERCENT_PRICE" in unknown.unchecked


def test_percent_price_by_side_uses_bid_for_buy_and_ask_for_sell() -> None:
    by_side = {
        "filterType": "PERCENT_PRICE_BY_SIDE",
        "bidMultiplierUp": "1.2",
        "bidMultiplierDown": "0.2",
        "askMultiplierUp": "5",
        "askMultiplierDown": "0.8",
        "avgPriceMins": 1,
    }
    rules = spot(PRICE, LOT, by_side)

    def check(side: str, price: str) -> set[tuple[str, str]]:
        return failures(
            check_order(rules, side, "LIMIT", quantity="1", price=price, reference_price="100")
        )

    assert check("BUY", "120") == set()
    assert check("BUY", "120.000001") == {("PERCENT_PRICE_BY_SIDE", "bidMultiplierUp")}
    assert check("BUY", "20") == set()
    assert check("SELL", "120.000001") == set()
    assert check("SELL", "79.999999") == {("PERCENT_PRICE_BY_SIDE", "askMultiplierDown")}
    assert check("SELL", "500.000001") == {("PERCENT_PRICE_BY_SIDE", "askMultiplierUp")}


def test_futures_percent_price_is_one_sided() -> None:
    pp = {
        "multiplierDown": "0.9500",
        "filterType": "PERCENT_PRICE",
        "multiplierDecimal": "4",
        "multiplierUp": "1.0500",
    }
    rules = futures(pp)
    assert rules.percent_price is not None
    assert rules.percent_price.multiplier_decimal == 4

    def check(side: str, price: str) -> set[tuple[str, str]]:
        return failures(
            check_order(rules, side, "LIMIT", quantity="1", price=price, reference_price="100")
        )

    assert check("BUY", "105.01") == {("PERCENT_PRICE", "multiplierUp")}
    assert check("BUY", "1") == set()  # a low BUY is not bounded by this filter
    assert check("SELL", "94.99") == {("PERCENT_PRICE", "multiplierDown")}
    assert check("SELL", "1000") == set()


# --- iceberg, trailing delta, status, order types, account filters ------------------------


def test_iceberg_parts() -> None:
    rules = spot(PRICE, LOT, {"filterType": "ICEBERG_PARTS", "limit": 10})
    assert check_order(rules, "BUY", "LIMIT", quantity="1", price="1", iceberg_quantity="0.1").ok
    result = check_order(rules, "BUY", "LIMIT", quantity="1", price="1", iceberg_quantity="0.09")
    assert failures(result) == {("ICEBERG_PARTS", "limit")}  # ceil(1 / 0.09) = 12 parts
    fixed = fix_order(rules, "BUY", "LIMIT", quantity="1", price="1", iceberg_quantity="0.09")
    assert fixed.iceberg_quantity == Decimal("0.100")
    assert "icebergQty" in fixed.changed


@pytest.mark.parametrize(
    ("order_type", "side", "delta", "rule"),
    [
        ("STOP_LOSS", "BUY", 9, "minTrailingAboveDelta"),
        ("STOP_LOSS_LIMIT", "BUY", 2001, "maxTrailingAboveDelta"),
        ("TAKE_PROFIT", "SELL", 9, "minTrailingAboveDelta"),
        ("STOP_LOSS", "SELL", 4, "minTrailingBelowDelta"),
        ("TAKE_PROFIT_LIMIT", "BUY", 1001, "maxTrailingBelowDelta"),
        ("STOP_LOSS", "SELL", 5, None),
        ("STOP_LOSS", "BUY", 2000, None),
    ],
)
def test_trailing_delta(order_type: str, side: str, delta: int, rule: str | None) -> None:
    td = {
        "filterType": "TRAILING_DELTA",
        "minTrailingAboveDelta": 10,
        "maxTrailingAboveDelta": 2000,
        "minTrailingBelowDelta": 5,
        "maxTrailingBelowDelta": 1000,
    }
    rules = spot(PRICE, LOT, td)
    price = "1" if order_type.endswith("LIMIT") else None
    result = check_order(rules, side, order_type, quantity="1", price=price, trailing_delta=delta)
    assert failures(result) == ({("TRAILING_DELTA", rule)} if rule else set())


def test_status_and_order_type() -> None:
    halted = spot(PRICE, LOT, status="BREAK")
    result = check_order(halted, "BUY", "LIMIT", quantity="1", price="1")
    assert [v.filter_type for v in result.violations] == ["STATUS"]
    with pytest.raises(NoValidOrder, match="BREAK"):
        fix_order(halted, "BUY", "LIMIT", quantity="1", price="1")
    rules = compile_rules("X", "spot", "TRADING", ("LIMIT",), [PRICE, LOT])
    assert [
        v.filter_type for v in check_order(rules, "BUY", "MARKET", quantity="1").violations
    ] == ["ORDER_TYPE"]


def test_account_filters_and_unknown_filters_are_unchecked_never_fatal() -> None:
    rules = spot(
        PRICE,
        LOT,
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        {"filterType": "MAX_POSITION", "maxPosition": "10.00000000"},
        {"filterType": "SOMETHING_NEW_2030", "whatever": [1, 2]},
    )
    limit = check_order(rules, "SELL", "LIMIT", quantity="1", price="1")
    assert limit.ok
    assert set(limit.unchecked) == {"MAX_NUM_ORDERS", "SOMETHING_NEW_2030"}
    stop_buy = check_order(rules, "BUY", "STOP_LOSS_LIMIT", quantity="1", price="1", stop_price="1")
    assert set(stop_buy.unchecked) == {
        "MAX_NUM_ORDERS",
        "SOMETHING_NEW_2030",
        "MAX_NUM_ALGO_ORDERS",
        "MAX_POSITION",
    }


def test_mandatory_parameters() -> None:
    rules = spot(PRICE, LOT)
    result = check_order(rules, "BUY", "LIMIT", quantity="1")
    assert [(v.filter_type, v.field) for v in result.violations] == [("PARAMETER", "price")]
    assert result.violations[0].message.startswith("Mandatory parameter 'price'")
    assert failures(check_order(rules, "BUY", "LIMIT", quantity="0", price="1")) == {
        ("PARAMETER", "positive")
    }


# --- messages, inputs, malformed filters -------------------------------------------------


def test_messages_start_like_binance_errors() -> None:
    result = check_order(spot(PRICE, LOT), "BUY", "LIMIT", quantity="0.0001", price="1")
    assert result.violations
    for violation in result.violations:
        assert violation.message.startswith("Filter failure: LOT_SIZE")
    assert "0.0001" in result.violations[0].message


def test_float_inputs_use_their_shortest_repr() -> None:
    rules = spot(
        {"filterType": "PRICE_FILTER", "minPrice": "0.1", "maxPrice": "0", "tickSize": "0.1"}, LOT
    )
    # 0.3 as a binary float is 0.2999999999999999888...; read as "0.3" it is on the grid.
    assert check_order(rules, "BUY", "LIMIT", quantity=1.5, price=0.3).ok
    assert round_price(rules, 0.1 + 0.2, "floor") == Decimal("0.3")  # repr is 0.30000000000000004


@pytest.mark.parametrize(
    "bad", ["abc", "NaN", "Infinity", True, None, [1], Decimal("NaN"), Decimal("-Infinity")]
)
def test_non_numbers_are_refused(bad: Any) -> None:
    with pytest.raises((OrderValueError, TypeError)):
        round_price(spot(PRICE), bad)
    with pytest.raises((OrderValueError, TypeError)):
        round_quantity(spot(LOT), bad)
    with pytest.raises(OrderValueError):
        round_quantity(spot(), bad)  # no grid: the value itself is refused


@pytest.mark.parametrize(
    ("side", "order_type", "field"),
    [
        (["BUY"], "LIMIT", "side"),
        ("buy", "LIMIT", "side"),
        (None, "LIMIT", "side"),
        ("BUY", ["LIMIT"], "order_type"),
        ("BUY", None, "order_type"),
        ("SELL", 5, "order_type"),
    ],
)
def test_a_side_or_order_type_of_the_wrong_kind_is_named(
    side: Any, order_type: Any, field: str
) -> None:
    # Named before any number is read, with valid numbers and with a bad one alike.
    for quantity in ("1", "x"):
        with pytest.raises(OrderValueError) as caught:
            check_order(spot(PRICE, LOT), side, order_type, quantity=quantity, price="1")
        assert caught.value.field == field


def test_a_str_enum_side_and_order_type_are_accepted() -> None:
    class Side(enum.StrEnum):
        BUY = "BUY"

    class OrderType(enum.StrEnum):
        LIMIT = "LIMIT"

    rules = spot(PRICE, LOT)
    plain = check_order(rules, "BUY", "LIMIT", quantity="0.0001", price="1")
    assert check_order(rules, Side.BUY, OrderType.LIMIT, quantity="0.0001", price="1") == plain
    # an unknown order type is a violation, as Binance reports it, not an error
    assert not check_order(rules, "BUY", "NOPE", quantity="1", price="1").ok


def test_exact_whatever_the_callers_decimal_context() -> None:
    rules = spot(
        {
            "filterType": "NOTIONAL",
            "minNotional": "1",
            "applyMinToMarket": True,
            "maxNotional": "99999999999999999999.99999999",
            "applyMaxToMarket": True,
            "avgPriceMins": 5,
        }
    )
    with decimal.localcontext(decimal.Context(prec=6)):
        # 12345678.12345678 * 8100000.0000001 needs 31 digits; at prec 6 it would round.
        result = check_order(
            rules, "BUY", "LIMIT", quantity="8100000.0000001", price="12345678.12345678"
        )
    assert result.ok
    assert round_quantity(spot(LOT), "12345678912345.123456789") == Decimal("12345678912345.123")


@pytest.mark.parametrize(
    ("bad_filter", "field"),
    [
        ({**PRICE, "tickSize": "abc"}, "tickSize"),
        ({**PRICE, "tickSize": "-0.1"}, "tickSize"),
        ({"filterType": "PRICE_FILTER", "minPrice": "1", "maxPrice": "2"}, "tickSize"),
        ({**LOT, "minQty": 0.001}, "minQty"),
        ({**LOT, "minQty": "5", "maxQty": "1"}, "minQty"),
        ({"filterType": "ICEBERG_PARTS", "limit": "ten"}, "limit"),
        (
            {"filterType": "NOTIONAL", "minNotional": "1", "applyMinToMarket": "yes"},
            "applyMinToMarket",
        ),
    ],
)
def test_malformed_filters_raise_rules_error(bad_filter: dict[str, Any], field: str) -> None:
    with pytest.raises(RulesError) as caught:
        compile_rules("BADSYM", "spot", "TRADING", ["LIMIT"], [bad_filter])
    assert caught.value.symbol == "BADSYM"
    assert caught.value.filter_type == bad_filter["filterType"]
    assert caught.value.field == field
    assert "BADSYM" in str(caught.value)
    assert field in str(caught.value)


# --- rounding and fixing -----------------------------------------------------------------


def test_round_price_modes_and_side_default() -> None:
    rules = spot(PRICE)
    assert round_price(rules, "1.0000015", "floor") == Decimal("1.000001")
    assert round_price(rules, "1.0000015", "ceil") == Decimal("1.000002")
    assert round_price(rules, "1.0000015", "nearest") == Decimal("1.000002")
    assert round_price(rules, "1.0000014999") == Decimal("1.000001")
    assert round_price(rules, "1.0000019", side="BUY") == Decimal("1.000001")
    assert round_price(rules, "1.0000011", side="SELL") == Decimal("1.000002")
    assert str(round_price(rules, "2")) == "2.000000"  # plain notation, tick's decimals


def test_round_on_steps_that_are_not_powers_of_ten() -> None:
    rules = spot(
        {"filterType": "PRICE_FILTER", "minPrice": "0", "maxPrice": "0", "tickSize": "0.5"},
        {"filterType": "LOT_SIZE", "minQty": "5", "maxQty": "0", "stepSize": "5"},
    )
    assert round_price(rules, "10.74", "nearest") == Decimal("10.5")
    assert round_price(rules, "10.75", "nearest") == Decimal("11.0")
    assert round_price(rules, "10.01", "ceil") == Decimal("10.5")
    assert round_quantity(rules, "14.99") == Decimal("10")
    assert str(round_quantity(rules, "1234")) == "1230"
    assert check_order(rules, "BUY", "LIMIT", quantity="1230", price="10.5").ok


def test_min_quantity_and_fix_order() -> None:
    notional = {
        "filterType": "NOTIONAL",
        "minNotional": "10",
        "applyMinToMarket": True,
        "maxNotional": "1000",
        "applyMaxToMarket": False,
        "avgPriceMins": 5,
    }
    rules = spot(PRICE, LOT, notional)
    assert min_quantity(rules, "3") == Decimal("3.334")  # 10 / 3 = 3.333.. rounded up to a step
    fixed = fix_order(rules, "BUY", "LIMIT", quantity="1", price="3.0000001")
    assert (fixed.price, fixed.quantity) == (Decimal("3.000000"), Decimal("3.334"))
    assert set(fixed.changed) == {"price", "quantity"}
    capped = fix_order(rules, "SELL", "LIMIT", quantity="500", price="3")
    assert capped.quantity == Decimal("333.333")  # cut to the max notional
    assert fix_order(rules, "BUY", "LIMIT", quantity="5", price="3").changed == ()


def test_no_valid_order_says_why() -> None:
    tight = {
        "filterType": "NOTIONAL",
        "minNotional": "100",
        "applyMinToMarket": True,
        "maxNotional": "100.0001",
        "applyMaxToMarket": True,
        "avgPriceMins": 5,
    }
    rules = spot(PRICE, {**LOT, "stepSize": "1", "minQty": "1"}, tight)
    # At 30 per unit: 4 units = 120 is over the max, 3 units = 90 under the min.
    with pytest.raises(NoValidOrder, match="above NOTIONAL maxNotional"):
        min_quantity(rules, "30")
    with pytest.raises(NoValidOrder):
        fix_order(rules, "BUY", "LIMIT", quantity="3", price="30")
    capped = spot(PRICE, {**LOT, "maxQty": "1"}, tight)
    with pytest.raises(NoValidOrder, match="above maxQty"):
        min_quantity(capped, "0.5")  # 200 units would be needed, only 1 allowed
