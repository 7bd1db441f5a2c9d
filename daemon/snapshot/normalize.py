"""Turn a Binance ``exchangeInfo`` payload into compact, stable per-symbol records.

Everything here is pure: no I/O, no clock, no logging, no global state besides reusable
msgspec encoders/decoders. The same input bytes always give the same output.

Pipeline, as the refresh loop uses it (each step in its own module)::

    result = normalize(body, market="spot")              # raises PayloadError on a bad payload
    listed = prioritize(result.records, list_statuses={"TRADING"},      # snapshot.listing
                        quote_priority=("USDT", "FDUSD"), pinned=("BTCUSDT",))
    blobs = build_snapshot(result.records, listed, result.digests)  # what the writer stores
    changes = diff_snapshots(previous.rows(), blobs.rows())             # snapshot.diff

Payload decoding (typed, with a lenient path for odd rows) is :mod:`daemon.snapshot.payload`;
this module validates rows and builds :class:`~daemon.contract.SymbolRecord` values.
"""

import unicodedata
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Final

import msgspec
from xxhash import xxh3_128_digest

from daemon.contract.ratelimits import RateLimit, request_weight_limit
from daemon.contract.record import MAX_SYMBOL_LENGTH, SymbolRecord, encode_record_into
from daemon.snapshot.payload import (
    EMPTY_LIST,
    WHOLE_BELOW,
    ExchangeInfo,
    Row,
    RowFilter,
    SplitFailed,
    decode_header,
    decode_loose,
    decode_payload,
    decode_row,
    decode_row_filters,
    decode_rows_in_chunks,
    lenient_filters,
    lenient_row,
)

__all__ = [
    "Encoded",
    "Normalized",
    "RowMemo",
    "digest",
    "is_acceptable_symbol",
    "loggable_name",
    "normalize",
]

# Unicode categories refused in a symbol name: controls, format characters (zero-width
# joiners, bidi overrides that make a log line lie), and separators.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


class Encoded:
    """Records and their JSON (:func:`~daemon.contract.record.encode_record`'s bytes), all the
    JSON in one buffer: a few large blocks rather than thousands of small ones, which freed
    between long-lived records would leave the heap in holes it cannot give back."""

    __slots__ = ("ends", "records", "text")

    def __init__(self, records: list[SymbolRecord], text: bytes, ends: "array[int]") -> None:
        self.records = records
        self.text = text
        self.ends = ends
        """Where each record's JSON ends in `text` (the next one starts there)."""

    def items(self) -> Iterator[tuple[SymbolRecord, bytes]]:
        """Each record with its JSON (a copy out of the buffer), in order."""
        text, start = self.text, 0
        for record, end in zip(self.records, self.ends, strict=True):
            yield record, text[start:end]
            start = end


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
    digests: Mapping[str, bytes] = field(default_factory=dict)
    """symbol -> 16-byte digest of the record's JSON (:func:`encode_record`), for every
    record, in record order; :func:`build_snapshot` uses these instead of encoding again. The
    JSON itself is not kept: encoding the same record again gives the same bytes."""
    processed: int = 0
    """Rows decoded in this call (the rest came from the memo unchanged)."""
    rate_limits: tuple[RateLimit, ...] = ()
    """The payload's ``rateLimits`` entries, in upstream order (empty if absent or odd)."""
    same_rows: bool = False
    """Every row has the same bytes, at the same position, as in the memo's previous payload
    (so ``records`` and ``digests`` equal the previous call's); False without a memo."""
    replaced: tuple[SymbolRecord, ...] | None = None
    """When the only difference from the memo's previous result is rows replaced in place,
    each keeping its symbol: the new records of those rows (``records`` is the previous
    result's with them swapped in). None when that is not known (no memo, rows added,
    removed, moved or odd)."""
    json: Encoded | None = None
    """With ``keep_json``: each record derived in this call (not reused from the memo) and its
    JSON, for a writer to send as it is. Never kept in the memo."""


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


def loggable_name(name: str) -> str:
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


class _PermissionMemo:
    """Sorted permission unions by the content of (permissions, permissionSets).

    A payload repeats a handful of distinct lists over thousands of rows; decoding each
    distinct pair once turns ~1M string objects (modern spot) into a few dozen.
    """

    _LIMIT: Final = 4096  # a hostile payload with all-distinct lists cannot grow it forever

    def __init__(self) -> None:
        self._known: dict[tuple[bytes, bytes], tuple[str, ...]] = {}

    def union(self, row: Row) -> tuple[str, ...]:
        # Keyed by digests of the two lists, not copies of them: a modern row's lists are ~7 KB.
        key = (digest(row.permissions), digest(row.permission_sets))
        found = self._known.get(key)
        if found is None:
            found = _permission_union(bytes(row.permissions), bytes(row.permission_sets))
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
            value = decode_loose(blob)
        except msgspec.DecodeError:
            continue
        for entry in value if isinstance(value, list) else ():
            if isinstance(entry, str):
                names.add(entry)
            elif isinstance(entry, list):
                names.update(item for item in entry if isinstance(item, str))
    return tuple(sorted(names))


def _record(
    row: Row,
    filters: list[RowFilter],
    filters_raw: msgspec.Raw,
    market: str,
    permissions: tuple[str, ...],
) -> SymbolRecord:
    price = lot = market_lot = notional = min_notional = None
    for f in filters:
        # First occurrence of each filter type wins; later repeats are ignored here but stay
        # in the passthrough `filters_raw`.
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
        # Its own copy: a Raw decoded from a row points into that row's bytes, which would
        # then stay alive as long as the record (a memo keeps records, not rows).
        filters_raw.copy(),
        row.contract_type,
        row.delivery_date,
        row.onboard_date,
        row.margin_asset,
    )


# Not tracked by the garbage collector, like Encoded: neither can be part of a reference cycle
# (a record refers to nothing that refers back), and a first cycle makes one of each per row;
# tracked objects kept by the thousand set off collections while the rows are built.
class _RowOutcome(msgspec.Struct, frozen=True, gc=False):
    # record is None for a dropped or refused row; refused holds the loggable name then.
    record: SymbolRecord | None
    digest: bytes
    """Of the record's JSON (the JSON itself is not kept)."""
    refused: str | None
    lenient: bool


class RowMemo:
    """What earlier calls learnt about each upstream row, keyed by a digest of its bytes.

    Pass the same memo to successive :func:`normalize` calls of one market: a row whose
    bytes did not change since the previous payload costs a hash and a comparison, and its
    record and the digest of its JSON are reused as they are. After each call the memo holds
    the rows of that payload only, and only their digests (16 bytes each), never the row
    bytes nor the records' JSON: it costs about the record objects' size, not the payload's.
    Not thread-safe (one cycle of a market at a time, in whichever thread runs it).
    """

    def __init__(self) -> None:
        # The previous payload's row digests and what each row became, by position: payloads
        # keep their row order, so comparing row i with row i finds the unchanged ones.
        self.digests: list[bytes] = []
        self.outcomes: list[_RowOutcome] = []
        self.permissions = _PermissionMemo()
        # The previous call's result: a payload whose rows changed in place only is that
        # result with those rows replaced (see _patched).
        self.last: Normalized | None = None
        # Once two payloads in a row had the same rows: the digest of the previous payload's
        # bytes from its first row to its end. A payload whose bytes there are the same has
        # the same rows as `last`; only its header (serverTime, which changes on every reply)
        # is read (see _same_region).
        self.region = b""

    def by_digest(self) -> dict[bytes, _RowOutcome]:
        """The previous rows keyed by content, for a payload whose rows moved."""
        return dict(zip(self.digests, self.outcomes, strict=True))


_DROPPED: Final = _RowOutcome(None, b"", None, False)
_DROPPED_LENIENT: Final = _RowOutcome(None, b"", None, True)


def digest(blob: bytes | bytearray | memoryview | msgspec.Raw) -> bytes:
    """16 bytes naming `blob`'s content (XXH3-128): equal bytes, equal digests; different
    bytes give different digests except by a 2**-128 accident.

    Not collision-resistant against someone who crafts inputs on purpose, and it need not be:
    what is hashed is the upstream reply (whoever can shape it can send any rows outright)
    and JSON stored in Redis (whoever can write there can change any key). sha256 costs
    5-10x more here (3.8 ms against 0.7 ms for the 2,292 rows of the 2023 spot payload, 14
    against 1.3 ms for 17 MB), and every cycle hashes every row."""
    return xxh3_128_digest(blob)


def _process_row(
    row_bytes: msgspec.Raw, market: str, permissions: _PermissionMemo, buffer: bytearray
) -> _RowOutcome:
    """Decode, validate and encode one row (the slow path, for rows the memo has not seen)."""
    try:
        row: Row | None = decode_row(row_bytes)
        strict = True
    except msgspec.DecodeError:
        row, strict = lenient_row(row_bytes), False
    if row is None:
        return _DROPPED_LENIENT
    symbol = row.symbol
    if not symbol:
        return _DROPPED if strict else _DROPPED_LENIENT
    if not is_acceptable_symbol(symbol):
        return _RowOutcome(None, b"", loggable_name(symbol), not strict)
    if not row.status:
        row.status = row.contract_status
    if not (row.status and row.base_asset and row.quote_asset):
        return _DROPPED if strict else _DROPPED_LENIENT

    filters_raw = row.filters
    try:
        filters = decode_row_filters(filters_raw)
    except msgspec.DecodeError:
        strict = False
        filters, is_array = lenient_filters(filters_raw)
        if not is_array:
            filters_raw = EMPTY_LIST
    record = _record(row, filters, filters_raw, market, permissions.union(row))
    # Only the digest of the JSON is kept; the writer encodes the record again when it needs
    # the bytes (the same record encodes to the same bytes). `buffer` is reused row to row.
    encode_record_into(record, buffer)
    return _RowOutcome(record, digest(buffer), None, not strict)


def normalize(
    payload: bytes | bytearray | memoryview,
    *,
    market: str,
    memo: RowMemo | None = None,
    keep_json: bool = False,
) -> Normalized:
    """Decode and validate an exchangeInfo payload into :class:`SymbolRecord` values.

    ``market`` is copied into every record (e.g. ``"spot"``, ``"usdm"``); it does not change
    how rows are read: spot and futures formats are both accepted. ``memo`` (one per market)
    makes rows that did not change since the previous call nearly free; the result is the
    same with or without it. ``keep_json`` hands over the JSON each derived record was encoded
    to (for its digest) in ``Normalized.json``, so that a writer need not encode it again;
    it costs that JSON's size in memory until the caller drops the result.

    Raises :class:`PayloadError` for a payload-level problem (see :func:`decode_payload`).
    Never raises for a bad row: rows are kept, dropped, refused or counted as duplicates as
    documented on :class:`Normalized`. A row with an unexpected type in some field (e.g. a
    JSON number where a decimal string is expected) is re-read leniently: usable values are
    kept (a JSON number as its exact source text), unusable ones become ``None``/empty, and a
    ``filters`` value that is not an array is replaced by ``[]``.

    Meant to run in a worker thread: no single C call covers more than a chunk of a large
    payload (see :func:`~daemon.snapshot.payload.decode_rows_in_chunks` and
    :data:`~daemon.snapshot.payload.WHOLE_BELOW`), so the event loop gets the GIL back between
    chunks and rows.
    """
    memo = memo if memo is not None else RowMemo()
    if isinstance(payload, bytes):
        same = _same_region(payload, memo)
        if same is not None:
            return same
    result: Normalized | None = None
    if isinstance(payload, bytes) and len(payload) >= WHOLE_BELOW:
        try:
            info, chunks = decode_rows_in_chunks(payload)
            result = _normalize(info, chunks, market, memo, keep_json)
        except SplitFailed:
            pass  # not laid out as Binance does: decode it whole (memo untouched so far)
    if result is None:
        info = decode_payload(payload)
        result = _normalize(info, iter((info.symbols,)), market, memo, keep_json)
    memo.region, memo.last = b"", result if result.json is None else replace(result, json=None)
    if result.same_rows and isinstance(payload, bytes):
        _remember_region(payload, result, memo)
    return result


def _same_region(payload: bytes, memo: RowMemo) -> Normalized | None:
    """The memo's last result with this payload's header, when the payload's bytes from its
    first row on are those of the memo's last payload (one hash, no row decoded); else None."""
    last = memo.last
    if not memo.region or last is None:
        return None
    found = decode_header(payload)
    if found is None:
        return None
    info, opened = found
    # Hashed in place through the memoryview (no copy): about 1.3 ms for 17 MB.
    if digest(memoryview(payload)[opened:]) != memo.region:
        return None
    return Normalized(
        records=last.records,
        rows=last.rows,
        dropped=last.dropped,
        refused=last.refused,
        duplicates=last.duplicates,
        lenient=last.lenient,
        server_time=info.server_time,
        weight_limit=request_weight_limit(info.rate_limits),
        digests=last.digests,
        processed=0,
        rate_limits=tuple(info.rate_limits),
        same_rows=True,
    )


def _remember_region(payload: bytes, result: Normalized, memo: RowMemo) -> None:
    """After a payload with the same rows as the one before (the usual cycle): keep the digest
    of its bytes from the first row on, so that the next such payload costs one hash. Only
    when its header alone gives what the whole payload gave (no header key after the rows)."""
    found = decode_header(payload)
    if found is None:
        return
    info, opened = found
    if info.server_time != result.server_time or tuple(info.rate_limits) != result.rate_limits:
        return
    memo.region = digest(memoryview(payload)[opened:])
    memo.last = result


def _normalize(
    info: ExchangeInfo,
    chunks: Iterator[list[msgspec.Raw]],
    market: str,
    memo: RowMemo,
    keep_json: bool = False,
) -> Normalized:
    previous, known = memo.digests, memo.outcomes
    moved: dict[bytes, _RowOutcome] | None = None
    buffer = bytearray()  # each new row's JSON, for its digest
    digests: list[bytes] = []
    outcomes: list[_RowOutcome] = []
    fresh: list[int] = []  # positions of the rows not found at the same position last time
    # With keep_json: each new record, its JSON appended to one buffer, and where that ends.
    made: list[SymbolRecord] = []
    made_text = bytearray()
    made_ends = array("Q")
    processed = 0
    for rows in chunks:
        # The memo keeps 16 bytes per row, never the row. Rows at the same position with the
        # same digest reuse what they gave last time, a chunk at a time; only the others are
        # looked at one by one.
        at = len(digests)
        if at + len(rows) <= len(previous):
            chunk = [digest(raw) for raw in rows]
            before = previous[at : at + len(chunk)]
            digests += chunk
            outcomes += known[at : at + len(chunk)]
            if chunk == before:
                continue
            pairs = enumerate(zip(chunk, before, strict=True))
            changed: Sequence[int] = [j for j, (now, then) in pairs if now != then]
        else:
            # Nothing known at some of these positions (a first cycle: at any). Each row is
            # hashed just before it is decoded, while its bytes are in the CPU's cache.
            changed = range(len(rows))
        for j in changed:
            raw = rows[j]
            i = at + j
            if i < len(digests):
                row_digest = digests[i]
            else:
                row_digest = digest(raw)
                digests.append(row_digest)
                if i < len(previous) and previous[i] == row_digest:
                    outcomes.append(known[i])
                    continue
            if moved is None:
                # A row edited in place needs no index by content; rows that moved (a
                # listing or delisting shifted them) do. Built once, on the first change.
                moved = memo.by_digest()
            found = moved.get(row_digest)
            if found is None:
                found = _process_row(raw, market, memo.permissions, buffer)
                moved[row_digest] = found  # a repeated row in this payload is decoded once
                processed += 1
                if keep_json and found.record is not None:
                    made.append(found.record)  # `buffer` holds this record's JSON
                    made_text += buffer
                    made_ends.append(len(made_text))
            if i < len(outcomes):
                outcomes[i] = found
            else:
                outcomes.append(found)
            fresh.append(i)
        del rows  # this chunk's bytes go now, not when the loop ends
    same_rows = moved is None and len(digests) == len(previous) > 0
    last = memo.last
    memo.digests, memo.outcomes = digests, outcomes
    header = (info, processed, same_rows)
    patched = _patched(last, outcomes, fresh, header) if last is not None else None
    result = patched if patched is not None else _collect(outcomes, header)
    if not made:
        return result
    return replace(result, json=Encoded(made, bytes(made_text), made_ends))


def _patched(
    last: Normalized,
    outcomes: list[_RowOutcome],
    fresh: list[int],
    header: tuple[ExchangeInfo, int, bool],
) -> Normalized | None:
    """The previous result with the rows at positions `fresh` replaced, when that is all that
    changed: every row of both payloads gave a record (none dropped, refused, repeated or
    read leniently), and each fresh row keeps the symbol of the row it replaces. Else None."""
    records = last.records
    if last.rows != len(records) or last.lenient or len(outcomes) != len(records):
        return None
    replaced: list[tuple[int, SymbolRecord, bytes]] = []
    for i in fresh:
        outcome = outcomes[i]
        record = outcome.record
        if record is None or outcome.lenient or record.symbol != records[i].symbol:
            return None
        replaced.append((i, record, outcome.digest))
    digests = last.digests
    if replaced:
        patched = list(records)
        digests = dict(digests)
        for i, record, json_digest in replaced:
            patched[i] = record
            digests[record.symbol] = json_digest
        records = tuple(patched)
    result = _result(records, len(outcomes), 0, (), 0, 0, digests, header)
    return replace(result, replaced=tuple(record for _, record, _ in replaced))


def _collect(outcomes: list[_RowOutcome], header: tuple[ExchangeInfo, int, bool]) -> Normalized:
    """The result of a payload from what each of its rows gave, in order."""
    records: list[SymbolRecord] = []
    json_digests: dict[str, bytes] = {}
    refused: list[str] = []
    dropped = duplicates = lenient = 0
    for outcome in outcomes:
        if outcome.lenient:
            lenient += 1
        record = outcome.record
        if record is None:
            if outcome.refused is not None:
                refused.append(outcome.refused)
            else:
                dropped += 1
            continue
        if record.symbol in json_digests:
            duplicates += 1
            continue
        records.append(record)
        json_digests[record.symbol] = outcome.digest
    return _result(
        tuple(records),
        len(outcomes),
        dropped,
        tuple(refused),
        duplicates,
        lenient,
        json_digests,
        header,
    )


def _result(
    records: tuple[SymbolRecord, ...],
    rows: int,
    dropped: int,
    refused: tuple[str, ...],
    duplicates: int,
    lenient: int,
    digests: Mapping[str, bytes],
    header: tuple[ExchangeInfo, int, bool],
) -> Normalized:
    info, processed, same_rows = header
    return Normalized(
        records=records,
        rows=rows,
        dropped=dropped,
        refused=refused,
        duplicates=duplicates,
        lenient=lenient,
        server_time=info.server_time,
        weight_limit=request_weight_limit(info.rate_limits),
        digests=digests,
        processed=processed,
        rate_limits=tuple(info.rate_limits),
        same_rows=same_rows,
    )
