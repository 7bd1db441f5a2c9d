"""Trusting what Redis holds: is a fetched payload row for row the one the stored snapshot came
from? Pure, no I/O; runs in the refresh worker thread.

The store keeps, with each snapshot, the digests of the upstream rows it was derived from
(``meta:rows``, :mod:`daemon.contract.rows`). A refresher that has derived nothing yet (a
restart) compares the rows it fetched with them: when every row has the same bytes at the same
position, under the same derivation :func:`fingerprint`, deriving them again would give the
snapshot Redis already holds, so it is not done (:func:`match_rows`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Final

import msgspec

from daemon import __version__
from daemon.contract.meta import FORMAT
from daemon.contract.ratelimits import RateLimit, request_weight_limit
from daemon.contract.record import SymbolRecord
from daemon.contract.rows import DIGEST_BYTES
from daemon.snapshot.normalize import digest
from daemon.snapshot.payload import (
    WHOLE_BELOW,
    ExchangeInfo,
    PayloadError,
    SplitFailed,
    decode_header,
    decode_payload,
    decode_rows_in_chunks,
)

__all__ = ["DERIVATION", "Matched", "fingerprint", "match_rows"]

DERIVATION: Final = 2
"""Bump when the same upstream rows would derive different records, listing or version (a
change in normalize, listing or the record's encoding): stored row digests written under
another number are then not trusted. The package version and the record's fields are in the
fingerprint too, so a release that forgets it still derives every row once after an upgrade.
2: row and record digests are XXH3-128 (were sha256, truncated), so versions differ too."""


def fingerprint(
    market: str,
    *,
    list_statuses: Sequence[str],
    quote_priority: Sequence[str],
    pinned: Sequence[str],
) -> bytes:
    """16 bytes naming everything besides the rows that decides what a payload derives to:
    the market (copied into records), the listing settings, the stored format and the code."""
    what = (
        DERIVATION,
        FORMAT,
        __version__,
        SymbolRecord.__struct_fields__,
        market,
        sorted(set(list_statuses)),
        list(quote_priority),
        list(pinned),
    )
    return hashlib.sha256(msgspec.json.encode(what)).digest()[:DIGEST_BYTES]


class Matched(msgspec.Struct, frozen=True):
    """A payload whose rows all match: what its header says (the rows are not needed)."""

    rows: int
    server_time: int | None
    rate_limits: tuple[RateLimit, ...]
    weight_limit: int | None
    region: bytes = b""
    """The digest of the payload's bytes from its first row on, when its header alone gives
    what the whole payload gives (Binance's layout); b"" otherwise. The next payload with the
    same such bytes has the same rows: pass it to :func:`match_rows` as `region`."""


def match_rows(payload: bytes, digests: bytes, region: bytes = b"") -> Matched | None:
    """The payload's header when its rows have exactly `digests` (16 bytes per row, in order),
    None at the first row that differs (or a payload that must be decoded whole and is not
    valid: the full path reports that). Costs a hash per row and no row decoding; one hash
    when `region` (a previous match's) names the payload's bytes from its first row on."""
    found = decode_header(payload)
    if region and found is not None:
        head, opened = found
        if digest(memoryview(payload)[opened:]) == region:
            return _matched(len(digests) // DIGEST_BYTES, head, region)
    split = _split(payload) if len(payload) >= WHOLE_BELOW else None
    if split is None:  # small (one decode call is cheaper, see WHOLE_BELOW) or not splittable
        try:
            info = decode_payload(payload)
        except PayloadError:
            return None
        split = info, iter((info.symbols,))
    info, chunks = split
    expected = memoryview(digests)
    count = len(digests) // DIGEST_BYTES
    i = _compare(chunks, expected, count)
    if i != count:
        return None
    seen = b""
    if found is not None:
        head, opened = found
        # Remembered only when the header alone says what the whole payload said.
        if (head.server_time, head.rate_limits) == (info.server_time, info.rate_limits):
            seen = digest(memoryview(payload)[opened:])
    return _matched(count, info, seen)


def _matched(rows: int, info: ExchangeInfo, region: bytes) -> Matched:
    return Matched(
        rows=rows,
        server_time=info.server_time,
        rate_limits=tuple(info.rate_limits),
        weight_limit=request_weight_limit(info.rate_limits),
        region=region,
    )


def _split(payload: bytes) -> tuple[ExchangeInfo, Iterator[list[msgspec.Raw]]] | None:
    try:
        return decode_rows_in_chunks(payload)
    except SplitFailed:
        return None


def _compare(chunks: Iterator[list[msgspec.Raw]], expected: memoryview, count: int) -> int:
    """How many rows matched; -1 at the first mismatch or a row too many."""
    i = 0
    try:
        for rows in chunks:
            for raw in rows:
                if i >= count:
                    return -1
                at = i * DIGEST_BYTES
                if digest(raw) != expected[at : at + DIGEST_BYTES]:
                    return -1
                i += 1
            del rows  # this chunk's bytes go now
    except SplitFailed:
        return -1  # not laid out as expected after all: the full path decodes it whole
    return i
