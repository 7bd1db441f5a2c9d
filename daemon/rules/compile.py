"""Compile a symbol's exchangeInfo filters into a :class:`SymbolRules`.

The core, :func:`compile_rules`, takes plain values and decoded filter objects, so it does not
depend on how a record is stored. :func:`rules_for` is the one adapter from a stored record;
it is the only place that knows the record's attribute names.

Compiling is cheap enough to do for a whole payload (about 2,300 spot symbols) at once, or
lazily per symbol on first use: :func:`rules_for` splits the filter array into each filter's
JSON text and compiles each distinct text once (most are shared by many symbols), and decimal
strings are parsed once. Those caches are bounded and hold immutable values only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol, cast

import msgspec

from daemon.rules.decimals import EXACT, ONE, ZERO
from daemon.rules.errors import RulesError
from daemon.rules.fast import build_plan
from daemon.rules.model import (
    Grid,
    NotionalRule,
    PercentPrice,
    PercentPriceBySide,
    SymbolRules,
    TrailingDelta,
)

__all__ = ["KNOWN_FILTERS", "RecordLike", "compile_rules", "rules_for"]

# Filters that depend on the account's open orders or position: never decidable here.
_ACCOUNT_FILTERS: Final = frozenset(
    {
        "MAX_NUM_ORDERS",
        "MAX_NUM_ALGO_ORDERS",
        "MAX_NUM_ICEBERG_ORDERS",
        "MAX_POSITION",
        "MAX_NUM_ORDER_LISTS",
        "MAX_NUM_ORDER_AMENDS",
        "T_PLUS_SELL",
        "POSITION_RISK_CONTROL",
    }
)
# Account filters that concern every new order; the others are added per order (algo
# orders, iceberg orders, BUY orders) or concern order lists and amendments only.
_ALWAYS_UNCHECKED: Final = frozenset({"MAX_NUM_ORDERS", "T_PLUS_SELL", "POSITION_RISK_CONTROL"})
_ORDER_FILTERS: Final = frozenset(
    {
        "PRICE_FILTER",
        "PERCENT_PRICE",
        "PERCENT_PRICE_BY_SIDE",
        "LOT_SIZE",
        "MARKET_LOT_SIZE",
        "MIN_NOTIONAL",
        "NOTIONAL",
        "ICEBERG_PARTS",
        "TRAILING_DELTA",
    }
)
KNOWN_FILTERS: Final = _ORDER_FILTERS | _ACCOUNT_FILTERS
"""Every filter type this library understands; others are reported as unchecked."""

_MARKETS: Final = frozenset({"spot", "usdm", "coinm"})
_MISSING: Final = object()


class RecordLike(Protocol):
    """What :func:`rules_for` reads from a stored record (:class:`daemon.contract.SymbolRecord`).
    ``filters_raw`` is the upstream filter array as JSON bytes (``msgspec.Raw``)."""

    @property
    def symbol(self) -> str: ...
    @property
    def market(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def order_types(self) -> Sequence[str]: ...
    @property
    def filters_raw(self) -> msgspec.Raw: ...


# The filter array is split into each filter's JSON text (cheap), and each distinct text is
# decoded and compiled once (see _cached_piece). Decimal fields may arrive as JSON floats in a
# hand-made record: float_hook keeps their exact text.
_RAW_DECODER: Final = msgspec.json.Decoder(list[msgspec.Raw])
_FILTER_DECODER: Final = msgspec.json.Decoder(float_hook=Decimal)


def rules_for(record: RecordLike) -> SymbolRules:
    """Compile ``record``'s filters (see :func:`compile_rules`). Raises :class:`RulesError`
    when the filter array is not JSON or a filter value is malformed.

    This is the only function that knows the record's shape. It reads the byte-exact upstream
    array rather than the record's typed view, so that a value the typed view could not use
    is reported here with its symbol, filter and field instead of being skipped.
    """
    symbol, market = record.symbol, record.market
    if market not in _MARKETS:
        raise RulesError(symbol, "*", "market", market, "expected spot, usdm or coinm")
    futures = market != "spot"
    raw = record.filters_raw
    try:
        texts = _RAW_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise RulesError(symbol, "*", "filters", bytes(raw)[:80], str(exc)) from None
    pieces = []
    for text in texts:
        data = bytes(text)
        try:
            pieces.append(_cached_piece(futures, data))
        except RulesError:  # compile it again, uncached, for an error that names the symbol
            pieces.append(_piece(symbol, futures, _FILTER_DECODER.decode(data)))
        except msgspec.DecodeError as exc:  # only a malformed element can get here
            raise RulesError(symbol, "*", "filters", data[:80], str(exc)) from None
    contract_size = getattr(record, "contract_size", None)
    return _assemble(symbol, market, record.status, record.order_types, pieces, contract_size)


def compile_rules(
    symbol: str,
    market: str,
    status: str,
    order_types: Iterable[str],
    filters: Sequence[Mapping[str, Any]],
    *,
    contract_size: Decimal | str | int | None = None,
) -> SymbolRules:
    """Compile one symbol's rules from its exchangeInfo values.

    ``filters`` is the decoded ``filters`` array (objects keyed by ``filterType``). Decimal
    fields must be decimal strings (as Binance sends them), ints or ``Decimal``; integer
    fields ints. A filter type not in :data:`KNOWN_FILTERS` is kept by name in
    ``SymbolRules.unchecked``. A malformed value of a known filter (missing, not a number,
    negative, a min above its max) raises :class:`RulesError` naming the symbol, filter and
    field. ``market`` is ``"spot"``, ``"usdm"`` or ``"coinm"``; for COIN-M, quantities are
    contracts of ``contract_size`` and there is no notional filter.
    """
    if market not in _MARKETS:
        raise RulesError(symbol, "*", "market", market, "expected spot, usdm or coinm")
    futures = market != "spot"
    pieces = [_piece(symbol, futures, item) for item in filters]
    return _assemble(symbol, market, status, order_types, pieces, contract_size)


Piece = tuple[str, Any]
"""One compiled filter: its ``filterType`` and its value (a :class:`Grid`, a
:class:`NotionalRule`...; ``None`` for account and unknown filters). Immutable, so one piece
can serve every symbol whose filter object has the same JSON text."""


def _piece(symbol: str, futures: bool, item: Any) -> Piece:
    """Compile one filter object (``symbol`` only names it in errors)."""
    if type(item) is not dict and not isinstance(item, Mapping):  # ABC check is slow
        raise RulesError(symbol, "?", "filterType", item, "a filter must be a JSON object")
    ftype = item.get("filterType")
    if not isinstance(ftype, str) or not ftype:
        raise RulesError(symbol, "?", "filterType", ftype, "missing or not a string")
    f = _Fields(symbol, ftype, item)
    if ftype == "PRICE_FILTER":
        return ftype, _grid(f, "minPrice", "maxPrice", "tickSize")
    if ftype == "LOT_SIZE" or ftype == "MARKET_LOT_SIZE":
        return ftype, _grid(f, "minQty", "maxQty", "stepSize")
    if ftype == "PERCENT_PRICE":
        return ftype, PercentPrice(
            up=f.dec("multiplierUp"),
            down=f.dec("multiplierDown"),
            avg_price_mins=f.int_("avgPriceMins", optional=True),
            multiplier_decimal=f.int_("multiplierDecimal", optional=True),
            by_side_futures=futures,
        )
    if ftype == "PERCENT_PRICE_BY_SIDE":
        return ftype, PercentPriceBySide(
            bid_up=f.dec("bidMultiplierUp"),
            bid_down=f.dec("bidMultiplierDown"),
            ask_up=f.dec("askMultiplierUp"),
            ask_down=f.dec("askMultiplierDown"),
            avg_price_mins=f.int_("avgPriceMins", optional=True),
        )
    if ftype == "MIN_NOTIONAL":
        if futures:
            key = "notional" if "notional" in item else "minNotional"
            return ftype, NotionalRule(ftype, f.dec(key), ZERO, True, False, key, "")
        key = "minNotional" if "minNotional" in item else "notional"
        apply = f.bool_("applyToMarket", default=True)
        return ftype, NotionalRule(ftype, f.dec(key), ZERO, apply, False, key, "")
    if ftype == "NOTIONAL":
        rule = NotionalRule(
            filter_type=ftype,
            minimum=f.dec("minNotional"),
            maximum=f.dec("maxNotional", default=ZERO),
            apply_min_to_market=f.bool_("applyMinToMarket", default=True),
            apply_max_to_market=f.bool_("applyMaxToMarket", default=False),
            min_field="minNotional",
            max_field="maxNotional",
        )
        if rule.maximum and rule.minimum > rule.maximum:
            raise RulesError(symbol, ftype, "minNotional", rule.minimum, "above maxNotional")
        return ftype, rule
    if ftype == "ICEBERG_PARTS":
        return ftype, f.int_("limit")
    if ftype == "TRAILING_DELTA":
        return ftype, TrailingDelta(
            min_above=f.int_("minTrailingAboveDelta"),
            max_above=f.int_("maxTrailingAboveDelta"),
            min_below=f.int_("minTrailingBelowDelta"),
            max_below=f.int_("maxTrailingBelowDelta"),
        )
    return ftype, None


@functools.lru_cache(maxsize=8192)
def _cached_piece(futures: bool, text: bytes) -> Piece:
    """:func:`_piece` of one filter's JSON text, cached: most filter objects of a payload are
    shared by many symbols. Errors are not cached (the caller recompiles to name the symbol)."""
    return _piece("", futures, _FILTER_DECODER.decode(text))


def _assemble(
    symbol: str,
    market: str,
    status: str,
    order_types: Iterable[str],
    pieces: Iterable[Piece],
    contract_size: Decimal | str | int | None,
) -> SymbolRules:
    seen: set[str] = set()
    price = lot = market_lot = None
    percent = None
    by_side = None
    notionals: list[NotionalRule] = []
    iceberg = None
    trailing = None
    unchecked: list[str] = []
    for ftype, value in pieces:
        if ftype in seen:
            raise RulesError(symbol, ftype, "filterType", ftype, "filter listed twice")
        seen.add(ftype)
        if ftype == "PRICE_FILTER":
            price = value
        elif ftype == "LOT_SIZE":
            lot = value
        elif ftype == "MARKET_LOT_SIZE":
            market_lot = value
        elif ftype == "PERCENT_PRICE":
            percent = value
        elif ftype == "PERCENT_PRICE_BY_SIDE":
            by_side = value
        elif ftype == "MIN_NOTIONAL" or ftype == "NOTIONAL":
            notionals.append(value)
        elif ftype == "ICEBERG_PARTS":
            iceberg = value
        elif ftype == "TRAILING_DELTA":
            trailing = value
        elif ftype in _ALWAYS_UNCHECKED or ftype not in KNOWN_FILTERS:
            unchecked.append(ftype)
    size = None
    if contract_size is not None:
        size = _Fields(symbol, "*", {"contractSize": contract_size}).dec("contractSize")
    rules = SymbolRules(
        symbol=symbol,
        market=market,  # type: ignore[arg-type]  # checked against _MARKETS by the callers
        status=status,
        order_types=_types(tuple(order_types)),
        contract_size=size,
        price=price,
        lot=lot,
        market_lot=market_lot,
        market_qty=_merge_lots(lot, market_lot),
        percent_price=percent,
        percent_price_by_side=by_side,
        notionals=tuple(notionals),
        iceberg_parts=iceberg,
        trailing_delta=trailing,
        unchecked=tuple(unchecked),
        max_num_algo_filter="MAX_NUM_ALGO_ORDERS" in seen,
        max_num_iceberg_filter="MAX_NUM_ICEBERG_ORDERS" in seen,
        max_position_filter="MAX_POSITION" in seen,
    )
    return msgspec.structs.replace(rules, plan=build_plan(rules))


@functools.lru_cache(maxsize=256)
def _types(order_types: tuple[str, ...]) -> frozenset[str]:
    """One shared frozenset per distinct orderTypes list (there are a handful)."""
    return frozenset(order_types)


class _Fields:
    """Typed reads of one filter object, raising :class:`RulesError` with full context."""

    __slots__ = ("ftype", "item", "symbol")

    def __init__(self, symbol: str, ftype: str, item: Mapping[str, Any]) -> None:
        self.symbol, self.ftype, self.item = symbol, ftype, item

    def fail(self, field: str, value: object, why: str) -> RulesError:
        return RulesError(self.symbol, self.ftype, field, value, why)

    def dec(self, field: str, default: Decimal | None = None) -> Decimal:
        value = self.item.get(field, _MISSING)
        if value is _MISSING or value is None:
            if default is not None:
                return default
            raise self.fail(field, None, "missing")
        kind = type(value)
        if kind is str:
            parsed = _parse(value)
            if parsed is None:
                raise self.fail(field, value, "not a finite, non-negative decimal number")
            return parsed
        if kind is int or kind is Decimal:
            try:
                result = Decimal(value)
            except InvalidOperation:
                raise self.fail(field, value, "not a decimal number") from None
        else:
            raise self.fail(field, value, "expected a decimal string")
        if not result.is_finite() or result < 0:
            raise self.fail(field, value, "not a finite, non-negative number")
        return result

    def int_(self, field: str, *, optional: bool = False) -> Any:
        value = self.item.get(field, _MISSING)
        if value is _MISSING or value is None:
            if optional:
                return None
            raise self.fail(field, None, "missing")
        if type(value) is str and value.isdigit():  # futures multiplierDecimal is "4"
            return int(value)
        if type(value) is not int or value < 0:
            raise self.fail(field, value, "expected a non-negative integer")
        return value

    def bool_(self, field: str, *, default: bool) -> bool:
        value = self.item.get(field, _MISSING)
        if value is _MISSING or value is None:
            return default
        if type(value) is not bool:
            raise self.fail(field, value, "expected true or false")
        return value


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Decimal | None:
    """``Decimal(text)`` when that is finite and not negative, else ``None``. Many symbols
    share the same strings (``"0.00001000"``), so this is cached; a Decimal is immutable."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() and value >= 0 else None


@functools.lru_cache(maxsize=4096)
def _string_grid(ftype: str, minimum: str, maximum: str, step: str) -> Grid | None:
    """The grid of three valid decimal strings (``None`` when one is not: the caller then
    reports it). Cached: many symbols share their PRICE_FILTER and LOT_SIZE strings."""
    low, high, tick = _parse(minimum), _parse(maximum), _parse(step)
    if low is None or high is None or tick is None or (high and low > high):
        return None
    return make_grid(ftype, low, high, tick, low)


def _grid(f: _Fields, min_key: str, max_key: str, step_key: str) -> Grid:
    texts = f.item.get(min_key), f.item.get(max_key), f.item.get(step_key)
    if type(texts[0]) is str and type(texts[1]) is str and type(texts[2]) is str:
        grid = _string_grid(f.ftype, *texts)
        if grid is not None:
            return grid
    minimum, maximum, step = f.dec(min_key), f.dec(max_key), f.dec(step_key)
    if maximum and minimum > maximum:
        raise f.fail(min_key, str(minimum), f"above {max_key} {maximum}")
    return make_grid(f.ftype, minimum, maximum, step, minimum)


def make_grid(
    filter_type: str, minimum: Decimal, maximum: Decimal, step: Decimal, anchor: Decimal
) -> Grid:
    """A :class:`Grid`, with its rounding exponent and fast-path flag worked out."""
    if not step:
        return Grid(filter_type, minimum, maximum, step, anchor, None, False)
    step_exp, power_of_ten = _exponent(step)
    anchor_exp = _exponent(anchor)[0] if anchor else 0
    quantum = ONE.scaleb(min(0, step_exp, anchor_exp))
    fast = power_of_ten and step_exp <= 0 and not EXACT.remainder(anchor, step)
    return Grid(filter_type, minimum, maximum, step, anchor, quantum, fast)


def _exponent(value: Decimal) -> tuple[int, bool]:
    """The exponent of ``value`` without trailing zeros, and whether it is a power of ten."""
    # adjusted() is the exponent of the leading digit: for a power of ten it is the exponent
    # itself, which avoids the slower as_tuple() on every recorded step.
    reduced = value.normalize()
    top = reduced.adjusted()
    if reduced == ONE.scaleb(top):
        return top, True
    return cast(int, reduced.as_tuple().exponent), False  # finite, so an int


def _merge_lots(lot: Grid | None, market_lot: Grid | None) -> Grid | None:
    """One grid that satisfies both LOT_SIZE and MARKET_LOT_SIZE, for rounding MARKET orders.

    Bounds: the larger minimum and the smaller non-zero maximum. Step: the one grid if only
    one has a step; otherwise the coarser one, which contains the finer when both are powers
    of ten on aligned anchors (every recorded payload). For exotic steps that do not nest,
    the coarser grid is still used and :func:`daemon.rules.check_order` has the last word.
    """
    if market_lot is None:
        return lot
    if lot is None:
        return market_lot
    minimum = max(lot.minimum, market_lot.minimum)
    maxima = [m for m in (lot.maximum, market_lot.maximum) if m]
    maximum = min(maxima) if maxima else ZERO
    if not market_lot.step:
        stepped = lot
    elif not lot.step:
        stepped = market_lot
    else:
        stepped = market_lot if market_lot.step > lot.step else lot
    # quantum and fast depend on step and anchor only: the stepped grid's are right as they are.
    return Grid(
        "MARKET_LOT_SIZE",
        minimum,
        maximum,
        stepped.step,
        stepped.anchor,
        stepped.quantum,
        stepped.fast,
    )
