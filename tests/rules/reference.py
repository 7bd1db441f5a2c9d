"""A tiny independent reference for the order checks, written with ``fractions.Fraction``
straight from the upstream filter objects (it shares no code with ``daemon.rules``).

It covers LIMIT and MARKET orders: the filters that decide them and the market flags.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any


def reference_violations(
    filters: dict[str, dict[str, Any]],
    futures: bool,
    side: str,
    market: bool,
    qty: Fraction,
    price: Fraction | None,
    ref: Fraction | None,
) -> set[tuple[str, str]]:
    """``{(filterType, rule)}`` broken by the order, by Binance's documented rules."""
    out: set[tuple[str, str]] = set()

    def grid(name: str, value: Fraction, lo: str, hi: str, step: str) -> None:
        f = filters.get(name)
        if f is None:
            return
        mn, mx, st = Fraction(f[lo]), Fraction(f[hi]), Fraction(f[step])
        if mn and value < mn:
            out.add((name, lo))
        if mx and value > mx:
            out.add((name, hi))
        if st and (value - mn) % st:
            out.add((name, step))

    if price is not None:
        grid("PRICE_FILTER", price, "minPrice", "maxPrice", "tickSize")
    grid("LOT_SIZE", qty, "minQty", "maxQty", "stepSize")
    if market:
        grid("MARKET_LOT_SIZE", qty, "minQty", "maxQty", "stepSize")
    notional = (ref * qty if ref is not None else None) if market else price * qty  # type: ignore[operator]
    if notional is not None:
        f = filters.get("MIN_NOTIONAL")
        if f is not None:
            if futures:
                if Fraction(f["notional"]) and notional < Fraction(f["notional"]):
                    out.add(("MIN_NOTIONAL", "notional"))
            elif (not market or f["applyToMarket"]) and notional < Fraction(f["minNotional"]):
                out.add(("MIN_NOTIONAL", "minNotional"))
        f = filters.get("NOTIONAL")
        if f is not None:
            mn, mx = Fraction(f["minNotional"]), Fraction(f["maxNotional"])
            if (not market or f["applyMinToMarket"]) and mn and notional < mn:
                out.add(("NOTIONAL", "minNotional"))
            if (not market or f["applyMaxToMarket"]) and mx and notional > mx:
                out.add(("NOTIONAL", "maxNotional"))
    if not market and price is not None and ref is not None:
        f = filters.get("PERCENT_PRICE")
        if f is not None:
            up, down = Fraction(f["multiplierUp"]), Fraction(f["multiplierDown"])
            if up and price > ref * up and (not futures or side == "BUY"):
                out.add(("PERCENT_PRICE", "multiplierUp"))
            if down and price < ref * down and (not futures or side == "SELL"):
                out.add(("PERCENT_PRICE", "multiplierDown"))
        f = filters.get("PERCENT_PRICE_BY_SIDE")
        if f is not None:
            prefix = "bid" if side == "BUY" else "ask"
            up = Fraction(f[f"{prefix}MultiplierUp"])
            down = Fraction(f[f"{prefix}MultiplierDown"])
            if up and price > ref * up:
                out.add(("PERCENT_PRICE_BY_SIDE", f"{prefix}MultiplierUp"))
            if down and price < ref * down:
                out.add(("PERCENT_PRICE_BY_SIDE", f"{prefix}MultiplierDown"))
    return out
