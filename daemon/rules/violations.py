"""The violations a failed check reports, one builder per filter family, shared by the planned
path and the general check in :mod:`daemon.rules.check`.

Each builder appends to ``out`` what the order breaks, with a message that starts the way
Binance's own error does (``Filter failure: LOT_SIZE (...)``); nothing here decides which
filters apply to an order. Message texts that depend on a grid alone are built once per grid.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from daemon.rules.decimals import EXACT, ZERO, plain
from daemon.rules.errors import OrderValueError
from daemon.rules.model import Grid, SymbolRules, Violation

# Spot trailing stops: these use the "above" bounds of TRAILING_DELTA, the rest "below".
_TRAILING_ABOVE: Final = frozenset(
    {
        ("STOP_LOSS", "BUY"),
        ("STOP_LOSS_LIMIT", "BUY"),
        ("TAKE_PROFIT", "SELL"),
        ("TAKE_PROFIT_LIMIT", "SELL"),
    }
)
_remainder: Final = EXACT.remainder
_subtract: Final = EXACT.subtract
_MANDATORY: Final = "Mandatory parameter '{}' was not sent, was empty/null, or malformed."


def _iceberg(rules: SymbolRules, qty: Decimal | None, ice: Decimal, out: list[Violation]) -> None:
    if ice <= ZERO:
        out.append(_invalid("icebergQty", ice, "Invalid icebergQty."))
        return
    if rules.lot is not None:
        _grid(rules.lot, ice, "icebergQty", out)
    limit = rules.iceberg_parts
    if limit and qty is not None:
        parts, rest = EXACT.divmod(qty, ice)
        if rest:
            parts = EXACT.add(parts, 1)
        if parts > limit:
            out.append(
                _fail(
                    "ICEBERG_PARTS",
                    "icebergQty",
                    ice,
                    "limit",
                    limit,
                    f"order splits into {parts} parts, more than {limit}",
                )
            )


def _fail(
    filter_type: str,
    field: str,
    value: Decimal | int,
    rule: str,
    bound: Decimal | int,
    detail: str,
) -> Violation:
    return Violation(
        filter_type, field, value, rule, bound, f"Filter failure: {filter_type} ({detail})"
    )


def _missing(field: str) -> Violation:
    return Violation("PARAMETER", field, None, "mandatory", None, _MANDATORY.format(field))


def _invalid(field: str, value: Decimal, message: str) -> Violation:
    return Violation(
        "PARAMETER",
        field,
        value,
        "positive",
        "0",
        f"{message} ({field} {plain(value)} is not > 0)",
    )


_GridTexts = tuple[Grid, str, str, str, str, str, str, str]
"""The parts of a grid's violation messages that depend on the grid alone, after the grid
they were made from: head (``"Filter failure: LOT_SIZE ("``), the rule names of the minimum,
maximum and step, and the ends of the three messages (``" < minQty 0.00100000)"``, the same
with ``>``, ``" is not 0.00100000 plus a multiple of stepSize 0.00100000)"``). A plain tuple,
read by unpacking: CPython's fast paths for that take exact tuples only."""


# Texts of each grid seen failing, by identity: equal grids may be written differently
# (``1.00`` and ``1.00000000`` compare equal), so a cache keyed by value would mix up their
# texts. Each entry holds its grid, so an id cannot be reused while it is cached; the dict is
# emptied when full (grids are shared between symbols: a payload has a few hundred).
_TEXTS: Final[dict[int, _GridTexts]] = {}
_TEXTS_MAX: Final = 4096


def grid_texts(grid: Grid) -> _GridTexts:
    """``grid``'s message texts, built once per grid (see ``_TEXTS``)."""
    found = _TEXTS.get(id(grid))
    if found is not None and found[0] is grid:
        return found
    if grid.filter_type == "PRICE_FILTER":
        rules = ("minPrice", "maxPrice", "tickSize")
    else:
        rules = ("minQty", "maxQty", "stepSize")
    texts = (
        grid,
        f"Filter failure: {grid.filter_type} (",
        *rules,
        f" < {rules[0]} {plain(grid.minimum)})",
        f" > {rules[1]} {plain(grid.maximum)})",
        f" is not {plain(grid.anchor)} plus a multiple of {rules[2]} {plain(grid.step)})",
    )
    if len(_TEXTS) >= _TEXTS_MAX:
        _TEXTS.clear()
    _TEXTS[id(grid)] = texts
    return texts


def _grid(grid: Grid, value: Decimal, field: str, out: list[Violation]) -> None:
    # Each part is decided by one comparison before any text is built. The planned check in
    # check.py repeats this body inline (its hot path); keep the two in step.
    minimum = grid.minimum
    low = minimum and value < minimum
    maximum = grid.maximum
    high = maximum and value > maximum
    step = grid.step
    if step:
        if grid.fast:  # the anchor is on the grid through zero
            off = _remainder(value, step)
        else:
            off = _remainder(_subtract(value, grid.anchor), step)
        if not (low or high or off):
            return
    elif not (low or high):
        return
    else:
        off = ZERO
    texts = _TEXTS.get(id(grid))
    if texts is None or texts[0] is not grid:
        texts = grid_texts(grid)
    _, head, min_rule, max_rule, step_rule, low_text, high_text, off_text = texts
    ftype = grid.filter_type
    text = str(value)  # plain(value), inlined
    if "E" in text:
        text = format(value, "f")
    if low:
        message = f"{head}{field} {text}{low_text}"
        out.append(Violation(ftype, field, value, min_rule, minimum, message))
    if high:
        message = f"{head}{field} {text}{high_text}"
        out.append(Violation(ftype, field, value, max_rule, maximum, message))
    if off:
        message = f"{head}{field} {text}{off_text}"
        out.append(Violation(ftype, field, value, step_rule, step, message))


def _notional(
    rules: SymbolRules,
    is_market: int,
    qty: Decimal | None,
    px: Decimal | None,
    quote: Decimal | None,
    ref: Decimal | None,
    out: list[Violation],
    unchecked: tuple[str, ...],
) -> tuple[str, ...]:
    if is_market:
        if quote is not None:
            notional = quote
        elif qty is not None and ref is not None:
            notional = EXACT.multiply(ref, qty)
        else:
            notional = None
    elif qty is not None and px is not None:
        notional = EXACT.multiply(px, qty)
    else:
        return unchecked  # a missing price or quantity is already reported
    field = "quoteOrderQty" if is_market and quote is not None else "notional"
    for rule in rules.notionals:
        use_min = bool(rule.minimum) and (not is_market or rule.apply_min_to_market)
        use_max = bool(rule.maximum) and (not is_market or rule.apply_max_to_market)
        if not (use_min or use_max):
            continue
        if notional is None:
            if qty is not None:  # no quantity at all is already reported as missing
                unchecked = (*unchecked, rule.filter_type)
            continue
        if use_min and notional < rule.minimum:
            out.append(
                _fail(
                    rule.filter_type,
                    field,
                    notional,
                    rule.min_field,
                    rule.minimum,
                    f"{field} {plain(notional)} < {rule.min_field} {plain(rule.minimum)}",
                )
            )
        if use_max and notional > rule.maximum:
            out.append(
                _fail(
                    rule.filter_type,
                    field,
                    notional,
                    rule.max_field,
                    rule.maximum,
                    f"{field} {plain(notional)} > {rule.max_field} {plain(rule.maximum)}",
                )
            )
    return unchecked


def _percent_names(rules: SymbolRules) -> tuple[str, ...]:
    names: tuple[str, ...] = ()
    if rules.percent_price is not None:
        names = ("PERCENT_PRICE",)
    if rules.percent_price_by_side is not None:
        names = (*names, "PERCENT_PRICE_BY_SIDE")
    return names


def percent_bounds(
    rules: SymbolRules, side: str, ref: Decimal
) -> list[tuple[str, str, Decimal, str, Decimal]]:
    """The percent-price bounds for ``side`` at reference price ``ref``, as
    ``(filter_type, "min" | "max", bound, rule_name, multiplier)``; 0 multipliers skipped."""
    found: list[tuple[str, str, Decimal, str, Decimal]] = []
    pp = rules.percent_price
    if pp is not None:
        if pp.up and (not pp.by_side_futures or side == "BUY"):
            found.append(
                ("PERCENT_PRICE", "max", EXACT.multiply(ref, pp.up), "multiplierUp", pp.up)
            )
        if pp.down and (not pp.by_side_futures or side == "SELL"):
            found.append(
                ("PERCENT_PRICE", "min", EXACT.multiply(ref, pp.down), "multiplierDown", pp.down)
            )
    bs = rules.percent_price_by_side
    if bs is not None:
        if side == "BUY":
            up, down, up_name, down_name = (
                bs.bid_up,
                bs.bid_down,
                "bidMultiplierUp",
                "bidMultiplierDown",
            )
        else:
            up, down, up_name, down_name = (
                bs.ask_up,
                bs.ask_down,
                "askMultiplierUp",
                "askMultiplierDown",
            )
        if up:
            found.append(("PERCENT_PRICE_BY_SIDE", "max", EXACT.multiply(ref, up), up_name, up))
        if down:
            found.append(
                ("PERCENT_PRICE_BY_SIDE", "min", EXACT.multiply(ref, down), down_name, down)
            )
    return found


def _percent(
    rules: SymbolRules, side: str, px: Decimal, ref: Decimal, out: list[Violation]
) -> None:
    for ftype, which, bound, rule, _mult in percent_bounds(rules, side, ref):
        if (px > bound) if which == "max" else (px < bound):
            sign = ">" if which == "max" else "<"
            out.append(
                _fail(
                    ftype,
                    "price",
                    px,
                    rule,
                    bound,
                    f"price {plain(px)} {sign} reference {plain(ref)} * {rule} = {plain(bound)}",
                )
            )


def trailing_bounds(rules: SymbolRules, side: str, order_type: str) -> tuple[str, int, int]:
    """``(direction, min, max)`` of TRAILING_DELTA for this order type and side (0 = off)."""
    td = rules.trailing_delta
    if td is None:
        return ("", 0, 0)
    if (order_type, side) in _TRAILING_ABOVE:
        return ("Above", td.min_above, td.max_above)
    return ("Below", td.min_below, td.max_below)


def _trailing(
    rules: SymbolRules, side: str, order_type: str, delta: int, out: list[Violation]
) -> None:
    if type(delta) is not int:
        raise OrderValueError("trailing_delta", delta, "expected an int (basis points)")
    direction, low, high = trailing_bounds(rules, side, order_type)
    for bound, name, sign, broken in (
        (low, "min", "<", bool(low) and delta < low),
        (high, "max", ">", bool(high) and delta > high),
    ):
        if broken:
            rule = f"{name}Trailing{direction}Delta"
            text = f"trailingDelta {delta} {sign} {rule} {bound}"
            out.append(_fail("TRAILING_DELTA", "trailingDelta", delta, rule, bound, text))
