"""``fix_order``: the nearest order that passes ``check_order``, or why there is none."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, DecimalException
from typing import Any

from daemon.rules.check import MARKET, PRICED, check_order, order_kind
from daemon.rules.decimals import EXACT, Number, ceil_ratio, floor_ratio, snap, to_decimal
from daemon.rules.errors import NoValidOrder, OrderValueError
from daemon.rules.model import FixedOrder, Grid, SymbolRules
from daemon.rules.rounding import min_quantity
from daemon.rules.violations import percent_bounds, trailing_bounds

__all__ = ["fix_order"]


def fix_order(
    rules: SymbolRules,
    side: str,
    order_type: str,
    *,
    quantity: Number | None = None,
    quote_quantity: Number | None = None,
    price: Number | None = None,
    stop_price: Number | None = None,
    trailing_delta: int | None = None,
    iceberg_quantity: Number | None = None,
    reference_price: Number | None = None,
) -> FixedOrder:
    """The valid order nearest to the one described (same arguments as ``check_order``).

    * ``price`` goes onto the tick grid the side-aware way (BUY down, SELL up, see
      :func:`round_price`), then into ``[minPrice, maxPrice]`` and, with a
      ``reference_price``, into the PERCENT_PRICE* band (rounded inward).
    * ``stop_price`` goes to the nearest tick inside ``[minPrice, maxPrice]``.
    * ``quantity`` rounds toward zero onto its grid and is cut to maxQty and to the maximum
      notional; if that leaves it below :func:`min_quantity` at the order's price (reference
      price for MARKET-like orders) it is raised to that minimum: the nearest valid quantity.
    * ``iceberg_quantity`` rounds down, then up as far as ICEBERG_PARTS needs.
    * ``trailing_delta`` is clamped into its TRAILING_DELTA bounds; ``quote_quantity`` into
      the notional bounds that apply to MARKET orders.

    ``FixedOrder.changed`` names the parameters that moved. Raises :class:`NoValidOrder` with
    the reason when no valid order exists (symbol not TRADING, order type not allowed, an
    empty price band, a minimum notional above the maximum...).
    """
    if rules.status != "TRADING":
        raise NoValidOrder(f"{rules.symbol} is {rules.status}, not TRADING: no order is valid")
    if order_type not in rules.order_types:
        raise NoValidOrder(f"{order_type} is not among {rules.symbol}'s order types")
    if side not in ("BUY", "SELL"):
        raise OrderValueError("side", side, "expected BUY or SELL")
    changed: list[str] = []
    kind = order_kind(rules, order_type, price is not None)
    is_market = bool(kind & MARKET)
    try:
        ref = None if reference_price is None else to_decimal(reference_price, "reference_price")
        px = None
        if price is not None:
            asked = to_decimal(price, "price")
            px = _fix_price(rules, side, asked, ref)
            if px != asked:
                changed.append("price")
        stop = None
        if stop_price is not None:
            asked = to_decimal(stop_price, "stop_price")
            stop = _clamp_to_grid(rules.price, asked, ROUND_HALF_UP, "stopPrice")
            if stop != asked:
                changed.append("stopPrice")
        qty = None
        if quantity is not None:
            asked = to_decimal(quantity, "quantity")
            qty = _fix_quantity(rules, asked, px if kind & PRICED else ref, is_market)
            if qty != asked:
                changed.append("quantity")
        quote = None
        if quote_quantity is not None:
            asked = to_decimal(quote_quantity, "quote_quantity")
            quote = _fix_quote(rules, asked)
            if quote != asked:
                changed.append("quoteOrderQty")
        ice = None
        if iceberg_quantity is not None:
            asked = to_decimal(iceberg_quantity, "iceberg_quantity")
            ice = _fix_iceberg(rules, asked, qty)
            if ice != asked:
                changed.append("icebergQty")
    except DecimalException as exc:
        raise OrderValueError("order", None, "a value is too large or too precise") from exc
    delta = trailing_delta
    if delta is not None:
        _, low, high = trailing_bounds(rules, side, order_type)
        fixed = max(delta, low) if low else delta
        fixed = min(fixed, high) if high else fixed
        if fixed != delta:
            changed.append("trailingDelta")
        delta = fixed
    # The fixed parameters, named as both check_order and FixedOrder name them.
    order: dict[str, Any] = {
        "quantity": qty,
        "quote_quantity": quote,
        "price": px,
        "stop_price": stop,
        "trailing_delta": delta,
        "iceberg_quantity": ice,
    }
    result = check_order(rules, side, order_type, reference_price=ref, **order)
    if not result.ok:
        reasons = "; ".join(v.message for v in result.violations)
        raise NoValidOrder(f"{rules.symbol}: no valid order found: {reasons}", result.violations)
    return FixedOrder(
        side=side,
        order_type=order_type,
        changed=tuple(changed),
        unchecked=result.unchecked,
        **order,
    )


def _clamp_to_grid(grid: Grid | None, value: Decimal, rounding: str, field: str) -> Decimal:
    """``value`` on ``grid`` and inside its bounds (the bounds rounded inward)."""
    if grid is None:
        return value
    low, high = _grid_bounds(grid, field)
    fixed = snap(grid, value, rounding) if grid.quantum is not None else value
    if low is not None and fixed < low:
        fixed = low
    if high is not None and fixed > high:
        fixed = high
    return fixed


def _grid_bounds(grid: Grid, field: str) -> tuple[Decimal | None, Decimal | None]:
    low = snap(grid, grid.minimum, ROUND_CEILING) if grid.minimum else None
    high = snap(grid, grid.maximum, ROUND_FLOOR) if grid.maximum else None
    if low is not None and high is not None and low > high:
        raise NoValidOrder(
            f"no {field} on the {grid.filter_type} grid between {grid.minimum} and {grid.maximum}"
        )
    return low, high


def _fix_price(rules: SymbolRules, side: str, asked: Decimal, ref: Decimal | None) -> Decimal:
    grid = rules.price
    rounding = ROUND_FLOOR if side == "BUY" else ROUND_CEILING
    low: Decimal | None = None
    high: Decimal | None = None
    if grid is not None:
        low, high = _grid_bounds(grid, "price")
    if ref is not None:
        for _ftype, which, bound, _rule, _mult in percent_bounds(rules, side, ref):
            if which == "max":
                edge = snap(grid, bound, ROUND_FLOOR) if grid and grid.quantum else bound
                high = edge if high is None else min(high, edge)
            else:
                edge = snap(grid, bound, ROUND_CEILING) if grid and grid.quantum else bound
                low = edge if low is None else max(low, edge)
    if low is not None and high is not None and low > high:
        raise NoValidOrder(
            f"{rules.symbol}: no {side} price on the tick grid between {low} and {high} "
            "(price filter and percent-price band)"
        )
    fixed = snap(grid, asked, rounding) if grid is not None else asked
    if low is not None and fixed < low:
        fixed = low
    if high is not None and fixed > high:
        fixed = high
    if fixed <= 0:
        raise NoValidOrder(f"{rules.symbol}: no positive price near {asked}")
    return fixed


def _fix_quantity(rules: SymbolRules, asked: Decimal, px: Decimal | None, market: bool) -> Decimal:
    grid = rules.market_qty if market else rules.lot
    qty = snap(grid, asked, ROUND_FLOOR) if grid is not None else asked
    if grid is not None and grid.maximum and qty > grid.maximum:
        qty = snap(grid, grid.maximum, ROUND_FLOOR)
    if px is not None:
        for rule in rules.notionals:
            applies = rule.maximum and (not market or rule.apply_max_to_market)
            if applies and EXACT.multiply(qty, px) > rule.maximum:
                qty = floor_ratio(grid, rule.maximum, px)
    least = min_quantity(rules, px, market=market)  # raises NoValidOrder when none exists
    return max(qty, least)


def _fix_quote(rules: SymbolRules, asked: Decimal) -> Decimal:
    fixed = asked
    for rule in rules.notionals:
        if rule.minimum and rule.apply_min_to_market and fixed < rule.minimum:
            fixed = rule.minimum
        if rule.maximum and rule.apply_max_to_market and fixed > rule.maximum:
            fixed = rule.maximum
    return fixed


def _fix_iceberg(rules: SymbolRules, asked: Decimal, qty: Decimal | None) -> Decimal:
    grid = rules.lot
    ice = snap(grid, asked, ROUND_FLOOR) if grid is not None else asked
    if grid is not None and grid.minimum and ice < grid.minimum:
        ice = snap(grid, grid.minimum, ROUND_CEILING)
    limit = rules.iceberg_parts
    if limit and qty is not None:
        # ceil(qty / ice) <= limit  <=>  ice >= qty / limit
        need = ceil_ratio(grid, qty, Decimal(limit))
        if need > ice:
            ice = need
    return ice
