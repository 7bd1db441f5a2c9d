"""Keep serving the previous row of a symbol whose new row a bot cannot use. Pure, no I/O.

:func:`hold_rows` compares each normalized row with the row served for its symbol, judges
only the ones that differ (:func:`daemon.snapshot.guards.judge_rows`), and puts the served
row back in place of each held one (or leaves the symbol out when nothing was served for it).
The result feeds :func:`daemon.snapshot.listing.prioritize` and ``build_snapshot`` exactly as
``Normalized.records``/``digests`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import msgspec

from daemon.contract.meta import HeldRow
from daemon.contract.record import SymbolRecord, decode_record
from daemon.snapshot.guards import RowVerdicts, judge_rows
from daemon.snapshot.normalize import digest

__all__ = ["Held", "hold_rows"]


@dataclass(frozen=True, slots=True)
class Held:
    """`records` and `digests` with every held row replaced (or dropped); `kept` holds the
    served JSON of each held row that stays (stored as it is, never re-encoded); `verdicts`
    says which rows were held and which suspicious ones were confirmed; `judged` counts the
    rows that differed from the served ones."""

    records: tuple[SymbolRecord, ...]
    digests: Mapping[str, bytes]
    kept: Mapping[str, bytes]
    verdicts: RowVerdicts
    judged: int


def _served_record(blob: bytes | None) -> SymbolRecord | None:
    if blob is None:
        return None
    try:
        return decode_record(blob)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # A stored row we cannot read is no reference: judge the new row as for a new symbol.
        return None


def hold_rows(
    records: tuple[SymbolRecord, ...],
    digests: Mapping[str, bytes],
    served: Mapping[str, bytes],
    served_blob: Callable[[str], bytes | None],
    *,
    streaks: Mapping[str, HeldRow],
    confirm: int,
) -> Held:
    """Judge the rows of `records` whose JSON digest (`digests`) differs from the served one
    (`served`: symbol -> digest of the stored JSON; empty when nothing is served yet) and
    substitute the held ones. `served_blob` gives the served JSON of a symbol (asked only for
    rows that differ).

    Unchanged rows cost one dict lookup and a bytes comparison each; only changed rows are
    decoded and judged.
    """
    judged = 0

    def changed() -> Iterator[tuple[SymbolRecord, str, SymbolRecord | None]]:
        # Made one at a time as they are judged: a first cycle judges every row, and a list
        # of thousands of tuples kept meanwhile sets off garbage collections.
        nonlocal judged
        for rec in records:
            row_digest = digests[rec.symbol]
            old = served.get(rec.symbol)
            if old != row_digest:
                judged += 1
                blob = served_blob(rec.symbol) if old is not None else None
                yield rec, row_digest.hex(), _served_record(blob)

    verdicts = judge_rows(changed(), streaks=streaks, confirm=confirm)
    if not verdicts.held:
        return Held(records, digests, {}, verdicts, judged)
    held = {row.symbol for row in verdicts.held}
    out_records: list[SymbolRecord] = []
    out_digests: dict[str, bytes] = {}
    kept: dict[str, bytes] = {}
    for rec in records:
        if rec.symbol not in held:
            out_records.append(rec)
            out_digests[rec.symbol] = digests[rec.symbol]
            continue
        blob = served_blob(rec.symbol) if rec.symbol in served else None
        previous = _served_record(blob)
        if blob is None or previous is None:
            continue  # nothing usable was served for it: it stays out until confirmed
        out_records.append(previous)
        # The served bytes are stored again as they are (they may come from another daemon
        # version, so the decoded record is not re-encoded).
        out_digests[rec.symbol] = digest(blob)
        kept[rec.symbol] = blob
    return Held(tuple(out_records), out_digests, kept, verdicts, judged)
