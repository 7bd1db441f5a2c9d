"""Properties of the rules library on every symbol of the four recorded payloads.

Two layers: a seeded sweep that visits every recorded symbol (a few values each), and
Hypothesis tests that search values more cleverly on symbols drawn from all payloads.
"""

from __future__ import annotations

import random
from decimal import Decimal, localcontext
from fractions import Fraction

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.rules import (
    Grid,
    NoValidOrder,
    SymbolRules,
    check_order,
    fix_order,
    min_quantity,
    round_price,
    round_quantity,
)
from tests.rules.payloads import PAYLOADS, Symbol, all_symbols, symbols
from tests.rules.reference import reference_violations

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILTER_CHECKS = {"STATUS", "ORDER_TYPE", "PARAMETER"}


def without_plan(rules: SymbolRules) -> SymbolRules:
    """The same rules without the precomputed fast-check plan: check_order's general path."""
    return msgspec.structs.replace(rules, plan=None)


def point(grid: Grid, k: int, frac: Fraction) -> Decimal:
    """``anchor + (k + frac) * step``, exactly, as a Decimal."""
    with localcontext() as ctx:
        ctx.prec = 30  # a realistic number of digits; the library computes exactly beyond
        return grid.anchor + (Decimal(k) + Decimal(frac.numerator) / frac.denominator) * grid.step


def grid_span(grid: Grid) -> int:
    """How many steps lie between the anchor and the maximum (a bound for draws)."""
    if not grid.step:
        return 0
    top = grid.maximum if grid.maximum else grid.anchor + 10**6 * grid.step
    return int((top - grid.anchor) / grid.step)


FRACS = [Fraction(0), Fraction(1, 3), Fraction(1, 2), Fraction(999, 1000), Fraction(1, 10**6)]


def price_of(sym: Symbol, k: int, frac: Fraction) -> Decimal:
    grid = sym.rules.price
    assert grid is not None
    if not grid.step:
        return Decimal(k + 1) + Decimal(frac.numerator) / frac.denominator
    return point(grid, min(k, grid_span(grid)), frac)


def check_rounded_price(sym: Symbol, price: Decimal) -> None:
    grid = sym.rules.price
    assert grid is not None
    for mode in ("floor", "ceil", "nearest"):
        rounded = round_price(sym.rules, price, mode)  # type: ignore[arg-type]
        assert round_price(sym.rules, rounded, mode) == rounded  # idempotent  # type: ignore[arg-type]
        if grid.step:
            assert abs(rounded - price) < grid.step  # moves less than one tick
        if mode == "floor":
            assert rounded <= price
        elif mode == "ceil":
            assert rounded >= price
        result = check_order(sym.rules, "BUY", "LIMIT", quantity=1, price=rounded)
        broken = {v.rule for v in result.violations if v.filter_type == "PRICE_FILTER"}
        assert "tickSize" not in broken
        if grid.minimum <= price and (not grid.maximum or price <= grid.maximum):
            # Inside the bounds, only a ceil past a maximum that is off the grid could leave
            # them; recorded maxima are on the grid.
            assert broken == set(), (sym.rules.symbol, price, mode, rounded, broken)


def check_min_quantity(sym: Symbol, price: Decimal) -> None:
    rules = sym.rules
    for market in (False, True):
        try:
            qty = min_quantity(rules, price, market=market)
        except NoValidOrder:
            continue  # e.g. the minimum notional needs more than maxQty at a tiny price
        order_type = "MARKET" if market else "LIMIT"
        result = check_order(
            rules, "BUY", order_type, quantity=qty,
            price=None if market else price, reference_price=price,
        )  # fmt: skip
        quantity_rules = {"LOT_SIZE", "MARKET_LOT_SIZE", "MIN_NOTIONAL", "NOTIONAL"}
        assert not [v for v in result.violations if v.filter_type in quantity_rules], (
            rules.symbol, price, market, qty, result.violations,
        )  # fmt: skip
        grid = rules.market_qty if market else rules.lot
        if grid is not None and grid.step and qty > grid.step:
            # One step less breaks a rule: it really is the minimum.
            smaller = check_order(
                rules, "BUY", order_type, quantity=qty - grid.step,
                price=None if market else price, reference_price=price,
            )  # fmt: skip
            assert [v for v in smaller.violations if v.filter_type in quantity_rules]


def check_fix(sym: Symbol, side: str, qty: Decimal, price: Decimal) -> None:
    rules = sym.rules
    if not rules.trading:
        with pytest.raises(NoValidOrder):
            fix_order(rules, side, "LIMIT", quantity=qty, price=price)
        return
    try:
        fixed = fix_order(rules, side, "LIMIT", quantity=qty, price=price, reference_price=price)
    except NoValidOrder:
        return
    result = check_order(
        rules, side, "LIMIT", quantity=fixed.quantity, price=fixed.price, reference_price=price
    )
    assert result.ok, (rules.symbol, qty, price, fixed, result.violations)


def compare_with_reference(
    sym: Symbol, side: str, market: bool, qty: Decimal, price: Decimal, ref: Decimal | None
) -> None:
    rules = sym.rules
    result = check_order(
        rules, side, "MARKET" if market else "LIMIT", quantity=qty,
        price=None if market else price, reference_price=ref,
    )  # fmt: skip
    general = check_order(
        without_plan(rules), side, "MARKET" if market else "LIMIT", quantity=qty,
        price=None if market else price, reference_price=ref,
    )  # fmt: skip
    assert result == general, (rules.symbol, side, market, qty, price, ref)  # fast == general
    ours = {(v.filter_type, v.rule) for v in result.violations} - {
        (v.filter_type, v.rule) for v in result.violations if v.filter_type in FILTER_CHECKS
    }
    theirs = reference_violations(
        sym.filters, rules.market != "spot", side, market, Fraction(qty),
        None if market else Fraction(price), None if ref is None else Fraction(ref),
    )  # fmt: skip
    assert ours == theirs, (rules.symbol, side, market, qty, price, ref)


# --- the sweep: every recorded symbol -------------------------------------------------------


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_every_symbol(payload: str) -> None:
    found = symbols(payload)
    assert len(found) > 500
    rng = random.Random(payload)
    for sym in found:
        if sym.rules.price is None or sym.rules.lot is None:
            continue
        lot = sym.rules.lot
        for _ in range(2):
            price = price_of(sym, rng.randrange(1, 10**5), rng.choice(FRACS))
            check_rounded_price(sym, price)
            check_min_quantity(sym, price)
            qty = point(lot, rng.randrange(0, 10**4), rng.choice(FRACS))
            side = rng.choice(("BUY", "SELL"))
            check_fix(sym, side, qty, price)
            ref = price * Decimal(rng.choice(("0.5", "1", "1.04", "3")))
            compare_with_reference(sym, side, rng.random() < 0.3, qty, price, ref)


# --- Hypothesis: cleverer values on symbols from all payloads --------------------------------


@st.composite
def orders(draw: st.DrawFn) -> tuple[Symbol, str, Decimal, Decimal, Decimal | None, bool]:
    pool = [s for s in all_symbols() if s.rules.price is not None and s.rules.lot is not None]
    sym = draw(st.sampled_from(pool))
    price_grid, lot = sym.rules.price, sym.rules.lot
    assert price_grid is not None
    assert lot is not None
    frac = draw(st.sampled_from(FRACS))
    price = price_of(sym, draw(st.integers(0, max(grid_span(price_grid), 1) + 2)), frac)
    if price <= 0:
        price = price_grid.step or Decimal(1)
    qty = point(lot, draw(st.integers(0, max(grid_span(lot), 1) + 2)), draw(st.sampled_from(FRACS)))
    if qty <= 0:
        qty = lot.step or Decimal(1)
    ref = draw(st.none() | st.sampled_from(("0.1", "0.96", "1", "1.049", "7")))
    reference = None if ref is None else price * Decimal(ref)
    return sym, draw(st.sampled_from(("BUY", "SELL"))), qty, price, reference, draw(st.booleans())


@SETTINGS
@given(orders())
def test_check_order_agrees_with_fraction_reference(
    order: tuple[Symbol, str, Decimal, Decimal, Decimal | None, bool],
) -> None:
    sym, side, qty, price, ref, market = order
    compare_with_reference(sym, side, market, qty, price, ref)


@SETTINGS
@given(orders())
def test_rounding_min_quantity_and_fix(
    order: tuple[Symbol, str, Decimal, Decimal, Decimal | None, bool],
) -> None:
    sym, side, qty, price, _ref, market = order
    check_rounded_price(sym, price)
    check_min_quantity(sym, price)
    check_fix(sym, side, qty, price)
    rounded = round_quantity(sym.rules, qty, market=market)
    assert rounded <= qty  # toward zero: never more than asked
    assert round_quantity(sym.rules, rounded, market=market) == rounded
    grid = sym.rules.market_qty if market else sym.rules.lot
    if grid is not None and grid.step:
        assert qty - rounded < grid.step
