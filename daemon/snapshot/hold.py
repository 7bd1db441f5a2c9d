"""Keep serving the previous row of a symbol whose new row a bot cannot use. Pure, no I/O.

:func:`hold_rows` compares each normalized row with the row served for its symbol, judges
only the ones that differ (:func:`daemon.snapshot.guards.judge_rows`), and puts the served
row back in place of each held one (or leaves the symbol out when nothing was served for it).
The result feeds :func:`daemon.snapshot.listing.prioritize` and ``build_snapshot`` exactly as
``Normalized.records``/``encoded`` would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from daemon.contract.meta import HeldRow
from daemon.contract.record import SymbolRecord, decode_record
from daemon.snapshot.guards import RowVerdicts, judge_rows
from daemon.snapshot.normalize import digest

__all__ = ["Held", "hold_rows"]


@dataclass(frozen=True, slots=True)
class Held:
    """`records` and `encoded` with every held row replaced (or dropped); `verdicts` says
    which rows were held and which suspicious ones were confirmed; `judged` counts the rows
    that differed from the served ones."""

    records: tuple[SymbolRecord, ...]
    encoded: Mapping[str, tuple[bytes, bytes]]
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
    encoded: Mapping[str, tuple[bytes, bytes]],
    served: Mapping[str, bytes],
    *,
    streaks: Mapping[str, HeldRow],
    confirm: int,
) -> Held:
    """Judge the rows of `records` whose bytes differ from `served` (symbol -> stored record
    JSON; empty when nothing is served yet) and substitute the held ones.

    Unchanged rows cost one dict lookup and a bytes comparison each; only changed rows are
    decoded and judged.
    """
    changed: list[tuple[SymbolRecord, str, SymbolRecord | None]] = []
    for rec in records:
        blob, row_digest = encoded[rec.symbol]
        old = served.get(rec.symbol)
        if old != blob:
            changed.append((rec, row_digest.hex(), _served_record(old)))
    verdicts = judge_rows(changed, streaks=streaks, confirm=confirm)
    if not verdicts.held:
        return Held(records, encoded, verdicts, len(changed))
    held = {row.symbol for row in verdicts.held}
    out_records: list[SymbolRecord] = []
    out_encoded: dict[str, tuple[bytes, bytes]] = {}
    for rec in records:
        if rec.symbol not in held:
            out_records.append(rec)
            out_encoded[rec.symbol] = encoded[rec.symbol]
            continue
        old = served.get(rec.symbol)
        previous = _served_record(old)
        if old is None or previous is None:
            continue  # nothing usable was served for it: it stays out until confirmed
        out_records.append(previous)
        out_encoded[rec.symbol] = (old, digest(old))
    return Held(tuple(out_records), out_encoded, verdicts, len(changed))
