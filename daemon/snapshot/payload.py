"""Decoding an exchangeInfo payload: its top level, and its rows typed or leniently.

Pure: no I/O, no clock, no logging, no global state besides reusable msgspec decoders.

Decoding is typed (msgspec Structs) because a full spot payload is several MB and the whole
refresh has a tight CPU budget; a generic ``json.loads`` into dicts costs several times more.
The whole payload is first decoded in one typed pass; only if some row (or the header) has an
unexpected shape is it redone row by row over ``msgspec.Raw`` slices, so one odd row costs
that row, never the refresh. Turning rows into records is :mod:`daemon.snapshot.normalize`.
"""

from collections.abc import Iterator
from typing import Any, Final

import msgspec

from daemon.contract.ratelimits import RateLimit

__all__ = [
    "EMPTY_LIST",
    "ROW_CHUNK_BYTES",
    "WHOLE_BELOW",
    "ExchangeInfo",
    "PayloadError",
    "Row",
    "RowFilter",
    "SplitFailed",
    "decode_header",
    "decode_loose",
    "decode_payload",
    "decode_row",
    "decode_row_filters",
    "decode_rows_in_chunks",
    "lenient_filters",
    "lenient_row",
]

# Shared by every row without a `filters` key, and by rows whose `filters` is not a list:
# the record always carries a JSON array there.
EMPTY_LIST: Final = msgspec.Raw(b"[]")


class PayloadError(ValueError):
    """The payload is not a usable exchangeInfo response (bad JSON, or no `symbols` list).

    Raised only for problems with the payload as a whole; a bad row never raises, it is
    dropped and counted instead.
    """


# ---------------------------------------------------------------------------------------
# Upstream shapes (typed decoding). Only the keys we use are declared; msgspec skips the
# rest without building objects for them, which is where most of the speed comes from.
# ---------------------------------------------------------------------------------------


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


class Row(msgspec.Struct, rename="camel", gc=False):
    """One ``symbols`` entry, typed (only the keys records are built from)."""

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
    # on every row, so they are decoded once per distinct list (see normalize._PermissionMemo).
    permissions: msgspec.Raw = EMPTY_LIST
    permission_sets: msgspec.Raw = EMPTY_LIST
    # Kept raw so the record can re-emit the upstream bytes unchanged.
    filters: msgspec.Raw = EMPTY_LIST
    contract_type: str | None = None
    delivery_date: int | None = None
    onboard_date: int | None = None
    margin_asset: str | None = None


class RowFilter(msgspec.Struct, rename="camel", gc=False):
    """One entry of a row's ``filters``: the values records are derived from."""

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
    # Lenient twin of Row: every field accepts any JSON value and the builder below picks
    # what is usable. Decoded with float_hook=str, so a JSON float keeps its exact text.
    symbol: Any = None
    status: Any = None
    contract_status: Any = None
    base_asset: Any = None
    quote_asset: Any = None
    order_types: Any = None
    permissions: Any = None
    permission_sets: Any = None
    filters: msgspec.Raw = EMPTY_LIST
    contract_type: Any = None
    delivery_date: Any = None
    onboard_date: Any = None
    margin_asset: Any = None


# (attribute on RowFilter, JSON key) for the lenient filter path.
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


_ENCODER: Final = msgspec.json.Encoder()
_INFO_DECODER: Final = msgspec.json.Decoder(ExchangeInfo)
_BARE_DECODER: Final = msgspec.json.Decoder(_BareExchangeInfo)
decode_row: Final = msgspec.json.Decoder(Row).decode
"""Typed decoding of one row; raises ``msgspec.DecodeError`` if any field has another type."""
decode_row_filters: Final = msgspec.json.Decoder(list[RowFilter]).decode
"""Typed decoding of a row's ``filters`` array (the values records are derived from)."""
# float_hook=str: a JSON float reaches us as its exact source text, never as a float.
_LOOSE_ROW_DECODER: Final = msgspec.json.Decoder(_LooseRow, float_hook=str)
decode_loose: Final = msgspec.json.Decoder(Any, float_hook=str).decode
"""Generic decoding where a JSON float stays its exact source text (a ``str``)."""

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


# Rows follow each other as `},{"symbol":"` in every exchangeInfo Binance sends (compact JSON,
# `symbol` first). Only a hint where to cut: every piece is checked by decoding it.
_ROW_SEPARATOR: Final = b'},{"symbol":"'
_SYMBOLS_OPEN: Final = b'"symbols":['
_RAW_LIST_DECODER: Final = msgspec.json.Decoder(list[msgspec.Raw])
ROW_CHUNK_BYTES: Final = 512 * 1024
"""About how many payload bytes one decode call of :func:`decode_rows_in_chunks` covers."""
WHOLE_BELOW: Final = 4 << 20
"""Payloads smaller than this are decoded in one call rather than a chunk at a time. One call
over the 3.6 MB 2023 payload holds the GIL for about 3 ms; splitting it costs more than that
in copies and calls (measured: rows decoded and hashed in ~8 ms whole against ~13 ms
chunked), which a cycle of a small payload would pay every time. Larger payloads (17 MB
modern) are split, so the loop never waits on one long call."""


def decode_header(payload: bytes) -> tuple[ExchangeInfo, int] | None:
    """The header of a payload laid out as Binance lays it out (everything before the rows,
    ``symbols`` the top-level key whose array starts there) and the offset where its rows
    start; None for any other layout. The header's ``symbols`` is empty."""
    start = payload.find(_SYMBOLS_OPEN)
    if start < 0:
        return None
    opened = start + len(_SYMBOLS_OPEN)
    try:
        # Closed right there, the header must be a whole object whose `symbols` is empty: then
        # the `[` opens the top-level symbols array, not a nested one.
        info = _INFO_DECODER.decode(payload[:opened] + b"]}")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return (info, opened) if not info.symbols else None


class SplitFailed(Exception):
    """The payload is not laid out as Binance lays it out: decode it whole instead."""


def decode_rows_in_chunks(
    payload: bytes, chunk_bytes: int = ROW_CHUNK_BYTES
) -> tuple[ExchangeInfo, Iterator[list[msgspec.Raw]]]:
    """The payload's header and its rows, decoded a chunk of about `chunk_bytes` at a time.

    Gives the same header and rows as :func:`decode_payload` (the header's ``symbols`` are
    the last chunk's rows; the iterator yields every chunk's rows in order, that one last),
    but no single decode call covers more than about `chunk_bytes`, so a worker thread that
    runs it lets the event loop take the GIL between chunks (msgspec holds it for one call).
    Each chunk's rows point into a copy of that chunk only, freed with them.

    Raises :class:`SplitFailed`, at once or while iterating, when the payload is not laid
    out as expected (then :func:`decode_payload` on the whole payload is the answer, also
    for a payload that is not valid JSON).
    """
    start = payload.find(_SYMBOLS_OPEN)
    if start < 0 or len(payload) <= chunk_bytes:
        raise SplitFailed
    opened = start + len(_SYMBOLS_OPEN)
    head = payload[:opened]
    # The header with an empty `symbols` closed right there must be a whole JSON object whose
    # `symbols` is empty: then the `[` is the top-level symbols array and not a nested one.
    try:
        bare = _BARE_DECODER.decode(head + b"]}")
    except msgspec.DecodeError:
        raise SplitFailed from None
    if bare.symbols:
        raise SplitFailed
    cuts: list[int] = []  # offsets of the `,` between the last row of a chunk and the next
    at = opened
    while True:
        cut = payload.find(_ROW_SEPARATOR, at + chunk_bytes)
        if cut < 0:
            break
        cuts.append(cut + 1)
        at = cut + 2
    last = cuts[-1] + 1 if cuts else opened
    try:
        # The header with only the last chunk's rows: header fields are read as the whole
        # payload would give them, and the rows there end where the symbols array ends.
        info = decode_payload(head + payload[last:])
    except PayloadError:
        raise SplitFailed from None
    return info, _chunks(payload, opened, cuts, info)


def _chunks(
    payload: bytes, opened: int, cuts: list[int], info: ExchangeInfo
) -> Iterator[list[msgspec.Raw]]:
    view = memoryview(payload)
    begin = opened
    for cut in cuts:
        # "[" + the piece + "]" in one copy, as bytes: rows decoded from bytes point into it
        # (msgspec copies each row out of a mutable buffer such as a bytearray).
        piece = b"".join((b"[", view[begin:cut], b"]"))
        try:
            # Each piece must be a comma-separated run of whole JSON values; together with
            # the header check above, the pieces are exactly the rows of the whole payload.
            yield _RAW_LIST_DECODER.decode(piece)
        except msgspec.DecodeError:
            raise SplitFailed from None
        begin = cut + 1
    yield info.symbols


# ---------------------------------------------------------------------------------------
# Row level, lenient: for rows whose typed decoding failed
# ---------------------------------------------------------------------------------------


def _text_value(value: object) -> str | None:
    # Lenient path: strings (and JSON floats, which float_hook=str turned into their source
    # text) are kept as-is; integers are exact as text; anything else is unusable.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def lenient_filters(raw: msgspec.Raw) -> tuple[list[RowFilter], bool]:
    """Filters from a ``filters`` value that failed typed decoding; flag = it is an array."""
    try:
        items = decode_loose(raw)
    except msgspec.DecodeError:
        return [], False
    if not isinstance(items, list):
        return [], False
    out: list[RowFilter] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        filter_type = item.get("filterType")
        if not isinstance(filter_type, str):
            continue
        values = {attr: _text_value(item.get(key)) for attr, key in _FILTER_KEYS}
        out.append(RowFilter(filter_type=filter_type, **values))
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


def lenient_row(raw: msgspec.Raw) -> Row | None:
    """Rebuild a typed row from whatever is usable in ``raw``; ``None`` if not an object."""
    try:
        loose = _LOOSE_ROW_DECODER.decode(raw)
    except msgspec.DecodeError:
        return None
    return Row(
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
