"""The ``meta`` hash written with each snapshot, and the only code that reads or writes it.

Two views of one hash:

* :class:`SnapshotMeta`: the meta of one accepted snapshot, complete. The writer builds it,
  :meth:`SnapshotMeta.to_hash` gives the hash fields, :meth:`SnapshotMeta.from_hash` reads
  one back (a follower taking over from the leader).
* :class:`MetaFields`: whatever the hash holds, field by field, for status displays and
  readers; it may hold no snapshot at all (a first refresh that failed records only
  ``stale`` and ``last_error``), or come from an older daemon with fewer fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import msgspec

from daemon.contract.ratelimits import RateLimit, decode_rate_limits, encode_rate_limits

__all__ = [
    "FORMAT",
    "HeldRow",
    "MetaError",
    "MetaFields",
    "RawHash",
    "SnapshotMeta",
    "decode_timestamp",
    "encode_timestamp",
]

FORMAT: Final = 1
"""Version of the stored data format (records, listings, meta). Additive changes keep it; see
the README ("Redis data contract") for what a breaking change does."""

RawHash = Mapping[str, bytes | str | None] | Mapping[bytes, bytes | str | None]
"""A meta hash as a Redis client returns it: keys and values as ``bytes`` (or ``str`` on a
decoding client); ``None`` values (an HMGET of an absent field) count as absent."""


def encode_timestamp(epoch: float) -> str:
    """Epoch seconds as stored in ``refreshed_at``, ``ban_until`` and meta's ``fetched_at``:
    decimal text with milliseconds (``"1700000000.123"``), which is also a JSON number."""
    return f"{epoch:.3f}"


def decode_timestamp(raw: bytes | str | None) -> float | None:
    """Inverse of :func:`encode_timestamp`; ``None`` when absent, empty or unreadable."""
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


class HeldRow(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One symbol whose new upstream row was held back: the previous good row (if any) is
    still served for it. ``reason`` says what is wrong with the new row; ``digest`` (hex)
    identifies the new row's content and ``seen`` counts the consecutive payloads that sent
    exactly that content (a suspicious row is accepted once ``seen`` reaches the guard's
    confirmation count; an invalid one never is)."""

    symbol: str
    reason: str
    digest: str = ""
    seen: int = 1
    invalid: bool = False


_encode_held = msgspec.json.Encoder().encode
_decode_held = msgspec.json.Decoder(tuple[HeldRow, ...]).decode


def encode_held_rows(rows: tuple[HeldRow, ...]) -> str:
    """Meta's ``held_rows`` field: a JSON array of :class:`HeldRow` objects."""
    return _encode_held(rows).decode()


class MetaError(ValueError):
    """The meta hash does not describe a complete snapshot (no version, or a required number
    that does not parse)."""


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """The meta of one accepted snapshot.

    ``rate_limits`` is the market's ``rateLimits`` as announced with this snapshot (empty when
    upstream sent none or an unreadable one). ``writer`` names the daemon that wrote it (its
    lease token ``host:pid:id``, or ``host:pid`` without leases).
    """

    version: str
    count: int
    listed: int
    source: str
    server_time: int | None
    fetched_at: float
    duration_ms: float
    stale: bool = False
    last_error: str = ""
    writer: str = ""
    rate_limits: tuple[RateLimit, ...] = ()
    format: int = FORMAT
    held_rows: tuple[HeldRow, ...] = ()

    def to_hash(self) -> dict[str, str]:
        """The hash fields, every one of them, as strings (a new dict on every call)."""
        return {
            "version": self.version,
            "count": str(self.count),
            "listed": str(self.listed),
            "source": self.source,
            "server_time": "" if self.server_time is None else str(self.server_time),
            "fetched_at": encode_timestamp(self.fetched_at),
            "duration_ms": f"{self.duration_ms:.1f}",
            "stale": "1" if self.stale else "0",
            "last_error": self.last_error,
            "writer": self.writer,
            "rate_limits": encode_rate_limits(self.rate_limits).decode(),
            "format": str(self.format),
            "held_rows": encode_held_rows(self.held_rows),
        }

    @classmethod
    def from_hash(cls, raw: RawHash) -> SnapshotMeta:
        """Read a hash written by :meth:`to_hash` (or by an older daemon: fields it lacks take
        their defaults, absent numbers 0). Raises :class:`MetaError` without a version or when
        ``count``, ``listed``, ``fetched_at`` or ``duration_ms`` is present but unreadable."""
        return MetaFields.from_hash(raw).snapshot_meta()


_REQUIRED_NUMBERS: Final = frozenset({"count", "listed", "fetched_at", "duration_ms"})


@dataclass(frozen=True, slots=True)
class MetaFields:
    """A meta hash as read back, field by field.

    Strings are ``None`` only when the field is absent (an empty value stays ``""``, except
    ``version``, where empty means none). Numbers are ``None`` when absent, empty or
    unreadable; ``unreadable`` names the fields that were present but did not parse. Bytes
    that are not UTF-8 are replaced, never raised on. ``format`` is 1 for a hash written
    before the field existed.
    """

    version: str | None = None
    count: int | None = None
    listed: int | None = None
    source: str | None = None
    server_time: int | None = None
    fetched_at: float | None = None
    duration_ms: float | None = None
    stale: bool = False
    last_error: str | None = None
    writer: str | None = None
    rate_limits: tuple[RateLimit, ...] = ()
    format: int = FORMAT
    shrink_version: str = ""
    """The shrink guard's pending version (daemon bookkeeping, not snapshot data)."""
    shrink_count: int = 0
    """How many cycles in a row saw that shrink."""
    held_rows: tuple[HeldRow, ...] = ()
    """Symbols whose new row is held back (the previous row is served): ``held_rows``, a JSON
    array of objects with ``symbol``, ``reason``, ``seen``; empty when absent."""
    unreadable: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_hash(cls, raw: RawHash) -> MetaFields:
        """Parse whatever ``raw`` holds. Never raises for odd values; see the class doc."""
        text: dict[str, str] = {}
        for key, value in raw.items():
            if value is None:
                continue
            name = key.decode(errors="replace") if isinstance(key, bytes) else key
            text[name] = value.decode(errors="replace") if isinstance(value, bytes) else value
        bad: set[str] = set()

        def number(name: str, kind: type[int] | type[float]) -> int | float | None:
            value = text.get(name)
            if not value:
                return None
            try:
                return kind(value)
            except ValueError:
                bad.add(name)
                return None

        rate_limits: tuple[RateLimit, ...] = ()
        if text.get("rate_limits"):
            try:
                rate_limits = decode_rate_limits(text["rate_limits"])
            except msgspec.DecodeError:
                bad.add("rate_limits")
        held_rows: tuple[HeldRow, ...] = ()
        if text.get("held_rows"):
            try:
                held_rows = _decode_held(text["held_rows"])
            except msgspec.DecodeError:
                bad.add("held_rows")
        count, listed = number("count", int), number("listed", int)
        server_time, shrink_count = number("server_time", int), number("shrink_count", int)
        fmt = number("format", int)
        return cls(
            version=text.get("version") or None,
            count=None if count is None else int(count),
            listed=None if listed is None else int(listed),
            source=text.get("source"),
            server_time=None if server_time is None else int(server_time),
            fetched_at=number("fetched_at", float),
            duration_ms=number("duration_ms", float),
            stale=text.get("stale") == "1",
            last_error=text.get("last_error"),
            writer=text.get("writer"),
            rate_limits=rate_limits,
            format=FORMAT if fmt is None else int(fmt),
            shrink_version=text.get("shrink_version", ""),
            shrink_count=0 if shrink_count is None else int(shrink_count),
            held_rows=held_rows,
            unreadable=frozenset(bad),
        )

    def snapshot_meta(self) -> SnapshotMeta:
        """The snapshot these fields describe; raises :class:`MetaError` as
        :meth:`SnapshotMeta.from_hash` documents."""
        if self.version is None:
            raise MetaError("meta holds no snapshot version")
        bad = sorted(self.unreadable & _REQUIRED_NUMBERS)
        if bad:
            raise MetaError(f"meta fields do not parse: {', '.join(bad)}")
        return SnapshotMeta(
            version=self.version,
            count=self.count or 0,
            listed=self.listed or 0,
            source=self.source or "",
            server_time=self.server_time,
            fetched_at=self.fetched_at or 0.0,
            duration_ms=self.duration_ms or 0.0,
            stale=self.stale,
            last_error=self.last_error or "",
            writer=self.writer or "",
            rate_limits=self.rate_limits,
            format=self.format,
            held_rows=self.held_rows,
        )
