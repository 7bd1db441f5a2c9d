"""Typed view of a record's Binance filter array (``SymbolRecord.filters``).

Each known ``filterType`` has a struct below; its fields are the JSON keys in snake case
(``tickSize`` -> ``tick_size``). What a caller may rely on:

* Decimal values are ``str``: the upstream decimal text exactly as sent (``"0.00001000"``),
  never a float. Counts are ``int``, flags ``bool``.
* A field is ``None`` when the entry lacks that key, or its value had an unusable type (a
  JSON integer or fractional number where a decimal string is expected is kept, as its exact
  source text; anything else becomes ``None``). Spot and futures spell some values
  differently (futures ``MIN_NOTIONAL`` has ``notional``, spot has ``min_notional``), so
  each struct has the union of both spellings.
* An entry of an unknown ``filterType`` is a plain ``dict`` of its JSON values (a number with
  a fraction or exponent is kept as its source text, a ``str``).
* Keys a struct does not declare are not in the typed view; the record's ``filters_raw``
  always holds the upstream array byte for byte.
* Entries that are not JSON objects, or have no string ``filterType``, are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, Literal, TypeAlias, TypeVar, cast, overload

import msgspec

__all__ = [
    "FILTER_TYPES",
    "Filter",
    "Filters",
    "IcebergParts",
    "KnownFilter",
    "LotSize",
    "MarketLotSize",
    "MaxNumAlgoOrders",
    "MaxNumIcebergOrders",
    "MaxNumOrderAmends",
    "MaxNumOrderLists",
    "MaxNumOrders",
    "MaxPosition",
    "MinNotional",
    "Notional",
    "PercentPrice",
    "PercentPriceBySide",
    "PositionRiskControl",
    "PriceFilter",
    "TrailingDelta",
    "decode_filters",
]


class _FilterBase(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename="camel",
    omit_defaults=True,
    tag_field="filterType",
):
    """Common base: encodes back to Binance's shape, ``filterType`` first, absent keys left
    out."""

    @property
    def filter_type(self) -> str:
        """The ``filterType`` this struct stands for."""
        return cast(str, self.__struct_config__.tag)  # every subclass sets a str tag


class PriceFilter(_FilterBase, frozen=True, tag="PRICE_FILTER"):
    min_price: str | None = None
    max_price: str | None = None
    tick_size: str | None = None


class PercentPrice(_FilterBase, frozen=True, tag="PERCENT_PRICE"):
    multiplier_up: str | None = None
    multiplier_down: str | None = None
    avg_price_mins: int | None = None  # spot
    multiplier_decimal: str | None = None  # futures


class PercentPriceBySide(_FilterBase, frozen=True, tag="PERCENT_PRICE_BY_SIDE"):
    bid_multiplier_up: str | None = None
    bid_multiplier_down: str | None = None
    ask_multiplier_up: str | None = None
    ask_multiplier_down: str | None = None
    avg_price_mins: int | None = None


class LotSize(_FilterBase, frozen=True, tag="LOT_SIZE"):
    min_qty: str | None = None
    max_qty: str | None = None
    step_size: str | None = None


class MarketLotSize(_FilterBase, frozen=True, tag="MARKET_LOT_SIZE"):
    min_qty: str | None = None
    max_qty: str | None = None
    step_size: str | None = None


class MinNotional(_FilterBase, frozen=True, tag="MIN_NOTIONAL"):
    min_notional: str | None = None  # spot
    apply_to_market: bool | None = None  # spot
    avg_price_mins: int | None = None  # spot
    notional: str | None = None  # futures


class Notional(_FilterBase, frozen=True, tag="NOTIONAL"):
    min_notional: str | None = None
    apply_min_to_market: bool | None = None
    max_notional: str | None = None
    apply_max_to_market: bool | None = None
    avg_price_mins: int | None = None


class IcebergParts(_FilterBase, frozen=True, tag="ICEBERG_PARTS"):
    limit: int | None = None


class TrailingDelta(_FilterBase, frozen=True, tag="TRAILING_DELTA"):
    min_trailing_above_delta: int | None = None
    max_trailing_above_delta: int | None = None
    min_trailing_below_delta: int | None = None
    max_trailing_below_delta: int | None = None


class MaxNumOrders(_FilterBase, frozen=True, tag="MAX_NUM_ORDERS"):
    max_num_orders: int | None = None  # spot
    limit: int | None = None  # futures


class MaxNumAlgoOrders(_FilterBase, frozen=True, tag="MAX_NUM_ALGO_ORDERS"):
    max_num_algo_orders: int | None = None  # spot
    limit: int | None = None  # futures


class MaxNumIcebergOrders(_FilterBase, frozen=True, tag="MAX_NUM_ICEBERG_ORDERS"):
    max_num_iceberg_orders: int | None = None


class MaxNumOrderLists(_FilterBase, frozen=True, tag="MAX_NUM_ORDER_LISTS"):
    max_num_order_lists: int | None = None


class MaxNumOrderAmends(_FilterBase, frozen=True, tag="MAX_NUM_ORDER_AMENDS"):
    max_num_order_amends: int | None = None


class MaxPosition(_FilterBase, frozen=True, tag="MAX_POSITION"):
    max_position: str | None = None


class PositionRiskControl(_FilterBase, frozen=True, tag="POSITION_RISK_CONTROL"):
    position_control_side: str | None = None


KnownFilter: TypeAlias = (
    PriceFilter
    | PercentPrice
    | PercentPriceBySide
    | LotSize
    | MarketLotSize
    | MinNotional
    | Notional
    | IcebergParts
    | TrailingDelta
    | MaxNumOrders
    | MaxNumAlgoOrders
    | MaxNumIcebergOrders
    | MaxNumOrderLists
    | MaxNumOrderAmends
    | MaxPosition
    | PositionRiskControl
)
Filter: TypeAlias = KnownFilter | dict[str, Any]
"""One entry of the view: a known struct, or a plain dict for an unknown ``filterType``."""

_KNOWN: Final[tuple[type[KnownFilter], ...]] = (
    PriceFilter,
    PercentPrice,
    PercentPriceBySide,
    LotSize,
    MarketLotSize,
    MinNotional,
    Notional,
    IcebergParts,
    TrailingDelta,
    MaxNumOrders,
    MaxNumAlgoOrders,
    MaxNumIcebergOrders,
    MaxNumOrderLists,
    MaxNumOrderAmends,
    MaxPosition,
    PositionRiskControl,
)
FILTER_TYPES: Final[Mapping[str, type[KnownFilter]]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in _KNOWN
}
"""``filterType`` -> struct, for every known type."""

_T = TypeVar("_T")


def _field_kind(annotation: object) -> type:
    # Each declared field is `X | None` for X in (str, int, bool).
    for kind in (bool, int, str):
        if annotation == (kind | None):
            return kind
    raise TypeError(f"unexpected filter field type {annotation!r}")


# struct -> ((attribute, JSON key, kind), ...), for the lenient path.
_FIELDS: Final[Mapping[type[KnownFilter], tuple[tuple[str, str, type], ...]]] = {
    cls: tuple((f.name, f.encode_name, _field_kind(f.type)) for f in msgspec.structs.fields(cls))
    for cls in _KNOWN
}


def _coerce(value: object, kind: type) -> object:
    # bool is an int subclass: tell them apart explicitly.
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return value if isinstance(value, bool) else None


def _typed(cls: type[KnownFilter], entry: dict[str, Any]) -> KnownFilter:
    try:
        return msgspec.convert(entry, cls)
    except msgspec.ValidationError:
        # Some value has an unexpected type: keep what is usable, the rest becomes None.
        usable = {key: _coerce(entry.get(key), kind) for _, key, kind in _FIELDS[cls]}
        usable["filterType"] = entry["filterType"]
        return msgspec.convert(usable, cls)


def _entry_type(entry: Filter) -> str:
    if isinstance(entry, dict):
        kind: str = entry["filterType"]
        return kind
    return entry.filter_type


class Filters(Mapping[str, Filter]):
    """A record's filters by ``filterType``, in upstream order.

    As a mapping, each type maps to its first entry (as the record's derived fields use it);
    :attr:`entries` keeps every entry, repeats included. Lookups by a known type name are
    typed: ``rec.filters["LOT_SIZE"]`` is a :class:`LotSize`. Immutable.
    """

    __slots__ = ("_by_type", "entries")

    def __init__(self, entries: Iterable[Filter] = ()) -> None:
        self.entries: tuple[Filter, ...] = tuple(entries)
        by_type: dict[str, Filter] = {}
        for entry in self.entries:
            by_type.setdefault(_entry_type(entry), entry)
        self._by_type = by_type

    # fmt: off
    @overload
    def __getitem__(self, key: Literal["PRICE_FILTER"]) -> PriceFilter: ...
    @overload
    def __getitem__(self, key: Literal["PERCENT_PRICE"]) -> PercentPrice: ...
    @overload
    def __getitem__(self, key: Literal["PERCENT_PRICE_BY_SIDE"]) -> PercentPriceBySide: ...
    @overload
    def __getitem__(self, key: Literal["LOT_SIZE"]) -> LotSize: ...
    @overload
    def __getitem__(self, key: Literal["MARKET_LOT_SIZE"]) -> MarketLotSize: ...
    @overload
    def __getitem__(self, key: Literal["MIN_NOTIONAL"]) -> MinNotional: ...
    @overload
    def __getitem__(self, key: Literal["NOTIONAL"]) -> Notional: ...
    @overload
    def __getitem__(self, key: Literal["ICEBERG_PARTS"]) -> IcebergParts: ...
    @overload
    def __getitem__(self, key: Literal["TRAILING_DELTA"]) -> TrailingDelta: ...
    @overload
    def __getitem__(self, key: Literal["MAX_NUM_ORDERS"]) -> MaxNumOrders: ...
    @overload
    def __getitem__(self, key: Literal["MAX_NUM_ALGO_ORDERS"]) -> MaxNumAlgoOrders: ...
    @overload
    def __getitem__(self, key: Literal["MAX_NUM_ICEBERG_ORDERS"]) -> MaxNumIcebergOrders: ...
    @overload
    def __getitem__(self, key: Literal["MAX_NUM_ORDER_LISTS"]) -> MaxNumOrderLists: ...
    @overload
    def __getitem__(self, key: Literal["MAX_NUM_ORDER_AMENDS"]) -> MaxNumOrderAmends: ...
    @overload
    def __getitem__(self, key: Literal["MAX_POSITION"]) -> MaxPosition: ...
    @overload
    def __getitem__(self, key: Literal["POSITION_RISK_CONTROL"]) -> PositionRiskControl: ...
    @overload
    def __getitem__(self, key: str) -> Filter: ...
    # fmt: on
    def __getitem__(self, key: str) -> Filter:
        return self._by_type[key]

    # fmt: off
    @overload  # type: ignore[override]
    def get(self, key: Literal["PRICE_FILTER"]) -> PriceFilter | None: ...
    @overload
    def get(self, key: Literal["PERCENT_PRICE"]) -> PercentPrice | None: ...
    @overload
    def get(self, key: Literal["PERCENT_PRICE_BY_SIDE"]) -> PercentPriceBySide | None: ...
    @overload
    def get(self, key: Literal["LOT_SIZE"]) -> LotSize | None: ...
    @overload
    def get(self, key: Literal["MARKET_LOT_SIZE"]) -> MarketLotSize | None: ...
    @overload
    def get(self, key: Literal["MIN_NOTIONAL"]) -> MinNotional | None: ...
    @overload
    def get(self, key: Literal["NOTIONAL"]) -> Notional | None: ...
    @overload
    def get(self, key: Literal["ICEBERG_PARTS"]) -> IcebergParts | None: ...
    @overload
    def get(self, key: Literal["TRAILING_DELTA"]) -> TrailingDelta | None: ...
    @overload
    def get(self, key: Literal["MAX_NUM_ORDERS"]) -> MaxNumOrders | None: ...
    @overload
    def get(self, key: Literal["MAX_NUM_ALGO_ORDERS"]) -> MaxNumAlgoOrders | None: ...
    @overload
    def get(self, key: Literal["MAX_NUM_ICEBERG_ORDERS"]) -> MaxNumIcebergOrders | None: ...
    @overload
    def get(self, key: Literal["MAX_NUM_ORDER_LISTS"]) -> MaxNumOrderLists | None: ...
    @overload
    def get(self, key: Literal["MAX_NUM_ORDER_AMENDS"]) -> MaxNumOrderAmends | None: ...
    @overload
    def get(self, key: Literal["MAX_POSITION"]) -> MaxPosition | None: ...
    @overload
    def get(self, key: Literal["POSITION_RISK_CONTROL"]) -> PositionRiskControl | None: ...
    @overload
    def get(self, key: str) -> Filter | None: ...
    @overload
    def get(self, key: str, default: _T) -> Filter | _T: ...
    # fmt: on
    def get(self, key: str, default: object = None) -> object:
        return self._by_type.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_type)

    def __len__(self) -> int:
        return len(self._by_type)

    def __contains__(self, key: object) -> bool:
        return key in self._by_type

    def __repr__(self) -> str:
        return f"Filters({list(self.entries)!r})"


# float_hook=str: a JSON number with a fraction or exponent reaches us as its source text.
_DECODER: Final = msgspec.json.Decoder(Any, float_hook=str)


def decode_filters(raw: bytes | bytearray | memoryview | msgspec.Raw | str) -> Filters:
    """The typed view of a JSON filter array (as stored in a record's ``filters``).

    Never raises: a value that is not valid JSON or not an array gives an empty view.
    """
    try:
        items = _DECODER.decode(raw)
    except msgspec.DecodeError:
        return Filters()
    if not isinstance(items, list):
        return Filters()
    entries: list[Filter] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("filterType")
        if not isinstance(kind, str):
            continue
        cls = FILTER_TYPES.get(kind)
        entries.append(item if cls is None else _typed(cls, item))
    return Filters(entries)
