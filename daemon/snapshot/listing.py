"""What a snapshot lists, and in which order; the blobs the snapshot writer stores.

Pure and deterministic: equal records give equal bytes and an equal version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any, Final, NamedTuple

import msgspec

from daemon.contract.record import (
    SymbolRecord,
    encode_record,
    encode_record_array,
    encode_record_array_spans,
    encode_records,
)
from daemon.snapshot.normalize import Encoded, digest, loggable_name

__all__ = [
    "KeptListing",
    "Patch",
    "SnapshotBlobs",
    "build_snapshot",
    "patch_listing",
    "patched",
    "prioritize",
    "replace_rows",
    "splice_listing",
]

_ENCODER: Final = msgspec.json.Encoder()


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
# Snapshot blobs
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotBlobs:
    """Everything the snapshot writer stores, kept as records and digests, encoded on demand.

    A derived snapshot keeps each record object and the 16-byte digest of its JSON, not the
    JSON: :func:`encode_record` of the very record that gave the digest gives the same bytes
    again (deterministic), so the JSON of a row is made only when it is written (a changed
    row, a full rewrite, a republish). Rows whose JSON did not come from a record here (a held
    row serving the stored bytes, a snapshot read back from Redis) keep their bytes in
    ``kept``, used as they are.

    ``by_symbol`` maps every record's symbol (all statuses) to its JSON; ``symbols_json`` is a
    JSON array of the listed records, in listing order, made of the very same bytes (both
    built on each access: see :meth:`materialize` for both at once). ``version`` is a hex
    content hash that depends only on ``by_symbol`` and ``symbols_json`` (not on upstream row
    order or fetch time): equal content, equal version.
    """

    version: str
    count: int
    listed: int
    digests: Mapping[str, bytes]
    """symbol -> 16-byte digest of its JSON, for every row, in record order."""
    records: Mapping[str, SymbolRecord]
    """symbol -> record, for the rows not in ``kept``."""
    kept: Mapping[str, bytes]
    """symbol -> JSON bytes kept as they are (not re-encoded)."""
    listed_names: tuple[str, ...]
    listing_digest: bytes | None
    """A digest naming ``symbols_json`` (equal digests, equal bytes); None when not known."""
    listing: bytes | None = None
    """``symbols_json`` kept as it is (a snapshot read back from Redis); None: built."""
    names: tuple[str, ...] = ()
    """Every symbol, sorted, as the version hashes them (empty: not known)."""
    header: Any = field(default=None, compare=False, repr=False)
    """The version's hash state after its header (names, listed names), for
    :func:`replace_rows`; None: not known."""

    @classmethod
    def stored(
        cls,
        by_symbol: dict[str, bytes],
        symbols_json: bytes,
        *,
        version: str,
        count: int,
        listed: int,
    ) -> SnapshotBlobs:
        """A snapshot as read back from Redis: every JSON kept as it is."""
        return cls(
            version=version,
            count=count,
            listed=listed,
            digests={name: digest(blob) for name, blob in by_symbol.items()},
            records={},
            kept=by_symbol,
            listed_names=(),
            listing_digest=None,
            listing=symbols_json,
        )

    def blob(self, name: str) -> bytes:
        """The JSON of symbol `name` (KeyError when it is not in the snapshot)."""
        kept = self.kept.get(name)
        return kept if kept is not None else encode_record(self.records[name])

    def rows(self) -> dict[str, bytes | SymbolRecord]:
        """symbol -> record, or its kept JSON: what :func:`~daemon.snapshot.diff.diff_snapshots`
        compares, without encoding every row."""
        if not self.kept:
            return dict(self.records)
        return {name: self.kept.get(name) or self.records[name] for name in self.digests}

    def json_of(self, names: Iterable[str]) -> list[bytes]:
        """The JSON of each of `names`, in order: kept bytes as they are, the rest encoded in
        one pass (:func:`encode_records`)."""
        names = list(names)
        kept, records = self.kept, self.records
        if not kept:
            return encode_records([records[name] for name in names])
        fresh = iter(encode_records([records[name] for name in names if name not in kept]))
        return [kept[name] if name in kept else next(fresh) for name in names]

    def materialize(self) -> tuple[dict[str, bytes], bytes]:
        """``by_symbol`` and ``symbols_json``, each row encoded once (what a whole write
        sends: the listing, and the listed rows cut out of it)."""
        listing, starts = self.symbols_json_spans()
        return self.by_symbol_from(listing, starts), listing

    def symbols_json_spans(self) -> tuple[bytes, list[int] | None]:
        """``symbols_json``, with where each listed record starts in it (see
        :func:`encode_record_array_spans`) unless it is a listing read back from Redis (None):
        for :meth:`by_symbol_from`."""
        if self.listing is not None:
            return self.listing, None
        kept = self.kept
        if not kept or not any(name in kept for name in self.listed_names):
            return encode_record_array_spans([self.records[name] for name in self.listed_names])
        parts = self.json_of(self.listed_names)
        starts: list[int] = []
        at = 1  # after the "["
        for part in parts:
            starts.append(at)
            at += len(part) + 1  # and its "," (or the closing "]")
        return _json_array(parts), starts

    def with_json(self, made: Encoded) -> SnapshotBlobs:
        """This snapshot with the JSON already made for some of its records (e.g.
        ``Normalized.json``) taken as kept bytes, so that writing it encodes none of them
        again; JSON made for a record that is not this snapshot's is ignored. For one write:
        a snapshot held in memory would keep that JSON."""
        records = self.records
        extra: dict[str, bytes] = {}
        for rec, blob in made.items():
            if records.get(rec.symbol) is rec:
                extra.setdefault(rec.symbol, blob)
        if not extra:
            return self
        rest = dict(records)
        for name in extra:
            del rest[name]
        return replace(self, records=rest, kept={**self.kept, **extra})

    def cutter(
        self, listing: bytes, starts: list[int] | None
    ) -> Callable[[Iterable[str]], list[bytes]]:
        """:meth:`json_of`, but each listed row's JSON cut out of `listing` and `starts` (what
        :meth:`symbols_json_spans` gave) rather than encoded again; the others encoded."""
        if starts is None:
            return self.json_of
        ends = [*starts[1:], len(listing)] if starts else []
        spans = dict(zip(self.listed_names, zip(starts, ends, strict=True), strict=True))

        def json_of(names: Iterable[str]) -> list[bytes]:
            names = list(names)
            fresh = iter(self.json_of([name for name in names if name not in spans]))
            out: list[bytes] = []
            for name in names:
                span = spans.get(name)
                out.append(listing[span[0] : span[1] - 1] if span is not None else next(fresh))
            return out

        return json_of

    def by_symbol_from(self, listing: bytes, starts: list[int] | None) -> dict[str, bytes]:
        """``by_symbol``, listed rows cut out of `listing` (see :meth:`cutter`)."""
        return dict(zip(self.digests, self.cutter(listing, starts)(self.digests), strict=True))

    @property
    def by_symbol(self) -> dict[str, bytes]:
        return dict(zip(self.digests, self.json_of(self.digests), strict=True))

    @property
    def symbols_json(self) -> bytes:
        if self.listing is not None:
            return self.listing
        kept, records = self.kept, self.records
        if not kept or not any(name in kept for name in self.listed_names):
            return encode_record_array([records[name] for name in self.listed_names])
        return _json_array(self.json_of(self.listed_names))


@dataclass(frozen=True, slots=True)
class KeptListing:
    """Where each listed row starts in a listing's JSON as last written (see
    :func:`encode_record_array_spans`), named by the snapshot's ``listing_digest``; with the
    JSON itself when it is small enough to keep. What :func:`patch_listing` and
    :func:`splice_listing` start from when a few listed rows change."""

    digest: bytes
    names: tuple[str, ...]
    starts: list[int]
    size: int
    """Length of the listing's JSON."""
    listing: bytes | None = None

    def end(self, i: int) -> int:
        """Where row `i`'s JSON ends (the "," or the closing "]" after it)."""
        return (self.starts[i + 1] if i + 1 < len(self.starts) else self.size) - 1


class Patch(NamedTuple):
    """One listed row replaced in place: its new JSON at `offset`, where the old row (of the
    same length) had JSON of digest `old`."""

    offset: int
    blob: bytes
    old: bytes


def _changed_listed(
    kept: KeptListing, blobs: SnapshotBlobs, previous: SnapshotBlobs
) -> list[int] | None:
    """Positions of the listed rows of `blobs` whose JSON differs from `previous`'s, when
    `kept` is `previous`'s listing and `blobs` lists the same names in the same order; else
    None."""
    names = blobs.listed_names
    if previous.listing_digest is None or kept.digest != previous.listing_digest:
        return None
    if kept.names != names:
        return None
    new, old = blobs.digests, previous.digests
    return [i for i, name in enumerate(names) if new[name] != old.get(name)]


def patch_listing(
    kept: KeptListing, blobs: SnapshotBlobs, previous: SnapshotBlobs
) -> list[Patch] | None:
    """The listing of `blobs` as in-place edits of `previous`'s (`kept`): one :class:`Patch`
    per changed listed row, when every changed row's JSON keeps its length (Binance sends
    decimals at a fixed width, so a changed tick or step size usually does); else None.
    Only the changed rows are encoded."""
    changed = _changed_listed(kept, blobs, previous)
    if changed is None:
        return None
    patches: list[Patch] = []
    for i in changed:
        name = blobs.listed_names[i]
        start = kept.starts[i]
        blob = blobs.blob(name)
        if len(blob) != kept.end(i) - start:
            return None
        patches.append(Patch(start, blob, previous.digests[name]))
    return patches


def splice_listing(
    kept: KeptListing, blobs: SnapshotBlobs, previous: SnapshotBlobs
) -> tuple[bytes, list[int]] | None:
    """``blobs.symbols_json`` and its row starts, made from `kept` (the listing of `previous`,
    with its JSON) by replacing the listed rows whose digest changed; only those rows are
    encoded. None when `kept` has no JSON or :func:`patch_listing`'s conditions on names
    fail: then encode the listing whole."""
    listing = kept.listing
    changed = _changed_listed(kept, blobs, previous) if listing is not None else None
    if listing is None or changed is None:
        return None
    starts = kept.starts
    if not changed:
        return listing, starts
    todo = set(changed)
    pieces: list[bytes] = []
    new_starts: list[int] = []
    at = 0  # where the next unchanged stretch of `listing` begins
    shift = 0  # how far rows move: the length changes of the rows replaced so far
    for i, name in enumerate(blobs.listed_names):
        new_starts.append(starts[i] + shift)
        if i in todo:
            end = kept.end(i)
            blob = blobs.blob(name)
            pieces += (listing[at : starts[i]], blob)
            at = end
            shift += len(blob) - (end - starts[i])
    pieces.append(listing[at:])
    return b"".join(pieces), new_starts


def patched(listing: bytes, patches: Iterable[Patch]) -> bytes:
    """`listing` with `patches` applied (each the length of what it replaces)."""
    out = bytearray(listing)
    for patch in patches:
        out[patch.offset : patch.offset + len(patch.blob)] = patch.blob
    return bytes(out)


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
    digests: Mapping[str, bytes] | None = None,
    kept: Mapping[str, bytes] | None = None,
) -> SnapshotBlobs:
    """Assemble the snapshot from records whose JSON digests are known.

    ``listed`` is the listing (usually :func:`prioritize` output); its entries are matched to
    ``records`` by symbol. ``digests`` is ``Normalized.digests`` (the digest of each record's
    JSON); without it each record is encoded here once for its digest. ``kept`` gives the
    JSON of rows to store as it is (held rows serving the stored bytes), digests included in
    ``digests``. Raises ``ValueError`` if ``records`` has a duplicate symbol or ``listed``
    names a symbol not in ``records``.
    """
    kept = kept or {}
    by_record: dict[str, SymbolRecord] = {}
    fresh: dict[str, bytes] = {}
    for rec in records:
        name = rec.symbol
        if name in fresh:
            raise ValueError(f"duplicate symbol in records: {loggable_name(name)}")
        if digests is not None:
            fresh[name] = digests[name]
        else:
            blob = kept.get(name)
            fresh[name] = digest(blob if blob is not None else encode_record(rec))
        if name not in kept:
            by_record[name] = rec

    listed_names = tuple(rec.symbol for rec in listed)
    try:
        listed_digests = b"".join([fresh[name] for name in listed_names])
    except KeyError as err:
        raise ValueError(f"listed symbol not in records: {loggable_name(err.args[0])}") from None

    # The version covers by_symbol (sorted, so upstream row order does not matter) and the
    # listed order; symbols_json is fully determined by those two. Each record enters through
    # its digest, computed once when the row was first seen, so an unchanged payload costs a
    # sort and ~2,000 short updates instead of hashing megabytes again. The JSON header
    # (names, listed names) frames the fixed-size digests unambiguously.
    names = sorted(fresh)
    header = hashlib.sha256(_ENCODER.encode((names, listed_names)))
    version = header.copy()
    version.update(b"".join([fresh[name] for name in names]))

    return SnapshotBlobs(
        version=version.hexdigest()[:32],
        count=len(fresh),
        listed=len(listed_names),
        digests=fresh,
        records=by_record,
        kept={name: blob for name, blob in kept.items() if name in fresh},
        listed_names=listed_names,
        # The listing's JSON is its records' JSON joined: their digests, in order, name it.
        listing_digest=hashlib.sha256(listed_digests).digest()[:16],
        names=tuple(names),
        header=header,
    )


def replace_rows(
    previous: SnapshotBlobs, records: Iterable[SymbolRecord], digests: Mapping[str, bytes]
) -> SnapshotBlobs | None:
    """What :func:`build_snapshot` gives for `previous`'s records with `records` swapped in
    (``digests`` holds theirs), when each keeps the symbol, status and quote of the record it
    replaces: then neither the symbols nor the listing's order change, and only the version
    and listing digest are computed again. None when that does not hold or `previous` was not
    built by :func:`build_snapshot` (its names and hash header are not known)."""
    if previous.header is None or previous.kept:
        return None
    by_record = dict(previous.records)
    fresh = dict(previous.digests)
    for rec in records:
        old = by_record.get(rec.symbol)
        if old is None or old.status != rec.status or old.quote != rec.quote:
            return None
        by_record[rec.symbol] = rec
        fresh[rec.symbol] = digests[rec.symbol]
    version = previous.header.copy()
    version.update(b"".join([fresh[name] for name in previous.names]))
    listed_digests = b"".join([fresh[name] for name in previous.listed_names])
    return replace(
        previous,
        version=version.hexdigest()[:32],
        digests=fresh,
        records=by_record,
        listing_digest=hashlib.sha256(listed_digests).digest()[:16],
    )
