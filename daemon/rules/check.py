"""``check_order``: does an order pass a symbol's filters, as Binance documents them?

Rules applied (Binance's spot "Filters" page and the USD-M/COIN-M exchangeInfo docs):

* The symbol's status must be ``TRADING`` and the order type one of its ``orderTypes``.
* PRICE_FILTER on ``price`` and ``stopPrice``: ``min <= p <= max`` and
  ``(p - minPrice) % tickSize == 0``; each part with a 0 bound is disabled.
* LOT_SIZE on ``quantity`` and ``icebergQty``; a MARKET-like order's quantity must also pass
  MARKET_LOT_SIZE (its zero fields disabled like any other: on spot its step is usually 0
  while its maxQty binds).
* Notional (MIN_NOTIONAL, NOTIONAL): ``price * quantity`` for orders with a limit price; for
  MARKET-like orders only the bounds whose ``applyToMarket`` / ``applyMinToMarket`` /
  ``applyMaxToMarket`` say so, against ``reference_price * quantity`` (or ``quoteOrderQty``).
  USD-M MIN_NOTIONAL applies to every order (mark price for MARKET-like ones).
* PERCENT_PRICE / PERCENT_PRICE_BY_SIDE against ``reference_price`` (the average or mark
  price the caller has); futures PERCENT_PRICE bounds a BUY from above and a SELL from below.
* ICEBERG_PARTS: ``ceil(quantity / icebergQty) <= limit``. TRAILING_DELTA: the above/below
  bounds chosen by order type and side.

MARKET-like types are spot MARKET, STOP_LOSS and TAKE_PROFIT, and futures MARKET, STOP_MARKET,
TAKE_PROFIT_MARKET and TRAILING_STOP_MARKET: they execute at market, so Binance applies the
market rules to them. Filters that need state we do not have are named in ``unchecked``.

A LIMIT, LIMIT_MAKER or MARKET order with only a quantity, a price and a reference price is
decided on the plan :func:`daemon.rules.compile_rules` precomputed (:mod:`daemon.rules.fast`):
a passing order gets a prebuilt answer, a failing one has its violations built with the
general path's texts (grid messages written out inline from the same cached texts, notional
and percent-price ones by the same helpers). Every other order takes the general path below.
Both give equal results.
"""

from __future__ import annotations

from decimal import Decimal, DecimalException
from typing import Final

from daemon.rules.decimals import EXACT, ZERO, parse_exact, to_decimal
from daemon.rules.errors import OrderValueError
from daemon.rules.model import CheckPlan, OrderCheck, SymbolRules, TypePlan, Violation
from daemon.rules.violations import (
    _TEXTS,
    _grid,
    _iceberg,
    _invalid,
    _missing,
    _notional,
    _percent,
    _percent_names,
    _trailing,
    grid_texts,
)

__all__ = ["check_order", "order_kind"]

MARKET: Final = 1  # executes at market: MARKET_LOT_SIZE applies, notional at reference price
PRICED: Final = 2  # needs a limit price
STOP: Final = 4  # needs a stopPrice (spot: or a trailingDelta)
ALGO: Final = 8  # counts against MAX_NUM_ALGO_ORDERS

_SPOT_KINDS: Final = {
    "LIMIT": PRICED,
    "LIMIT_MAKER": PRICED,
    "MARKET": MARKET,
    "STOP_LOSS": MARKET | STOP | ALGO,
    "STOP_LOSS_LIMIT": PRICED | STOP | ALGO,
    "TAKE_PROFIT": MARKET | STOP | ALGO,
    "TAKE_PROFIT_LIMIT": PRICED | STOP | ALGO,
}
# Futures reuse some names with another meaning: TAKE_PROFIT has a limit price there.
_FUTURES_KINDS: Final = {
    "LIMIT": PRICED,
    "MARKET": MARKET,
    "STOP": PRICED | STOP | ALGO,
    "TAKE_PROFIT": PRICED | STOP | ALGO,
    "STOP_MARKET": MARKET | STOP | ALGO,
    "TAKE_PROFIT_MARKET": MARKET | STOP | ALGO,
    "TRAILING_STOP_MARKET": MARKET | ALGO,
}
_SIDES: Final = frozenset({"BUY", "SELL"})
_NAN: Final = Decimal("NaN")  # "not read yet": the input goes through to_decimal
_remainder: Final = EXACT.remainder
_subtract: Final = EXACT.subtract
_multiply: Final = EXACT.multiply


def order_kind(rules: SymbolRules, order_type: str, has_price: bool) -> int:
    """Flags (MARKET, PRICED, STOP, ALGO) for ``order_type`` on ``rules``' market. A type we do
    not know is treated as priced when a price is given, else as MARKET-like."""
    table = _SPOT_KINDS if rules.market == "spot" else _FUTURES_KINDS
    kind = table.get(order_type)
    if kind is None:
        return PRICED if has_price else MARKET
    return kind


def check_order(
    rules: SymbolRules,
    side: str,
    order_type: str,
    *,
    quantity: Decimal | str | int | float | None = None,
    quote_quantity: Decimal | str | int | float | None = None,
    price: Decimal | str | int | float | None = None,
    stop_price: Decimal | str | int | float | None = None,
    trailing_delta: int | None = None,
    iceberg_quantity: Decimal | str | int | float | None = None,
    reference_price: Decimal | str | int | float | None = None,
) -> OrderCheck:
    """Check one new order against ``rules``; never raises for a rule that fails.

    ``side`` is ``"BUY"`` or ``"SELL"``; ``order_type`` a Binance order type. Numbers may be
    ``Decimal``, ``str`` or ``int``; a ``float`` is read by its shortest repr
    (``Decimal(repr(x))``). ``quote_quantity`` is spot's ``quoteOrderQty`` for MARKET
    orders. ``reference_price`` is the price Binance compares with (spot: the average price
    over ``avgPriceMins``; futures: the mark price); without it PERCENT_PRICE* and market
    notional checks are reported in ``unchecked`` instead.

    Raises :class:`OrderValueError` only for arguments that are not numbers at all, a side
    other than BUY/SELL or an order type that is not a string (an unknown order type is a
    violation, as Binance reports it), never for a value a filter rejects. Arguments are
    converted in the order quantity, price, reference_price, stop_price, quote_quantity,
    iceberg_quantity, so with several bad numbers the error names the first of them.
    """
    plan = rules.plan
    if (
        plan is not None
        and quantity is not None
        and stop_price is None
        and quote_quantity is None
        and iceberg_quantity is None
        and trailing_delta is None
        and (side == "BUY" or side == "SELL")
    ):
        # fast.SLOTS, as comparisons with the (interned) literals: cheaper than a dict lookup.
        if order_type == "LIMIT":
            entry = plan.types[0]
        elif order_type == "MARKET":
            entry = plan.types[2]
        elif order_type == "LIMIT_MAKER":
            entry = plan.types[1]
        else:
            entry = None
        if entry is not None and (price is None) is entry.market:
            # to_decimal's common cases inlined (the hot path: one call less per number);
            # anything else, and every error, goes through it, in the documented order.
            kind = type(quantity)
            if kind is str:
                try:
                    qty = parse_exact(quantity)
                except DecimalException:
                    qty = _NAN
            else:
                qty = quantity if kind is Decimal else _NAN  # type: ignore[assignment]
            if not qty.is_finite():
                qty = to_decimal(quantity, "quantity")
            px: Decimal | None = None
            if price is not None:
                kind = type(price)
                if kind is str:
                    try:
                        px = parse_exact(price)
                    except DecimalException:
                        px = _NAN
                else:
                    px = price if kind is Decimal else _NAN  # type: ignore[assignment]
                if not px.is_finite():  # type: ignore[union-attr]
                    px = to_decimal(price, "price")
            ref = (
                None if reference_price is None else to_decimal(reference_price, "reference_price")
            )
            try:
                planned = _planned(rules, plan, entry, side, qty, px, ref)
            except DecimalException:
                planned = None  # a value too large to compute with: reported below
            if planned is not None:
                return planned
            return _check(rules, side, order_type, qty, px, ref, None, None, None, None)
    # A side or order type of the wrong type is a caller's bug: say so, before any number.
    if not isinstance(side, str) or side not in _SIDES:
        raise OrderValueError("side", side, "expected BUY or SELL")
    if not isinstance(order_type, str):
        raise OrderValueError("order_type", order_type, "expected a Binance order type, e.g. LIMIT")
    return _check(
        rules,
        side,
        order_type,
        None if quantity is None else to_decimal(quantity, "quantity"),
        None if price is None else to_decimal(price, "price"),
        None if reference_price is None else to_decimal(reference_price, "reference_price"),
        None if stop_price is None else to_decimal(stop_price, "stop_price"),
        None if quote_quantity is None else to_decimal(quote_quantity, "quote_quantity"),
        None if iceberg_quantity is None else to_decimal(iceberg_quantity, "iceberg_quantity"),
        trailing_delta,
    )


def _planned(
    rules: SymbolRules,
    plan: CheckPlan,
    entry: TypePlan,
    side: str,
    qty: Decimal,
    px: Decimal | None,
    ref: Decimal | None,
) -> OrderCheck | None:
    """:func:`_check`'s result for an order the plan covers, or ``None`` for one it leaves
    to :func:`_check` (a value that is not positive).

    The plan covers only an allowed LIMIT, LIMIT_MAKER or MARKET order on a TRADING symbol,
    with a quantity, a price unless MARKET, and nothing else: the status, order type, stop,
    quote and iceberg checks cannot fail, and ``unchecked`` is the one the passing result for
    this side carries. Each rule is decided once with the plan's bounds; only what fails
    builds violations, in :func:`_check`'s order: a grid's inline (the text half of
    :func:`daemon.rules.violations._grid`), the others by the general helpers.
    """
    if ref is not None and ref <= ZERO:
        return None
    if not entry.positive and (qty <= ZERO or (px is not None and px <= ZERO)):
        return None
    out: list[Violation] | None = None
    # The grid tests are written out (no helper call): this is the hot path of the library.
    # The plan lists the grids in the general check's order (price, lot, market lot), so a
    # failing grid's violations can be appended as soon as it is decided.
    for on_price, low, high, step, anchor, grid in entry.grids:
        value: Decimal = px if on_price else qty  # type: ignore[assignment]  # price: not None
        off = step is not None and _remainder(
            value if anchor is None else _subtract(value, anchor), step
        )
        below = value < low  # a disabled bound is 0 or Infinity: no positive value fails it
        above = value > high
        if not (off or below or above):
            continue
        if below and value <= ZERO:
            # Not positive: for the general check. With ``entry.positive`` every value has a
            # grid with a positive minimum, so this is where such a value is caught.
            return None
        if out is None:
            out = []
        # The text half of violations._grid, inlined (a typical rejected order fails two
        # grids; a call per grid was measurable). ``low``, ``high`` and ``step`` are the
        # grid's own values whenever they can fail.
        try:  # a dict subscript is cheaper than .get()
            texts = _TEXTS[id(grid)]
        except KeyError:
            texts = grid_texts(grid)
        if texts[0] is not grid:  # texts of a grid that had this id before
            texts = grid_texts(grid)
        _, head, min_rule, max_rule, step_rule, low_text, high_text, off_text = texts
        ftype = grid.filter_type
        field = "price" if on_price else "quantity"
        text = str(value)  # plain(value), inlined
        if "E" in text:
            text = format(value, "f")
        if below:
            message = f"{head}{field} {text}{low_text}"
            out.append(Violation(ftype, field, value, min_rule, low, message))
        if above:
            message = f"{head}{field} {text}{high_text}"
            out.append(Violation(ftype, field, value, max_rule, high, message))
        if off:
            message = f"{head}{field} {text}{off_text}"
            out.append(Violation(ftype, field, value, step_rule, step, message))
    least, most = entry.notional_min, entry.notional_max
    base = ref if px is None else px
    if (least is not None or most is not None) and base is not None:
        notional = _multiply(base, qty)
        if (least is not None and notional < least) or (most is not None and notional > most):
            if out is None:
                out = []
            _notional(rules, entry.market, qty, px, None, ref, out, ())
    if px is not None and ref is not None:
        up, down = plan.percent_buy if side == "BUY" else plan.percent_sell
        if (up is not None and px > _multiply(ref, up)) or (
            down is not None and px < _multiply(ref, down)
        ):
            if out is None:
                out = []
            _percent(rules, side, px, ref, out)
    if side == "BUY":
        passed = entry.buy if ref is None else entry.buy_ref
    else:
        passed = entry.sell if ref is None else entry.sell_ref
    if out:
        return OrderCheck(False, tuple(out), passed.unchecked)
    return passed


def _check(
    rules: SymbolRules,
    side: str,
    order_type: str,
    qty: Decimal | None,
    px: Decimal | None,
    ref: Decimal | None,
    stop: Decimal | None,
    quote: Decimal | None,
    ice: Decimal | None,
    delta: int | None,
) -> OrderCheck:
    """The general check, on arguments already converted (``side`` already validated)."""
    out: list[Violation] = []
    unchecked = rules.unchecked
    kind = order_kind(rules, order_type, px is not None)
    is_market = kind & MARKET
    if rules.status != "TRADING":
        out.append(
            Violation(
                "STATUS",
                "status",
                rules.status,
                "status",
                "TRADING",
                f"Market is closed. ({rules.symbol} status is {rules.status}, not TRADING)",
            )
        )
    if order_type not in rules.order_types:
        out.append(
            Violation(
                "ORDER_TYPE",
                "type",
                order_type,
                "orderTypes",
                ",".join(sorted(rules.order_types)),
                f"Unsupported order combination. ({order_type} is not in {rules.symbol}'s "
                "orderTypes)",
            )
        )
    if kind & ALGO and rules.max_num_algo_filter:
        unchecked = (*unchecked, "MAX_NUM_ALGO_ORDERS")
    if side == "BUY" and rules.max_position_filter:
        unchecked = (*unchecked, "MAX_POSITION")
    grid = rules.price
    try:
        # Parameters: what the order type needs, and values that are positive at all.
        if px is None:
            if kind & PRICED:
                out.append(_missing("price"))
        elif px <= ZERO:
            out.append(_invalid("price", px, "Invalid price."))
            px = None
        elif grid is not None:
            _grid(grid, px, "price", out)
        if stop is not None:
            if stop <= ZERO:
                out.append(_invalid("stopPrice", stop, "Invalid stopPrice."))
            elif grid is not None:
                _grid(grid, stop, "stopPrice", out)
        elif kind & STOP and not (delta is not None and rules.market == "spot"):
            out.append(_missing("stopPrice"))
        if quote is not None and quote <= ZERO:
            out.append(_invalid("quoteOrderQty", quote, "Invalid quoteOrderQty."))
            quote = None
        if qty is None:
            if quote is None or not is_market:
                out.append(_missing("quantity"))
        elif qty <= ZERO:
            out.append(_invalid("quantity", qty, "Invalid quantity."))
            qty = None
        else:
            if rules.lot is not None:
                _grid(rules.lot, qty, "quantity", out)
            if is_market and rules.market_lot is not None:
                _grid(rules.market_lot, qty, "quantity", out)
        if ice is not None:
            if rules.max_num_iceberg_filter:
                unchecked = (*unchecked, "MAX_NUM_ICEBERG_ORDERS")
            _iceberg(rules, qty, ice, out)
        if rules.notionals:
            unchecked = _notional(rules, is_market, qty, px, quote, ref, out, unchecked)
        if px is not None and (rules.percent_price or rules.percent_price_by_side):
            if ref is None:
                unchecked = (*unchecked, *_percent_names(rules))
            else:
                _percent(rules, side, px, ref, out)
        if delta is not None and rules.trailing_delta is not None:
            _trailing(rules, side, order_type, delta, out)
    except DecimalException as exc:
        raise OrderValueError(
            "order", None, f"a value is too large or too precise ({exc!r})"
        ) from exc
    return OrderCheck(not out, tuple(out), unchecked)
