"""Rounding helpers: move prices and quantities onto a symbol's grids.

Results are exact ``Decimal`` values given with the grid's decimal places (a step of
``0.00100000`` gives ``Decimal("1.234")``), so ``str(result)`` is always plain notation that
Binance accepts. The grid starts at the filter's minimum, as in
``(price - minPrice) % tickSize == 0``; on every recorded symbol the minimum is itself a
multiple of the step, so this is the grid through zero that ccxt uses too.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, DecimalException
from typing import Final, Literal

from daemon.rules.decimals import (
    EXACT,
    ONE,
    ZERO,
    Number,
    ceil_ratio,
    parse_exact,
    quantize_ceiling,
    quantize_floor,
    quantize_half_up,
    snap,
    to_decimal,
)
from daemon.rules.errors import NoValidOrder, OrderValueError
from daemon.rules.model import Grid, SymbolRules

__all__ = ["RoundingMode", "min_quantity", "round_price", "round_quantity"]

RoundingMode = Literal["floor", "ceil", "nearest"]

_NAN: Final = Decimal("NaN")  # "not read yet": the input goes through to_decimal


def round_price(
    rules: SymbolRules,
    price: Number,
    mode: RoundingMode | None = None,
    *,
    side: str | None = None,
) -> Decimal:
    """``price`` on the symbol's tick grid.

    ``mode`` is ``"floor"``, ``"ceil"`` or ``"nearest"`` (a tie rounds up). Without a mode the
    default is side-aware: a BUY rounds down and a SELL rounds up, so a limit price never
    gets worse for the caller than the one asked for (a buyer never pays more, a seller never
    receives less), and a passive order never crosses further into the book. With neither
    mode nor side the default is ``"nearest"``, the rounding ccxt applies to prices. For stop
    prices, pass the mode you want: which way is "safe" depends on the strategy.

    Bounds (minPrice, maxPrice) are not applied; :func:`fix_order` does that. A disabled tick
    (0) returns the price unchanged. Raises :class:`OrderValueError` for a negative price or
    a value that is not a number.
    """
    # to_decimal's two common cases inlined (the hot path); anything else, and every error,
    # goes through it. round_quantity repeats these lines: a shared helper costs one more
    # call per rounding, measurably slower on the pair the benchmark compares with ccxt.
    kind = type(price)
    if kind is str:
        try:
            value = parse_exact(price)
        except DecimalException:
            value = _NAN
    else:
        value = price if kind is Decimal else _NAN  # type: ignore[assignment]
    if not value.is_finite():
        value = to_decimal(price, "price")
    if value.is_signed() and value:  # value < 0 (-0 passes), without a context lookup
        raise OrderValueError("price", price, "must not be negative")
    grid = rules.price
    if grid is None or grid.quantum is None:
        return value
    # Comparisons with the (interned) literals are cheaper than a dict lookup here.
    if mode is None:  # the side-aware default
        if side is None:
            rounding, quantize = ROUND_HALF_UP, quantize_half_up
        elif side == "BUY":
            rounding, quantize = ROUND_FLOOR, quantize_floor
        elif side == "SELL":
            rounding, quantize = ROUND_CEILING, quantize_ceiling
        else:
            raise OrderValueError("side", side, "expected BUY or SELL")
    elif mode == "nearest":
        rounding, quantize = ROUND_HALF_UP, quantize_half_up
    elif mode == "floor":
        rounding, quantize = ROUND_FLOOR, quantize_floor
    elif mode == "ceil":
        rounding, quantize = ROUND_CEILING, quantize_ceiling
    else:
        raise OrderValueError("mode", mode, "expected floor, ceil or nearest")
    try:
        if grid.fast:  # the common case: one quantize
            return quantize(value, grid.quantum)
        return snap(grid, value, rounding)
    except DecimalException as exc:
        raise OrderValueError("price", price, "too large or too precise") from exc


def round_quantity(rules: SymbolRules, quantity: Number, *, market: bool = False) -> Decimal:
    """``quantity`` rounded toward zero onto the LOT_SIZE step grid: never more than the
    caller asked for. With ``market=True`` the grid is the one a MARKET order must meet
    (LOT_SIZE and MARKET_LOT_SIZE together). Bounds (minQty, maxQty) are not applied;
    :func:`min_quantity` and :func:`fix_order` deal with them. Raises
    :class:`OrderValueError` for a negative quantity or a value that is not a number.
    """
    kind = type(quantity)
    if kind is str:
        try:
            value = parse_exact(quantity)
        except DecimalException:
            value = _NAN
    else:
        value = quantity if kind is Decimal else _NAN  # type: ignore[assignment]
    if not value.is_finite():
        value = to_decimal(quantity, "quantity")
    if value.is_signed() and value:  # value < 0 (-0 passes), without a context lookup
        raise OrderValueError("quantity", quantity, "must not be negative")
    grid = rules.market_qty if market else rules.lot
    if grid is None or grid.quantum is None:
        return value
    try:
        if grid.fast:
            return quantize_floor(value, grid.quantum)
        return snap(grid, value, ROUND_FLOOR)
    except DecimalException as exc:
        raise OrderValueError("quantity", quantity, "too large or too precise") from exc


def min_quantity(rules: SymbolRules, price: Number | None, *, market: bool = False) -> Decimal:
    """The smallest quantity that passes minQty, the step grid and the minimum notional at
    ``price``. With ``market=True``: the MARKET grid (LOT_SIZE and MARKET_LOT_SIZE), and only
    the notional minimums that apply to MARKET orders, ``price`` being the reference price.
    ``price=None`` leaves notional out.

    Raises :class:`NoValidOrder` when no quantity passes: that smallest quantity is above
    maxQty, or its notional is above a maximum notional (a minimum notional above the
    maximum at this price), or the symbol defines no positive minimum at all.
    """
    px = None if price is None else to_decimal(price, "price")
    if px is not None and px <= 0:
        raise OrderValueError("price", price, "must be positive")
    grid = rules.market_qty if market else rules.lot
    try:
        return _min_quantity(rules, grid, px, market)
    except DecimalException as exc:
        raise OrderValueError("price", price, "too large or too precise") from exc


def _min_quantity(
    rules: SymbolRules, grid: Grid | None, px: Decimal | None, market: bool
) -> Decimal:
    low = ZERO
    if grid is not None:
        low = grid.minimum
        if grid.quantum is not None:
            low = snap(grid, low, ROUND_CEILING)
            if low <= 0:  # a quantity must be positive: the first step above zero
                low = ceil_ratio(grid, grid.step, ONE) if grid.anchor else grid.step
    if px is not None:
        for rule in rules.notionals:
            if rule.minimum and (not market or rule.apply_min_to_market):
                need = ceil_ratio(grid, rule.minimum, px)
                if need > low:
                    low = need
    if low <= 0:
        raise NoValidOrder(f"{rules.symbol}: no positive minimum quantity is defined")
    maximum = grid.maximum if grid is not None else ZERO
    if maximum and low > maximum:
        at = f" at price {px}" if px is not None else ""
        raise NoValidOrder(
            f"{rules.symbol}: the smallest valid quantity{at}, {low}, is above maxQty {maximum}"
        )
    if px is not None:
        notional = EXACT.multiply(low, px)
        for rule in rules.notionals:
            applies = not market or rule.apply_max_to_market
            if rule.maximum and applies and notional > rule.maximum:
                raise NoValidOrder(
                    f"{rules.symbol}: at price {px} the smallest valid quantity {low} has "
                    f"notional {notional}, above {rule.filter_type} {rule.max_field} "
                    f"{rule.maximum}"
                )
    return low
