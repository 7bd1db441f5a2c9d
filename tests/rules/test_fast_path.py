"""The planned path of ``check_order`` (the plan of ``daemon.rules.fast``) against the
general check.

For the orders it covers, the planned path must give exactly the general check's result:
the prebuilt passing answer when every rule passes, and equal violations (same order, same
messages) and ``unchecked`` when some fail. These tests run both on the same orders: on every
recorded symbol with orders built to pass, and with Hypothesis on orders near every bound.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.rules import NoValidOrder, SymbolRules, check_order, compile_rules, min_quantity
from daemon.rules.fast import SLOTS
from tests.rules.payloads import PAYLOADS, all_symbols, symbols

TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET")


def general(rules: SymbolRules) -> SymbolRules:
    return msgspec.structs.replace(rules, plan=None)


def both(rules: SymbolRules, side: str, order_type: str, **order: Any) -> Any:
    """check_order with and without the plan; asserts they agree and returns the result."""
    fast = check_order(rules, side, order_type, **order)
    slow = check_order(general(rules), side, order_type, **order)
    assert fast == slow, (rules.symbol, side, order_type, order, fast, slow)
    return fast


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_valid_orders_take_the_fast_path(payload: str) -> None:
    taken = 0
    for sym in symbols(payload):
        rules = sym.rules
        assert rules.plan is not None
        grid = rules.price
        if not rules.trading or grid is None or not grid.step:
            continue
        price = grid.minimum * 3 if grid.minimum else grid.step * 1000
        price = price.quantize(grid.step)
        for order_type in TYPES:
            entry = rules.plan.types[SLOTS[order_type]]
            if entry is None:
                continue
            market = order_type == "MARKET"
            try:
                qty = min_quantity(rules, price, market=market)
            except NoValidOrder:
                continue
            for side in ("BUY", "SELL"):
                for ref in (None, price):
                    result = both(
                        rules, side, order_type, quantity=qty,
                        price=None if market else price, reference_price=ref,
                    )  # fmt: skip
                    expected = {
                        ("BUY", None): entry.buy,
                        ("BUY", price): entry.buy_ref,
                        ("SELL", None): entry.sell,
                        ("SELL", price): entry.sell_ref,
                    }[side, ref]
                    if result.ok:
                        assert result is expected  # the precomputed answer: the fast path
                        taken += 1
    assert taken > len(symbols(payload))  # most recorded symbols pass through the fast path


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_failing_orders_agree_with_general_check(payload: str) -> None:
    # Off both grids, as decimal strings (what the benchmark sends): the planned path builds
    # the violations itself and must give the general check's result, messages included.
    failed = 0
    for sym in symbols(payload):
        rules = sym.rules
        grid, lot = rules.price, rules.lot
        if not rules.trading or grid is None or lot is None or not grid.step or not lot.step:
            continue
        price = str((grid.minimum or grid.step) * 7 + grid.step * Decimal("0.37"))
        qty = str((lot.minimum or lot.step) * 3 + lot.step * Decimal("0.61"))
        for order_type in TYPES:
            market = order_type == "MARKET"
            for side in ("BUY", "SELL"):
                for ref in (None, price):
                    result = both(
                        rules, side, order_type, quantity=qty,
                        price=None if market else price, reference_price=ref,
                    )  # fmt: skip
                    if any(v.rule == "stepSize" for v in result.violations):
                        failed += 1
    assert failed > len(symbols(payload))


NUDGES = ("0", "1E-12", "-1E-12", "0.5", "-0.5", "1", "-1")


@st.composite
def near_bounds(draw: st.DrawFn) -> tuple[SymbolRules, str, str, dict[str, Any]]:
    pool = [s.rules for s in all_symbols() if s.rules.price is not None and s.rules.lot]
    rules = draw(st.sampled_from(pool))
    price_grid, lot = rules.price, rules.lot
    assert price_grid is not None
    assert lot is not None

    def near(value: Decimal, step: Decimal) -> Decimal:
        return value + Decimal(draw(st.sampled_from(NUDGES))) * (step or Decimal(1))

    pick = draw(st.sampled_from(("min", "max", "mid")))
    mid = price_grid.step * draw(st.integers(1, 10**8)) if price_grid.step else Decimal(3)
    base = {"min": price_grid.minimum, "max": price_grid.maximum}.get(pick) or mid
    price = near(base, price_grid.step)
    try:  # start from a quantity that passes at this price, so that many orders pass
        least = min_quantity(rules, price if price > 0 else Decimal(1))
    except NoValidOrder:
        least = lot.minimum
    qbase = {"max": lot.maximum}.get(pick) or least * draw(st.sampled_from((1, 2, 1000)))
    qty = near(qbase, lot.step)
    order_type = draw(st.sampled_from((*TYPES, "STOP_LOSS_LIMIT")))
    ref_factor = draw(
        st.sampled_from((None, "1", "0.01", "0.19", "0.2", "5", "1.06", "0.94", "100", "-1"))
    )
    order: dict[str, Any] = {
        "quantity": draw(st.sampled_from((qty, str(qty), None))),
        "price": None if order_type == "MARKET" and draw(st.booleans()) else price,
        "reference_price": None if ref_factor is None else price * Decimal(ref_factor),
    }
    if order_type == "STOP_LOSS_LIMIT":
        order["stop_price"] = price
    return rules, draw(st.sampled_from(("BUY", "SELL"))), order_type, order


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_bounds())
def test_fast_path_agrees_with_general_check(
    case: tuple[SymbolRules, str, str, dict[str, Any]],
) -> None:
    rules, side, order_type, order = case
    both(rules, side, order_type, **order)


def test_plan_follows_status_and_order_types() -> None:
    price = {"filterType": "PRICE_FILTER", "minPrice": "0", "maxPrice": "0", "tickSize": "0.1"}
    halted = compile_rules("X", "spot", "BREAK", ("LIMIT", "MARKET"), [price])
    assert halted.plan is not None
    assert halted.plan.types == (None, None, None)
    assert not both(halted, "BUY", "LIMIT", quantity="1", price="1").ok
    limit_only = compile_rules("X", "spot", "TRADING", ("LIMIT",), [price])
    assert limit_only.plan is not None
    assert limit_only.plan.types[SLOTS["MARKET"]] is None
    assert not both(limit_only, "BUY", "MARKET", quantity="1").ok
    futures = compile_rules("X", "usdm", "TRADING", ("LIMIT", "LIMIT_MAKER"), [price])
    assert futures.plan is not None
    assert futures.plan.types[SLOTS["LIMIT_MAKER"]] is None  # not a futures type
    assert both(futures, "SELL", "LIMIT", quantity="1", price="0.3").ok


def test_fast_path_raises_what_the_general_check_raises() -> None:
    price = {"filterType": "PRICE_FILTER", "minPrice": "0", "maxPrice": "0", "tickSize": "0.1"}
    rules = compile_rules("X", "spot", "TRADING", ("LIMIT",), [price])
    bare = compile_rules("Y", "spot", "TRADING", ("LIMIT",), [])  # no grid to trip on
    for bad in (
        {"side": "HOLD"},
        {"quantity": "abc"},
        {"price": "NaN"},
        {"quantity": Decimal("Infinity")},
        {"price": Decimal("NaN")},
        {"quantity": "-Infinity"},
    ):
        order = {"side": "BUY", "quantity": "1", "price": "1", **bad}
        errors = []
        for variant in (rules, general(rules), bare, general(bare)):
            with pytest.raises(ValueError) as caught:  # noqa: PT011  # the same error, whatever it is
                check_order(
                    variant,
                    order["side"],
                    "LIMIT",
                    quantity=order["quantity"],
                    price=order["price"],
                )
            errors.append((type(caught.value), str(caught.value)))
        assert errors[0] == errors[1]
        assert errors[2] == errors[3]


def test_grids_anchored_off_zero() -> None:
    # Grids that start at their minimum, not at a multiple of the step (no recorded symbol
    # has one): the fast path must subtract the anchor, as the general check does.
    rules = compile_rules(
        "X", "spot", "TRADING", TYPES,
        [
            {"filterType": "PRICE_FILTER", "minPrice": "0.05", "maxPrice": "0", "tickSize": "0.1"},
            {"filterType": "LOT_SIZE", "minQty": "0.3", "maxQty": "0", "stepSize": "0.5"},
        ],
    )  # fmt: skip
    outcomes = set()
    for price in ("0.05", "0.1", "0.15", "0.2", "7.05", "7.1"):
        for qty in ("0.3", "0.5", "0.8", "1", "5.3"):
            for order_type in ("LIMIT", "MARKET"):
                market = order_type == "MARKET"
                result = both(
                    rules, "BUY", order_type, quantity=qty, price=None if market else price
                )
                outcomes.add(result.ok)
                on_grid = price.endswith("5") and qty.endswith(("3", "8"))
                assert result.ok is (on_grid or (market and qty.endswith(("3", "8"))))
    assert outcomes == {True, False}


@pytest.mark.parametrize("min_price", ["0", "0.1"])
@pytest.mark.parametrize("min_qty", ["0", "0.5"])
def test_values_that_are_not_positive(min_price: str, min_qty: str) -> None:
    # The plan tests positivity up front only when some value has no positive minimum
    # (TypePlan.positive); otherwise the failing grid catches it. Either way a value that is
    # not positive goes to the general check, which reports it as a parameter error.
    rules = compile_rules(
        "X", "spot", "TRADING", TYPES,
        [
            {"filterType": "PRICE_FILTER", "minPrice": min_price, "maxPrice": "0",
             "tickSize": "0.1"},
            {"filterType": "LOT_SIZE", "minQty": min_qty, "maxQty": "100", "stepSize": "0.5"},
            {"filterType": "NOTIONAL", "minNotional": "1", "maxNotional": "50",
             "applyMinToMarket": True, "applyMaxToMarket": True, "avgPriceMins": 5},
        ],
    )  # fmt: skip
    assert rules.plan is not None
    limit, market = rules.plan.types[SLOTS["LIMIT"]], rules.plan.types[SLOTS["MARKET"]]
    assert limit is not None
    assert market is not None
    assert limit.positive is (min_price != "0" and min_qty != "0")
    assert market.positive is (min_qty != "0")
    values = ("-1", "-0.1", "-0", "0", "0E-8", "0.05", "0.1", "0.5", "3", "3.05", "101", "1E+3")
    kinds = set()
    for price in values:
        for qty in values:
            for order_type in ("LIMIT", "MARKET"):
                price_arg = None if order_type == "MARKET" else price
                for ref in (None, "2"):
                    result = both(
                        rules, "BUY", order_type, quantity=qty, price=price_arg,
                        reference_price=ref,
                    )  # fmt: skip
                    kinds.update(v.filter_type for v in result.violations)
    assert {"PARAMETER", "PRICE_FILTER", "LOT_SIZE", "NOTIONAL"} <= kinds


def test_grid_texts_follow_the_grid_not_its_id_or_value() -> None:
    # Message texts are cached by id(grid), each entry holding its grid. Equal grids written
    # differently must keep their own texts, and an entry left by another grid that had the
    # same id must be replaced, on the planned path as on the general one.
    from daemon.rules import violations

    def compiled(tick: str) -> SymbolRules:
        price = {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "0", "tickSize": tick}
        return compile_rules("X", "spot", "TRADING", TYPES, [price])

    short, long = compiled("0.10"), compiled("0.10000000")
    assert short.price == long.price
    for rules, tick in ((short, "0.10"), (long, "0.10000000"), (short, "0.10")):
        result = both(rules, "BUY", "LIMIT", quantity="1", price="1.05")
        assert [v.message for v in result.violations] == [
            f"Filter failure: PRICE_FILTER (price 1.05 is not {tick} plus a multiple of "
            f"tickSize {tick})"
        ]
    assert short.price is not None
    assert long.price is not None
    violations._TEXTS[id(short.price)] = violations.grid_texts(long.price)  # a stale entry
    result = both(short, "BUY", "LIMIT", quantity="1", price="1.05")
    assert "tickSize 0.10)" in result.violations[0].message
    assert violations._TEXTS[id(short.price)][0] is short.price
