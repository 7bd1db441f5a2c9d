"""The compiled, immutable values of :mod:`daemon.rules`.

Every type here is a frozen ``msgspec.Struct`` without GC tracking: cheap to build, cheap to
hold in a cache by the thousand, hashable-free of surprises (no field can be reassigned), and
comparable with ``==``. Numbers are ``decimal.Decimal`` (exact) or ``int``; never ``float``.

A bound of ``Decimal(0)`` means "disabled", exactly as in Binance's documentation.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

__all__ = [
    "CheckPlan",
    "FixedOrder",
    "Grid",
    "Market",
    "NotionalRule",
    "OrderCheck",
    "PercentPrice",
    "PercentPriceBySide",
    "SymbolRules",
    "TrailingDelta",
    "TypePlan",
    "Violation",
]

Market = Literal["spot", "usdm", "coinm"]


class Grid(msgspec.Struct, frozen=True, gc=False):
    """A price or quantity rule: ``minimum <= x <= maximum`` and ``(x - anchor) % step == 0``.

    ``minimum``, ``maximum`` and ``step`` are the filter's values (``0`` disables that part).
    ``anchor`` is where the step grid starts (the filter's minimum). ``quantum`` is the
    exponent rounded values are given (``Decimal("1E-3")`` for a step of ``0.00100000``), so
    ``str()`` of a rounded value never uses exponent notation; ``None`` when ``step`` is 0.
    ``fast`` is true when the step is a power of ten no coarser than 1 and the anchor lies on
    the grid through zero: rounding is then a single ``quantize``.
    """

    filter_type: str
    minimum: Decimal
    maximum: Decimal
    step: Decimal
    anchor: Decimal
    quantum: Decimal | None
    fast: bool


class PercentPrice(msgspec.Struct, frozen=True, gc=False):
    """Spot ``PERCENT_PRICE`` (both bounds for either side) or, with ``by_side_futures``, the
    futures ``PERCENT_PRICE``: a BUY price must be ``<= ref * up``, a SELL price
    ``>= ref * down``. ``multiplier_decimal`` is the futures field (``None`` on spot)."""

    up: Decimal
    down: Decimal
    avg_price_mins: int | None
    multiplier_decimal: int | None
    by_side_futures: bool


class PercentPriceBySide(msgspec.Struct, frozen=True, gc=False):
    """Spot ``PERCENT_PRICE_BY_SIDE``: bid multipliers bound BUY prices, ask ones SELL prices."""

    bid_up: Decimal
    bid_down: Decimal
    ask_up: Decimal
    ask_down: Decimal
    avg_price_mins: int | None


class NotionalRule(msgspec.Struct, frozen=True, gc=False):
    """One notional (``price * quantity``) rule.

    Built from spot ``MIN_NOTIONAL`` (``minNotional``, ``applyToMarket``), spot ``NOTIONAL``
    (min and max, each with its own apply-to-market flag) and USD-M ``MIN_NOTIONAL``
    (``notional``; the futures docs apply it to MARKET orders at the mark price, so both flags
    are true). ``min_field``/``max_field`` are the upstream names used in messages.
    """

    filter_type: str
    minimum: Decimal
    maximum: Decimal
    apply_min_to_market: bool
    apply_max_to_market: bool
    min_field: str
    max_field: str


class TrailingDelta(msgspec.Struct, frozen=True, gc=False):
    """Spot ``TRAILING_DELTA`` bounds, in basis points (integers)."""

    min_above: int
    max_above: int
    min_below: int
    max_below: int


class SymbolRules(msgspec.Struct, frozen=True, gc=False):
    """A symbol's filters, compiled once into exact values; immutable and cheap to cache.

    Build one with :func:`daemon.rules.compile_rules` or :func:`daemon.rules.rules_for`.
    ``unchecked`` lists filters no order check can decide from exchangeInfo alone (account
    state such as ``MAX_NUM_ORDERS``, and filter types this library does not know); the
    ``*_filter`` flags say which conditional ones exist.
    """

    symbol: str
    market: Market
    status: str
    order_types: frozenset[str]
    contract_size: Decimal | None
    price: Grid | None
    lot: Grid | None
    market_lot: Grid | None
    market_qty: Grid | None
    """The quantity grid MARKET-like orders round to: LOT_SIZE and MARKET_LOT_SIZE merged."""
    percent_price: PercentPrice | None
    percent_price_by_side: PercentPriceBySide | None
    notionals: tuple[NotionalRule, ...]
    iceberg_parts: int | None
    trailing_delta: TrailingDelta | None
    unchecked: tuple[str, ...]
    max_num_algo_filter: bool
    max_num_iceberg_filter: bool
    max_position_filter: bool
    plan: CheckPlan | None = None
    """What :func:`daemon.rules.compile_rules` precomputed for the common orders (see
    :class:`CheckPlan`); derived from the fields above. ``None`` on rules built by hand: every
    check then takes the general path, with the same results."""

    @property
    def trading(self) -> bool:
        """True when the symbol's status is ``TRADING`` (the only status that takes orders)."""
        return self.status == "TRADING"


class Violation(msgspec.Struct, frozen=True, gc=False):
    """One broken rule.

    ``filter_type`` is Binance's ``filterType`` (or ``STATUS``, ``ORDER_TYPE``, ``PARAMETER``
    for the checks that are not filters); ``field`` is the order parameter as Binance names it
    (``quantity``, ``price``, ``stopPrice``, ``icebergQty``, ``trailingDelta``,
    ``quoteOrderQty``, or ``notional`` for ``price * quantity``); ``value`` the offending
    value; ``rule`` the filter field that bounds it (``minQty``, ``tickSize``...) and
    ``bound`` its value. ``message`` starts the way Binance's own error does
    (``Filter failure: LOT_SIZE``) and then explains.
    """

    filter_type: str
    field: str
    value: Decimal | int | str | None
    rule: str
    bound: Decimal | int | str | None
    message: str


class OrderCheck(msgspec.Struct, frozen=True, gc=False):
    """Result of :func:`daemon.rules.check_order`.

    ``ok`` is true exactly when ``violations`` is empty. ``unchecked`` names the filters that
    apply to this order but could not be decided (account state, a missing
    ``reference_price``, or a filter type unknown to this library): ``ok`` with a non-empty
    ``unchecked`` means "passes everything we could check".
    """

    ok: bool
    violations: tuple[Violation, ...]
    unchecked: tuple[str, ...]


class FixedOrder(msgspec.Struct, frozen=True, gc=False):
    """Result of :func:`daemon.rules.fix_order`: an order that passes
    :func:`daemon.rules.check_order`, and ``changed``, the parameters that were adjusted."""

    side: str
    order_type: str
    quantity: Decimal | None
    quote_quantity: Decimal | None
    price: Decimal | None
    stop_price: Decimal | None
    trailing_delta: int | None
    iceberg_quantity: Decimal | None
    changed: tuple[str, ...]
    unchecked: tuple[str, ...]


GridBounds = tuple[bool, Decimal, Decimal, Decimal | None, Decimal | None, Grid]
"""``(on_price, minimum, maximum, step, anchor, grid)`` of one grid for the planned check:
``on_price`` says whether the grid bounds the price (PRICE_FILTER) or the quantity.
``minimum`` is the grid's (``0`` when disabled: the planned values are positive) and
``maximum`` is ``Decimal("Infinity")`` when disabled, so that one chained comparison tests
both; ``step`` is ``None`` when disabled, and ``anchor`` is ``None`` when the step grid passes
through zero. ``grid`` is the :class:`Grid` itself, which a failing order's violations are
built from."""


class TypePlan(msgspec.Struct, frozen=True, gc=False):
    """The planned check of one order type (LIMIT, LIMIT_MAKER or MARKET) on one symbol.

    ``market`` is true for MARKET (no limit price; market rules apply). ``grids`` lists the
    grids the order must meet, in the order the general check reports them: PRICE_FILTER
    (not for MARKET), LOT_SIZE, and MARKET_LOT_SIZE for MARKET. ``positive`` is true when
    each value the type takes (price, quantity) has a grid with a positive minimum, so that
    an order that passes the grids has positive values. ``notional_min`` and
    ``notional_max`` are the tightest notional bounds that apply to this type (the largest
    minimum, the smallest maximum), ``None`` when none does. The four results are the
    :class:`OrderCheck` returned when every rule passes, by side and by whether a reference
    price was given (their ``unchecked`` tuples differ, and a failing order carries the same
    one).
    """

    market: bool
    grids: tuple[GridBounds, ...]
    positive: bool
    notional_min: Decimal | None
    notional_max: Decimal | None
    buy: OrderCheck
    sell: OrderCheck
    buy_ref: OrderCheck
    sell_ref: OrderCheck


class CheckPlan(msgspec.Struct, frozen=True, gc=False):
    """Precomputed data for :func:`daemon.rules.check_order`'s planned path: a LIMIT,
    LIMIT_MAKER or MARKET order with a quantity (and a price unless MARKET), no other
    parameter, on a TRADING symbol. Every bound is tested with a few comparisons; only a
    failing order builds violations, with the general check's helpers. Any other order goes
    through the general check. ``types`` holds LIMIT, LIMIT_MAKER, MARKET in that order
    (``None`` when the symbol does not allow the type). ``percent_buy``/``percent_sell`` are
    the tightest ``(up, down)`` PERCENT_PRICE* multipliers for that side, ``None`` when
    disabled.
    """

    percent_buy: tuple[Decimal | None, Decimal | None]
    percent_sell: tuple[Decimal | None, Decimal | None]
    types: tuple[TypePlan | None, TypePlan | None, TypePlan | None]
