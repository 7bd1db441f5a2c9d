"""Turn a Binance ``exchangeInfo`` payload into compact, stable per-symbol records.

Everything here is pure: no I/O, no clock, no logging, no global state besides reusable
msgspec encoders/decoders. The same input bytes always give the same output.

Pipeline, as the refresh loop uses it::

    result = normalize(body, market="spot")              # raises PayloadError on a bad payload
    listed = prioritize(result.records, list_statuses={"TRADING"},
                        quote_priority=("USDT", "FDUSD"), pinned=("BTCUSDT",))
    blobs = build_snapshot(result.records, listed)       # what the snapshot writer stores
    changes = diff_snapshots(previous_by_symbol, blobs.by_symbol)

Decoding is typed (msgspec Structs) because a full spot payload is several MB and the whole
refresh has a tight CPU budget; a generic ``json.loads`` into dicts costs several times more.
The whole payload is first decoded in one typed pass; only if some row (or the header) has an
unexpected shape is it redone row by row over ``msgspec.Raw`` slices, so one odd row costs
that row, never the refresh.
"""

import hashlib
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from typing import Any, Final

import msgspec

__all__ = [
    "MAX_SYMBOL_LENGTH",
    "ExchangeInfo",
    "Normalized",
    "PayloadError",
    "RateLimit",
    "SnapshotBlobs",
    "SnapshotDiff",
    "SymbolRecord",
    "build_snapshot",
    "decode_payload",
    "decode_record",
    "diff_snapshots",
    "encode_record",
    "is_acceptable_symbol",
    "normalize",
    "prioritize",
    "request_weight_limit",
]

MAX_SYMBOL_LENGTH: Final = 64
"""Longest symbol name (in code points) that :func:`normalize` accepts."""

# Unicode categories refused in a symbol name: controls, format characters (zero-width
# joiners, bidi overrides that make a log line lie), and separators.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})

# Shared by every row without a `filters` key, and by rows whose `filters` is not a list:
# the record always carries a JSON array there.
_EMPTY_LIST: Final = msgspec.Raw(b"[]")


class PayloadError(ValueError):
    """The payload is not a usable exchangeInfo response (bad JSON, or no `symbols` list).

    Raised only for problems with the payload as a whole; a bad row never raises, it is
    dropped and counted instead.
    """


# ---------------------------------------------------------------------------------------
# Upstream shapes (typed decoding). Only the keys we use are declared; msgspec skips the
# rest without building objects for them, which is where most of the speed comes from.
# ---------------------------------------------------------------------------------------


class RateLimit(msgspec.Struct, frozen=True, rename="camel", gc=False):
    """One entry of ``rateLimits``. Every field is optional so an odd entry cannot sink the
    payload; unknown keys are ignored."""

    rate_limit_type: str | None = None
    interval: str | None = None
    interval_num: int | None = None
    limit: int | None = None


class ExchangeInfo(msgspec.Struct, frozen=True, rename="camel"):
    """Top level of an exchangeInfo response, with the rows left undecoded.

    ``symbols`` holds one ``msgspec.Raw`` per row (a slice of the input buffer), so one bad
    row can be handled on its own instead of failing the whole decode.
    """

    symbols: list[msgspec.Raw]
    server_time: int | None = None
    rate_limits: list[RateLimit] = []


class _BareExchangeInfo(msgspec.Struct, frozen=True):
    # Fallback when the header keys (serverTime, rateLimits) have unexpected types: the rows
    # are what matters, so a malformed header must not cost us the refresh.
    symbols: list[msgspec.Raw]


class _Row(msgspec.Struct, rename="camel", gc=False):
    # Required-for-use fields default to "" rather than being required, so a row that merely
    # lacks one is dropped by the validation below (counted as dropped) instead of taking the
    # slower lenient path.
    symbol: str = ""
    status: str = ""
    # COIN-M (/dapi) rows name their status `contractStatus` and have no `status`.
    contract_status: str = ""
    base_asset: str = ""
    quote_asset: str = ""
    order_types: tuple[str, ...] = ()
    # Kept raw: a modern spot row carries ~440 permission names, and the same few lists repeat
    # on every row, so they are decoded once per distinct list (see _PermissionMemo).
    permissions: msgspec.Raw = _EMPTY_LIST
    permission_sets: msgspec.Raw = _EMPTY_LIST
    # Kept raw so the record can re-emit the upstream bytes unchanged.
    filters: msgspec.Raw = _EMPTY_LIST
    contract_type: str | None = None
    delivery_date: int | None = None
    onboard_date: int | None = None
    margin_asset: str | None = None


class _Filter(msgspec.Struct, rename="camel", gc=False):
    filter_type: str
    tick_size: str | None = None
    min_price: str | None = None
    max_price: str | None = None
    step_size: str | None = None
    min_qty: str | None = None
    max_qty: str | None = None
    min_notional: str | None = None
    max_notional: str | None = None
    notional: str | None = None


class _LooseRow(msgspec.Struct, rename="camel", gc=False):
    # Lenient twin of _Row: every field accepts any JSON value and the builder below picks
    # what is usable. Decoded with float_hook=str, so a JSON float keeps its exact text.
    symbol: Any = None
    status: Any = None
    contract_status: Any = None
    base_asset: Any = None
    quote_asset: Any = None
    order_types: Any = None
    permissions: Any = None
    permission_sets: Any = None
    filters: msgspec.Raw = _EMPTY_LIST
    contract_type: Any = None
    delivery_date: Any = None
    onboard_date: Any = None
    margin_asset: Any = None


# (attribute on _Filter, JSON key) for the lenient filter path.
_FILTER_KEYS: Final = (
    ("tick_size", "tickSize"),
    ("min_price", "minPrice"),
    ("max_price", "maxPrice"),
    ("step_size", "stepSize"),
    ("min_qty", "minQty"),
    ("max_qty", "maxQty"),
    ("min_notional", "minNotional"),
    ("max_notional", "maxNotional"),
    ("notional", "notional"),
)


# ---------------------------------------------------------------------------------------
# Output record
# ---------------------------------------------------------------------------------------


class SymbolRecord(msgspec.Struct, frozen=True, gc=False):
    """One symbol, as stored in Redis and served to the bot.

    Guarantees a caller may rely on:

    * Every field is always present when encoded (``None`` becomes JSON ``null``), in this
      declaration order.
    * ``symbol``, ``status``, ``base`` and ``quote`` are non-empty strings; ``symbol`` has no
      control, format, separator or whitespace characters and at most
      :data:`MAX_SYMBOL_LENGTH` code points (it may be non-ASCII).
    * ``status`` is passed through as sent; unknown values are kept.
    * Decimal fields are the upstream decimal strings exactly as sent (``"0.00001000"``
      stays so), never floats; ``None`` when the row has no such filter.
    * ``permissions`` and ``order_types`` are tuples of strings (JSON arrays); permissions
      are deduplicated and sorted.
    * ``filters`` is the upstream filter array, byte for byte (``[]`` if the row had none).
    * Futures fields (``contract_type``, ``delivery_date``, ``onboard_date``,
      ``margin_asset``) are ``None`` on spot rows.
    """

    symbol: str
    market: str
    status: str
    base: str
    quote: str
    tick_size: str | None
    min_price: str | None
    max_price: str | None
    step_size: str | None
    min_qty: str | None
    max_qty: str | None
    market_step_size: str | None
    market_min_qty: str | None
    market_max_qty: str | None
    min_notional: str | None
    max_notional: str | None
    permissions: tuple[str, ...]
    order_types: tuple[str, ...]
    filters: msgspec.Raw
    contract_type: str | None
    delivery_date: int | None
    onboard_date: int | None
    margin_asset: str | None


@dataclass(frozen=True, slots=True)
class Normalized:
    """Result of :func:`normalize`.

    ``records`` holds every accepted row, whatever its status, in upstream order, with unique
    symbols. Every upstream row is accounted for exactly once:
    ``rows == len(records) + dropped + len(refused) + duplicates``.
    """

    records: tuple[SymbolRecord, ...]
    rows: int
    """Number of rows in the upstream ``symbols`` array."""
    dropped: int
    """Rows without a usable symbol, status, base or quote (or not a JSON object at all)."""
    refused: tuple[str, ...]
    """Refused symbol names, ``repr``-escaped and truncated so they are safe to log."""
    duplicates: int
    """Rows whose symbol was already seen earlier in the payload (the first one is kept)."""
    lenient: int
    """Rows whose typed decoding failed and which went through the lenient path (kept or
    not); non-zero means upstream sent an unexpected type somewhere."""
    server_time: int | None
    weight_limit: int | None
    """REQUEST_WEIGHT per-minute limit announced in ``rateLimits``, if any."""
    encoded: Mapping[str, tuple[bytes, bytes]] = field(default_factory=dict)
    """symbol -> (record JSON, 16-byte digest of it), for every record, in record order;
    :func:`build_snapshot` reuses these instead of encoding again."""
    processed: int = 0
    """Rows decoded in this call (the rest came from the memo unchanged)."""


_ENCODER: Final = msgspec.json.Encoder()
_RECORD_DECODER: Final = msgspec.json.Decoder(SymbolRecord)
_INFO_DECODER: Final = msgspec.json.Decoder(ExchangeInfo)
_BARE_DECODER: Final = msgspec.json.Decoder(_BareExchangeInfo)
_ROW_DECODER: Final = msgspec.json.Decoder(_Row)
_FILTERS_DECODER: Final = msgspec.json.Decoder(list[_Filter])
# float_hook=str: a JSON float reaches us as its exact source text, never as a float.
_LOOSE_ROW_DECODER: Final = msgspec.json.Decoder(_LooseRow, float_hook=str)
_LOOSE_DECODER: Final = msgspec.json.Decoder(Any, float_hook=str)


# ---------------------------------------------------------------------------------------
# Payload level
# ---------------------------------------------------------------------------------------


def decode_payload(payload: bytes | bytearray | memoryview) -> ExchangeInfo:
    """Decode the top level of an exchangeInfo response, leaving rows as ``msgspec.Raw``.

    Raises :class:`PayloadError` if the payload is not valid JSON (including truncated), is
    not a JSON object, has no ``symbols`` key, or ``symbols`` is not an array. If
    ``serverTime`` or ``rateLimits`` have unexpected types they are treated as absent
    (``server_time=None``, ``rate_limits=[]``) rather than failing the payload.
    The returned rows point into ``payload``; do not mutate it while they are in use.
    """
    try:
        return _INFO_DECODER.decode(payload)
    except msgspec.ValidationError:
        pass  # maybe only the header is odd; retry with just the rows below
    except msgspec.DecodeError as exc:
        raise PayloadError(f"exchangeInfo payload is not valid JSON: {exc}") from exc
    try:
        bare = _BARE_DECODER.decode(payload)
    except msgspec.ValidationError as exc:
        # msgspec names the problem and its path, e.g. "Expected `array`, got `object` - at
        # `$.symbols`" or "Object missing required field `symbols`".
        raise PayloadError(f"exchangeInfo payload has an unusable shape: {exc}") from exc
    return ExchangeInfo(symbols=bare.symbols)


def request_weight_limit(rate_limits: Iterable[RateLimit]) -> int | None:
    """The REQUEST_WEIGHT limit per one minute, or ``None`` if none is announced.

    Only an entry with ``interval == "MINUTE"`` and ``intervalNum == 1`` and a positive
    ``limit`` counts; other windows are not converted, since a per-5-minute budget does not
    translate into a safe per-minute one.
    """
    for rl in rate_limits:
        if (
            rl.rate_limit_type == "REQUEST_WEIGHT"
            and rl.interval == "MINUTE"
            and rl.interval_num == 1
            and rl.limit is not None
            and rl.limit > 0
        ):
            return rl.limit
    return None


def is_acceptable_symbol(name: str) -> bool:
    """True if ``name`` is acceptable as a symbol name.

    Acceptable: non-empty, at most :data:`MAX_SYMBOL_LENGTH` code points, and no character of
    Unicode category Cc, Cf, Zs, Zl or Zp nor any character for which ``str.isspace()`` is
    true. Non-ASCII letters are fine (``币安人生USDT`` is a real symbol).
    """
    if not name or len(name) > MAX_SYMBOL_LENGTH:
        return False
    if name.isascii():
        # Fast path for the usual case: in ASCII, isprintable() is False exactly for the
        # controls (0x00-0x1f, 0x7f); space is the one printable separator/whitespace.
        return name.isprintable() and " " not in name
    return not any(ch.isspace() or unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in name)


def _loggable_name(name: str) -> str:
    # repr() escapes controls, format characters and separators, so a refused name cannot
    # forge log lines; truncation bounds what a hostile payload can make us print.
    if len(name) <= MAX_SYMBOL_LENGTH:
        return repr(name)
    return f"{name[:MAX_SYMBOL_LENGTH]!r}...(+{len(name) - MAX_SYMBOL_LENGTH} chars)"


# ---------------------------------------------------------------------------------------
# Row level
# ---------------------------------------------------------------------------------------


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return None if value.is_nan() else value


def _larger(primary: str | None, other: str | None) -> str | None:
    # Larger of two decimal strings by value, returning the original text. Ties, and values
    # that do not parse as numbers, favour `primary`.
    if other is None:
        return primary
    if primary is None:
        return other
    p, o = _decimal(primary), _decimal(other)
    if o is None:
        return primary
    if p is None or o > p:
        return other
    return primary


def _text_value(value: object) -> str | None:
    # Lenient path: strings (and JSON floats, which float_hook=str turned into their source
    # text) are kept as-is; integers are exact as text; anything else is unusable.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _lenient_filters(raw: msgspec.Raw) -> tuple[list[_Filter], bool]:
    """Filters from a ``filters`` value that failed typed decoding; flag = it is an array."""
    try:
        items = _LOOSE_DECODER.decode(raw)
    except msgspec.DecodeError:
        return [], False
    if not isinstance(items, list):
        return [], False
    out: list[_Filter] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        filter_type = item.get("filterType")
        if not isinstance(filter_type, str):
            continue
        values = {attr: _text_value(item.get(key)) for attr, key in _FILTER_KEYS}
        out.append(_Filter(filter_type=filter_type, **values))
    return out, True


def _str_list(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


def _permission_sets(value: object) -> list[str | list[str]]:
    if not isinstance(value, list):
        return []
    out: list[str | list[str]] = []
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list):
            out.append(_str_list(item))
    return out


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _lenient_row(raw: msgspec.Raw) -> _Row | None:
    """Rebuild a typed row from whatever is usable in ``raw``; ``None`` if not an object."""
    try:
        loose = _LOOSE_ROW_DECODER.decode(raw)
    except msgspec.DecodeError:
        return None
    return _Row(
        symbol=loose.symbol if isinstance(loose.symbol, str) else "",
        status=loose.status if isinstance(loose.status, str) else "",
        contract_status=loose.contract_status if isinstance(loose.contract_status, str) else "",
        base_asset=loose.base_asset if isinstance(loose.base_asset, str) else "",
        quote_asset=loose.quote_asset if isinstance(loose.quote_asset, str) else "",
        order_types=tuple(_str_list(loose.order_types)),
        permissions=msgspec.Raw(_ENCODER.encode(_str_list(loose.permissions))),
        permission_sets=msgspec.Raw(_ENCODER.encode(_permission_sets(loose.permission_sets))),
        filters=loose.filters,
        contract_type=_opt_str(loose.contract_type),
        delivery_date=_opt_int(loose.delivery_date),
        onboard_date=_opt_int(loose.onboard_date),
        margin_asset=_opt_str(loose.margin_asset),
    )


class _PermissionMemo:
    """Sorted permission unions by the exact bytes of (permissions, permissionSets).

    A payload repeats a handful of distinct lists over thousands of rows; decoding each
    distinct pair once turns ~1M string objects (modern spot) into a few dozen.
    """

    _LIMIT: Final = 4096  # a hostile payload with all-distinct lists cannot grow it forever

    def __init__(self) -> None:
        self._known: dict[tuple[bytes, bytes], tuple[str, ...]] = {}

    def union(self, row: _Row) -> tuple[str, ...]:
        key = (bytes(row.permissions), bytes(row.permission_sets))
        found = self._known.get(key)
        if found is None:
            found = _permission_union(*key)
            if len(self._known) >= self._LIMIT:
                self._known.clear()
            self._known[key] = found
        return found


def _permission_union(permissions: bytes, permission_sets: bytes) -> tuple[str, ...]:
    # Spot sends permissionSets as a list of lists (inner OR'd, outer AND'ed), futures as a
    # flat list; `permissions` is a flat list (empty since 2024-04). Anything else that is not
    # a string is ignored rather than failing the row.
    names: set[str] = set()
    for blob in (permissions, permission_sets):
        try:
            value = _LOOSE_DECODER.decode(blob)
        except msgspec.DecodeError:
            continue
        for entry in value if isinstance(value, list) else ():
            if isinstance(entry, str):
                names.add(entry)
            elif isinstance(entry, list):
                names.update(item for item in entry if isinstance(item, str))
    return tuple(sorted(names))


def _record(
    row: _Row,
    filters: list[_Filter],
    filters_raw: msgspec.Raw,
    market: str,
    permissions: tuple[str, ...],
) -> SymbolRecord:
    price = lot = market_lot = notional = min_notional = None
    for f in filters:
        # First occurrence of each filter type wins; later repeats are ignored here but stay
        # in the passthrough `filters`.
        kind = f.filter_type
        if kind == "PRICE_FILTER" and price is None:
            price = f
        elif kind == "LOT_SIZE" and lot is None:
            lot = f
        elif kind == "MARKET_LOT_SIZE" and market_lot is None:
            market_lot = f
        elif kind == "NOTIONAL" and notional is None:
            notional = f
        elif kind == "MIN_NOTIONAL" and min_notional is None:
            min_notional = f

    # NOTIONAL replaced MIN_NOTIONAL on spot; futures MIN_NOTIONAL calls the value
    # `notional`. A transition-era row carries both: the larger bound is the binding one.
    old_min = None
    if min_notional is not None:
        old_min = min_notional.min_notional
        if old_min is None:
            old_min = min_notional.notional
    new_min = notional.min_notional if notional is not None else None

    # Positional arguments, in SymbolRecord field order: about 4x cheaper than keywords,
    # which matters at a few thousand rows per refresh. The tests check every field.
    return SymbolRecord(
        row.symbol,
        market,
        row.status,
        row.base_asset,
        row.quote_asset,
        price.tick_size if price else None,
        price.min_price if price else None,
        price.max_price if price else None,
        lot.step_size if lot else None,
        lot.min_qty if lot else None,
        lot.max_qty if lot else None,
        market_lot.step_size if market_lot else None,
        market_lot.min_qty if market_lot else None,
        market_lot.max_qty if market_lot else None,
        _larger(new_min, old_min),
        notional.max_notional if notional else None,
        permissions,
        row.order_types,
        # Rows are decoded from their own small bytes object (the memo key), so this Raw
        # points into that row, never into the multi-MB payload.
        filters_raw,
        row.contract_type,
        row.delivery_date,
        row.onboard_date,
        row.margin_asset,
    )


@dataclass(frozen=True, slots=True)
class _RowOutcome:
    # record is None for a dropped or refused row; refused holds the loggable name then.
    record: SymbolRecord | None
    blob: bytes
    digest: bytes
    refused: str | None
    lenient: bool


class RowMemo:
    """What earlier calls learnt about each upstream row, keyed by the row's exact bytes.

    Pass the same memo to successive :func:`normalize` calls of one market: a row whose
    bytes did not change since the previous payload costs a dict lookup, and its record,
    JSON and digest are reused as they are. After each call the memo holds the rows of that
    payload only, so it never grows beyond one payload. Not thread-safe.
    """

    def __init__(self) -> None:
        # The previous payload's rows (each its own bytes) and what each became, by
        # position: payloads keep their row order, so comparing row i with row i finds the
        # unchanged ones without copying or hashing them.
        self.raws: list[msgspec.Raw] = []
        self.outcomes: list[_RowOutcome] = []
        self.permissions = _PermissionMemo()

    def by_bytes(self) -> dict[bytes, _RowOutcome]:
        """The previous rows keyed by content, for a payload whose rows moved."""
        return {bytes(raw): out for raw, out in zip(self.raws, self.outcomes, strict=True)}


_DROPPED: Final = _RowOutcome(None, b"", b"", None, False)
_DROPPED_LENIENT: Final = _RowOutcome(None, b"", b"", None, True)


def _digest(blob: bytes) -> bytes:
    # sha256 runs on the CPU's SHA extensions where present: about twice blake2b's speed here.
    return hashlib.sha256(blob).digest()[:16]


def _process_row(row_bytes: bytes, market: str, permissions: _PermissionMemo) -> _RowOutcome:
    """Decode, validate and encode one row (the slow path, for rows the memo has not seen)."""
    try:
        row: _Row | None = _ROW_DECODER.decode(row_bytes)
        strict = True
    except msgspec.DecodeError:
        row, strict = _lenient_row(msgspec.Raw(row_bytes)), False
    if row is None:
        return _DROPPED_LENIENT
    symbol = row.symbol
    if not symbol:
        return _DROPPED if strict else _DROPPED_LENIENT
    if not is_acceptable_symbol(symbol):
        return _RowOutcome(None, b"", b"", _loggable_name(symbol), not strict)
    if not row.status:
        row.status = row.contract_status
    if not (row.status and row.base_asset and row.quote_asset):
        return _DROPPED if strict else _DROPPED_LENIENT

    filters_raw = row.filters
    try:
        filters = _FILTERS_DECODER.decode(filters_raw)
    except msgspec.DecodeError:
        strict = False
        filters, is_array = _lenient_filters(filters_raw)
        if not is_array:
            filters_raw = _EMPTY_LIST
    record = _record(row, filters, filters_raw, market, permissions.union(row))
    blob = _ENCODER.encode(record)
    return _RowOutcome(record, blob, _digest(blob), None, not strict)


def normalize(
    payload: bytes | bytearray | memoryview, *, market: str, memo: RowMemo | None = None
) -> Normalized:
    """Decode and validate an exchangeInfo payload into :class:`SymbolRecord` values.

    ``market`` is copied into every record (e.g. ``"spot"``, ``"usdm"``); it does not change
    how rows are read: spot and futures formats are both accepted. ``memo`` (one per market)
    makes rows that did not change since the previous call nearly free; the result is the
    same with or without it.

    Raises :class:`PayloadError` for a payload-level problem (see :func:`decode_payload`).
    Never raises for a bad row: rows are kept, dropped, refused or counted as duplicates as
    documented on :class:`Normalized`. A row with an unexpected type in some field (e.g. a
    JSON number where a decimal string is expected) is re-read leniently: usable values are
    kept (a JSON number as its exact source text), unusable ones become ``None``/empty, and a
    ``filters`` value that is not an array is replaced by ``[]``.
    """
    info = decode_payload(payload)
    memo = memo if memo is not None else RowMemo()
    previous, known = memo.raws, memo.outcomes
    moved: dict[bytes, _RowOutcome] | None = None
    outcomes: list[_RowOutcome] = []
    records: list[SymbolRecord] = []
    encoded: dict[str, tuple[bytes, bytes]] = {}
    refused: list[str] = []
    dropped = duplicates = lenient = processed = 0
    rows = info.symbols
    # The memo keeps each row as its own small bytes, never as a slice of the payload, so the
    # multi-MB body can be freed once this call returns.
    kept: list[msgspec.Raw] = []
    for i, raw in enumerate(rows):
        if i < len(previous) and previous[i] == raw:
            outcome = known[i]
            kept.append(previous[i])
        else:
            if moved is None:
                # A row edited in place (the next row still lines up) needs no index by
                # content; rows that moved (a listing or delisting shifted them) do.
                in_place = i + 1 < len(rows) and i + 1 < len(previous)
                moved = {} if in_place and previous[i + 1] == rows[i + 1] else memo.by_bytes()
            row_bytes = bytes(raw)
            kept.append(msgspec.Raw(row_bytes))
            found = moved.get(row_bytes)
            if found is None:
                found = _process_row(row_bytes, market, memo.permissions)
                moved[row_bytes] = found  # a repeated row in this payload is decoded once
                processed += 1
            outcome = found
        outcomes.append(outcome)
        if outcome.lenient:
            lenient += 1
        record = outcome.record
        if record is None:
            if outcome.refused is not None:
                refused.append(outcome.refused)
            else:
                dropped += 1
            continue
        if record.symbol in encoded:
            duplicates += 1
            continue
        records.append(record)
        encoded[record.symbol] = (outcome.blob, outcome.digest)
    memo.raws, memo.outcomes = kept, outcomes

    return Normalized(
        records=tuple(records),
        rows=len(info.symbols),
        dropped=dropped,
        refused=tuple(refused),
        duplicates=duplicates,
        lenient=lenient,
        server_time=info.server_time,
        weight_limit=request_weight_limit(info.rate_limits),
        encoded=encoded,
        processed=processed,
    )


# ---------------------------------------------------------------------------------------
# Ordering
# ---------------------------------------------------------------------------------------


def prioritize(
    records: Iterable[SymbolRecord],
    *,
    list_statuses: Collection[str],
    quote_priority: Sequence[str],
    pinned: Sequence[str],
) -> list[SymbolRecord]:
    """The records to list, in listing order.

    Keeps records whose ``status`` is in ``list_statuses``. Order: first the ``pinned``
    symbols, in the order given (a pinned name that is absent or not listed is skipped),
    then the rest by rank of ``quote`` in ``quote_priority`` (quotes not in it come after all
    known ones), then by ``symbol`` (plain ``str`` ordering). Pure and deterministic; input
    order only matters between records with equal symbols, which stay in input order.
    """
    # A bare string is a Collection/Sequence of characters: almost certainly a caller bug
    # that would silently list nothing.
    for name, arg in (
        ("list_statuses", list_statuses),
        ("quote_priority", quote_priority),
        ("pinned", pinned),
    ):
        if isinstance(arg, str):
            raise TypeError(f"{name} must be a collection of strings, not a str")

    statuses = frozenset(list_statuses)
    pin_rank: dict[str, int] = {}
    for i, name in enumerate(pinned):
        pin_rank.setdefault(name, i)
    quote_rank: dict[str, int] = {}
    for i, quote in enumerate(quote_priority):
        quote_rank.setdefault(quote, i)
    unknown_quote = len(quote_priority)

    # One bucket per quote rank, each sorted by symbol: about 3x cheaper than one sort with a
    # Python key function over every record, and the same order (sorts are stable).
    pins: list[tuple[int, SymbolRecord]] = []
    buckets: list[list[SymbolRecord]] = [[] for _ in range(unknown_quote + 1)]
    rank = quote_rank.get
    for rec in records:
        if rec.status not in statuses:
            continue
        pin = pin_rank.get(rec.symbol)
        if pin is not None:
            pins.append((pin, rec))
        else:
            buckets[rank(rec.quote, unknown_quote)].append(rec)
    pins.sort(key=_first)
    out = [rec for _, rec in pins]
    by_symbol = attrgetter("symbol")
    for bucket in buckets:
        bucket.sort(key=by_symbol)
        out.extend(bucket)
    return out


def _first(pair: tuple[int, SymbolRecord]) -> int:
    return pair[0]


# ---------------------------------------------------------------------------------------
# Encoding and snapshots
# ---------------------------------------------------------------------------------------


def encode_record(rec: SymbolRecord) -> bytes:
    """JSON bytes of one record: every field present, in declaration order, UTF-8 (non-ASCII
    is not escaped), ``filters`` re-emitted byte for byte. Deterministic."""
    return _ENCODER.encode(rec)


def decode_record(data: bytes | bytearray | memoryview | str) -> SymbolRecord:
    """Inverse of :func:`encode_record`. Raises ``msgspec.DecodeError`` (a ``ValueError``)
    if ``data`` is not a complete record of the current format."""
    return _RECORD_DECODER.decode(data)


@dataclass(frozen=True, slots=True)
class SnapshotBlobs:
    """Everything the snapshot writer stores, encoded once.

    ``by_symbol`` maps every record's symbol (all statuses) to :func:`encode_record` bytes;
    ``symbols_json`` is a JSON array of the listed records, in listing order, made of the very
    same bytes. ``version`` is a hex content hash that depends only on ``by_symbol`` and
    ``symbols_json`` (not on upstream row order or fetch time): equal content, equal version.
    """

    by_symbol: dict[str, bytes]
    symbols_json: bytes
    version: str
    count: int
    listed: int


def _json_array(parts: list[bytes]) -> bytes:
    """``[p0,p1,...]`` in one copy: the brackets ride on the first and last element, since
    concatenating around a multi-MB join costs two more full copies of it."""
    if not parts:
        return b"[]"
    if len(parts) == 1:
        return b"[" + parts[0] + b"]"
    return b",".join([b"[" + parts[0], *parts[1:-1], parts[-1] + b"]"])


def build_snapshot(
    records: Iterable[SymbolRecord],
    listed: Iterable[SymbolRecord],
    encoded: Mapping[str, tuple[bytes, bytes]] | None = None,
) -> SnapshotBlobs:
    """Assemble the snapshot blobs from records encoded once.

    ``listed`` is the listing (usually :func:`prioritize` output); its entries are matched to
    ``records`` by symbol, and their bytes reused, never re-encoded. ``encoded`` is
    :attr:`Normalized.encoded` (JSON and digest per symbol); without it each record is
    encoded here. Raises ``ValueError`` if ``records`` has a duplicate symbol or ``listed``
    names a symbol not in ``records``.
    """
    if encoded is None:
        fresh: dict[str, tuple[bytes, bytes]] = {}
        for rec in records:
            if rec.symbol in fresh:
                raise ValueError(f"duplicate symbol in records: {_loggable_name(rec.symbol)}")
            blob = _ENCODER.encode(rec)
            fresh[rec.symbol] = (blob, _digest(blob))
        encoded = fresh
    else:
        # Normalized.encoded holds exactly the records, in order, with unique symbols.
        encoded = {rec.symbol: encoded[rec.symbol] for rec in records}
    by_symbol = {name: pair[0] for name, pair in encoded.items()}

    listed_names = [rec.symbol for rec in listed]
    try:
        symbols_json = _json_array([by_symbol[name] for name in listed_names])
    except KeyError as err:
        raise ValueError(f"listed symbol not in records: {_loggable_name(err.args[0])}") from None

    # The version covers by_symbol (sorted, so upstream row order does not matter) and the
    # listed order; symbols_json is fully determined by those two. Each record enters through
    # its digest, computed once when the row was first seen, so an unchanged payload costs a
    # sort and ~2,000 short updates instead of hashing megabytes again. The JSON header
    # (names, listed names) frames the fixed-size digests unambiguously.
    names = sorted(by_symbol)
    version = hashlib.sha256(_ENCODER.encode((names, listed_names)))
    version.update(b"".join([encoded[name][1] for name in names]))

    return SnapshotBlobs(
        by_symbol=by_symbol,
        symbols_json=symbols_json,
        version=version.hexdigest()[:32],
        count=len(by_symbol),
        listed=len(listed_names),
    )


# ---------------------------------------------------------------------------------------
# Diff
# ---------------------------------------------------------------------------------------

# Record keys whose change counts as a filter change (the derived values and the raw list).
_FILTER_FIELDS: Final = frozenset(
    {
        "tick_size",
        "min_price",
        "max_price",
        "step_size",
        "min_qty",
        "max_qty",
        "market_step_size",
        "market_min_qty",
        "market_max_qty",
        "min_notional",
        "max_notional",
        "filters",
    }
)


@dataclass(frozen=True, slots=True)
class SnapshotDiff:
    """What changed between two snapshots. Every tuple is sorted by symbol."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    status_changed: tuple[tuple[str, str, str], ...] = ()
    """(symbol, old status, new status); an unreadable old value has status ``""``."""
    filters_changed: tuple[str, ...] = ()
    """Symbols whose derived filter values (tick, step, qty, price, notional) or filter list
    changed."""
    other_changed: tuple[str, ...] = ()
    """Symbols where anything else changed (base, quote, permissions, order types,
    market, futures fields...)."""

    @property
    def is_empty(self) -> bool:
        """True when both snapshots hold the same symbols with equal records."""
        return not (
            self.added
            or self.removed
            or self.status_changed
            or self.filters_changed
            or self.other_changed
        )

    def to_builtins(self) -> dict[str, list[str] | list[dict[str, str]]]:
        """Plain JSON-ready dict (lists and strings only), e.g. for a log event."""
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "status_changed": [
                {"symbol": s, "old": old, "new": new} for s, old, new in self.status_changed
            ],
            "filters_changed": list(self.filters_changed),
            "other_changed": list(self.other_changed),
        }


def _as_bytes(value: bytes | SymbolRecord) -> bytes:
    return _ENCODER.encode(value) if isinstance(value, SymbolRecord) else value


def _as_fields(blob: bytes) -> dict[str, Any]:
    # Generic decode (float_hook=str keeps numbers exact) so a record written by an older
    # daemon with another field set still compares, and filter objects compare as JSON
    # values: USD-M sends filter keys in a different order from row to row.
    try:
        fields = _LOOSE_DECODER.decode(blob)
    except msgspec.DecodeError:
        return {}
    return fields if isinstance(fields, dict) else {}


def diff_snapshots(
    old: Mapping[str, bytes | SymbolRecord], new: Mapping[str, bytes | SymbolRecord]
) -> SnapshotDiff:
    """Compare two snapshots keyed by symbol.

    Either side may map symbols to encoded records (``SnapshotBlobs.by_symbol``, or a hash
    read back from Redis, keys decoded to ``str``) or to :class:`SymbolRecord` values. Equal
    bytes are unchanged without decoding; otherwise the two records are compared as JSON
    values, so mere key reordering is not a change. An old value that cannot be decoded is
    treated as an empty record (everything in it changed). Pure.
    """
    added = tuple(sorted(new.keys() - old.keys()))
    removed = tuple(sorted(old.keys() - new.keys()))
    status_changed: list[tuple[str, str, str]] = []
    filters_changed: list[str] = []
    other_changed: list[str] = []

    # Unchanged rows share the very same bytes object (the row memo reuses it): `is` first.
    touched = [
        name
        for name, now in new.items()
        if (prior := old.get(name)) is not None and prior is not now and prior != now
    ]
    for symbol in sorted(touched):
        before_blob, after_blob = _as_bytes(old[symbol]), _as_bytes(new[symbol])
        if before_blob == after_blob:
            continue
        before, after = _as_fields(before_blob), _as_fields(after_blob)
        status_before, status_after = before.get("status"), after.get("status")
        if status_before != status_after:
            status_changed.append(
                (
                    symbol,
                    status_before if isinstance(status_before, str) else "",
                    status_after if isinstance(status_after, str) else "",
                )
            )
        keys = before.keys() | after.keys()
        if any(before.get(k) != after.get(k) for k in keys & _FILTER_FIELDS):
            filters_changed.append(symbol)
        if any(before.get(k) != after.get(k) for k in keys - _FILTER_FIELDS - {"status"}):
            other_changed.append(symbol)

    return SnapshotDiff(
        added=added,
        removed=removed,
        status_changed=tuple(status_changed),
        filters_changed=tuple(filters_changed),
        other_changed=tuple(other_changed),
    )
