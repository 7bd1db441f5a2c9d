"""The plan behind :func:`daemon.rules.check_order`'s fast path: a :class:`CheckPlan` built
once per symbol, with which the common orders are decided by a few comparisons.

The plan is derived from a :class:`SymbolRules`; :mod:`daemon.rules.check` uses it and
decides exactly what the general check decides for the orders it covers (a property test
compares the two on every recorded symbol).
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Final

from daemon.rules.model import CheckPlan, Grid, GridBounds, OrderCheck, SymbolRules, TypePlan

__all__ = ["SLOTS", "build_plan"]

_INFINITY: Final = Decimal("Infinity")
SLOTS: Final = {"LIMIT": 0, "LIMIT_MAKER": 1, "MARKET": 2}
"""Where each order type the fast path covers sits in ``CheckPlan.types``. On both spot and
futures these three mean a plain limit order or a plain market order."""


def build_plan(rules: SymbolRules) -> CheckPlan:
    """The :class:`CheckPlan` of ``rules`` (which is not read from ``rules.plan``)."""
    types: list[TypePlan | None] = [None, None, None]
    allowed = rules.order_types
    if rules.status == "TRADING":
        if "LIMIT" in allowed or "LIMIT_MAKER" in allowed:
            limit = _type_plan(rules, market=False)  # the two differ only on the book
            if "LIMIT" in allowed:
                types[SLOTS["LIMIT"]] = limit
            if "LIMIT_MAKER" in allowed and rules.market == "spot":  # not a futures type
                types[SLOTS["LIMIT_MAKER"]] = limit
        if "MARKET" in allowed:
            types[SLOTS["MARKET"]] = _type_plan(rules, market=True)
    # The tightest multipliers per side, by the rules of percent_bounds (check.py).
    ups: dict[str, list[Decimal]] = {"BUY": [], "SELL": []}
    downs: dict[str, list[Decimal]] = {"BUY": [], "SELL": []}
    pp = rules.percent_price
    if pp is not None:
        if pp.up:
            ups["BUY"].append(pp.up)
            if not pp.by_side_futures:
                ups["SELL"].append(pp.up)
        if pp.down:
            downs["SELL"].append(pp.down)
            if not pp.by_side_futures:
                downs["BUY"].append(pp.down)
    bs = rules.percent_price_by_side
    if bs is not None:
        for side, up, down in (("BUY", bs.bid_up, bs.bid_down), ("SELL", bs.ask_up, bs.ask_down)):
            if up:
                ups[side].append(up)
            if down:
                downs[side].append(down)
    percent = {
        side: (min(ups[side]) if ups[side] else None, max(downs[side]) if downs[side] else None)
        for side in ("BUY", "SELL")
    }
    return CheckPlan(
        percent_buy=percent["BUY"],
        percent_sell=percent["SELL"],
        types=(types[0], types[1], types[2]),
    )


def _bounds(grid: Grid, *, on_price: bool) -> GridBounds:
    anchor = None if grid.fast or not grid.step else grid.anchor
    maximum = grid.maximum or _INFINITY
    return (on_price, grid.minimum, maximum, grid.step or None, anchor, grid)


def _type_plan(rules: SymbolRules, *, market: bool) -> TypePlan:
    grids = [] if market or rules.price is None else [_bounds(rules.price, on_price=True)]
    for grid in (rules.lot, rules.market_lot if market else None):
        if grid is not None:
            grids.append(_bounds(grid, on_price=False))
    qty_floor = any(bounds[1] for bounds in grids if not bounds[0])
    price_floor = market or any(bounds[1] for bounds in grids if bounds[0])
    lows = [
        r.minimum for r in rules.notionals if r.minimum and (not market or r.apply_min_to_market)
    ]
    highs = [
        r.maximum for r in rules.notionals if r.maximum and (not market or r.apply_max_to_market)
    ]
    # The ``unchecked`` tuples, in the order the general check builds them.
    sell = rules.unchecked
    buy = (*sell, "MAX_POSITION") if rules.max_position_filter else sell
    if market:  # without a reference price, no notional to compare with at market
        unknown = _market_notional_names(rules)
    else:  # a limit price but no reference price: percent price unknown
        unknown = ()
        if rules.percent_price is not None:
            unknown = ("PERCENT_PRICE",)
        if rules.percent_price_by_side is not None:
            unknown = (*unknown, "PERCENT_PRICE_BY_SIDE")
    results = (_passed((*buy, *unknown)), _passed(buy), _passed((*sell, *unknown)), _passed(sell))
    return TypePlan(
        market=market,
        grids=tuple(grids),
        positive=qty_floor and price_floor,
        notional_min=max(lows) if lows else None,
        notional_max=min(highs) if highs else None,
        buy=results[0],
        buy_ref=results[1],
        sell=results[2],
        sell_ref=results[3],
    )


@functools.lru_cache(maxsize=256)
def _passed(unchecked: tuple[str, ...]) -> OrderCheck:
    """One shared passing result per ``unchecked`` tuple (immutable, so sharing is safe)."""
    return OrderCheck(True, (), unchecked)


def _market_notional_names(rules: SymbolRules) -> tuple[str, ...]:
    return tuple(
        r.filter_type
        for r in rules.notionals
        if (r.minimum and r.apply_min_to_market) or (r.maximum and r.apply_max_to_market)
    )
