"""What changed between two snapshots, symbol by symbol. Pure."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from daemon.contract.record import DECIMAL_FIELDS, SymbolRecord, encode_record
from daemon.snapshot.payload import decode_loose

__all__ = ["SnapshotDiff", "diff_snapshots"]

# Record keys whose change counts as a filter change (the derived values and the raw list).
_FILTER_FIELDS: Final = frozenset({*DECIMAL_FIELDS, "filters"})


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
    return encode_record(value) if isinstance(value, SymbolRecord) else value


def _as_fields(blob: bytes) -> dict[str, Any]:
    # Generic decode (float_hook=str keeps numbers exact) so a record written by an older
    # daemon with another field set still compares, and filter objects compare as JSON
    # values: USD-M sends filter keys in a different order from row to row.
    try:
        fields = decode_loose(blob)
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
