"""What Redis holds for one market, as a cycle sees it before it starts, and the small types
the store and the refresh cycle share (the held snapshot, the corruption error, tokens).

:func:`read_state` is one non-transactional round trip; everything else here is pure.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
from redis.exceptions import ResponseError

from daemon.contract.keys import MarketKeys
from daemon.contract.meta import HeldRow, MetaFields, SnapshotMeta, decode_timestamp
from daemon.contract.rows import RowDigests, decode_row_digests
from daemon.snapshot.guards import ShrinkStreak
from daemon.snapshot.listing import SnapshotBlobs

__all__ = [
    "HeldSnapshot",
    "SnapshotCorrupt",
    "StoredState",
    "evicts",
    "is_wrongtype",
    "new_token",
    "read_state",
]


@dataclass(frozen=True, slots=True)
class StoredState:
    """What Redis holds for a market, read in one round trip before a cycle."""

    version: str | None
    listed: int | None
    streak: ShrinkStreak
    has_symbols: bool
    has_last_good: bool
    has_by_symbol: bool
    ban_until: float | None
    server_time: int | None = None
    # Keys holding a type the store never writes: key name -> the type found.
    wrong_types: Mapping[str, str] = field(default_factory=dict)
    # A previous cycle found wrong-type keys and asked for a full rewrite (see mark_corrupt).
    repair_requested: bool = False
    # Rows the last commit held back (kept serving the previous row), with their streaks.
    held_rows: tuple[HeldRow, ...] = ()
    count: int | None = None
    # The stored digests of the upstream rows the snapshot came from (meta:rows), when they
    # were asked for and are readable; see daemon.snapshot.trust.
    rows: RowDigests | None = None

    @property
    def complete(self) -> bool:
        return self.has_symbols and self.has_last_good and self.has_by_symbol


# The meta fields a cycle needs before it starts (see read_state).
_STATE_FIELDS = (
    "version",
    "listed",
    "count",
    "shrink_version",
    "shrink_count",
    "server_time",
    "held_rows",
)


class SnapshotCorrupt(Exception):
    """A snapshot key holds a type the store never writes (e.g. ``by_symbol`` is a list).

    Nothing was written. ``keys`` names each such key with what it holds. Not a Redis error:
    Redis is reachable and answered; its data is wrong. :meth:`SnapshotStore.commit` with
    ``repair=True`` replaces those keys.
    """

    def __init__(self, keys: Mapping[str, str]) -> None:
        self.keys = dict(keys)
        shown = ", ".join(f"{name} is a {kind}" for name, kind in sorted(self.keys.items()))
        super().__init__(f"snapshot keys of the wrong type: {shown}")


def is_wrongtype(exc: BaseException) -> bool:
    # A pipeline wraps it: "Command # 1 (HMGET ...) of pipeline caused error: (WRONGTYPE ...".
    return isinstance(exc, ResponseError) and "WRONGTYPE" in str(exc)


def evicts(policy: str) -> bool:
    """Whether Redis may evict snapshot keys under ``maxmemory-policy`` `policy`: every
    ``allkeys-*`` policy, and every ``volatile-*`` one (``symbols`` has a TTL)."""
    return policy.startswith(("allkeys-", "volatile-"))


def new_token() -> str:
    """A one-time token for an event to be counted (create it before the first attempt)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class HeldSnapshot:
    """The last accepted snapshot, kept in memory to republish if Redis loses it.

    ``blobs`` is None when this process trusted what Redis held instead of deriving it (a
    restart that fetched the stored snapshot's very rows): then only its meta is known here,
    and a republish falls back to ``last_good``."""

    blobs: SnapshotBlobs | None
    meta: SnapshotMeta


async def read_state(
    client: redis.asyncio.Redis,
    keys: MarketKeys,
    expected: Mapping[str, str],
    repair_key: str,
    rows_key: str | None = None,
) -> StoredState:
    """One non-transactional round trip: meta fields, key existence and types, the ban
    deadline, a pending repair, and with `rows_key` the stored row digests. A key of the
    wrong type does not make it fail: it is reported in ``wrong_types`` (and reads as
    absent)."""
    k = keys
    try:
        replies = await _state_replies(client, keys, expected, repair_key, set(), rows_key)
    except ResponseError as exc:
        if not is_wrongtype(exc):
            raise
        # Rare: learn which keys are of the wrong type, then read around them. (Errors
        # are not returned in place: a cluster pipeline retries a moved or failed node
        # only when it may raise.)
        names = [*expected, k.ban_until]
        kinds = await _types(client, names)
        skip = {
            name
            for name, kind in zip(names, kinds, strict=True)
            if kind not in ("none", expected.get(name, "string"))
        }
        replies = await _state_replies(client, keys, expected, repair_key, skip, rows_key)
    values, has_sym, has_lg, has_bs, ban, repair, rows = replies[:7]
    wrong: dict[str, str] = {}
    for (name, want), kind in zip(expected.items(), replies[7:], strict=True):
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in ("none", want):
            wrong[name] = kind
    meta = MetaFields.from_hash(dict(zip(_STATE_FIELDS, values, strict=True)))
    return StoredState(
        version=meta.version,
        listed=meta.listed,
        streak=ShrinkStreak(version=meta.shrink_version, count=meta.shrink_count),
        has_symbols=bool(has_sym) and k.symbols not in wrong,
        has_last_good=bool(has_lg) and k.last_good not in wrong,
        has_by_symbol=bool(has_bs) and k.by_symbol not in wrong,
        ban_until=decode_timestamp(ban),
        server_time=meta.server_time,
        held_rows=meta.held_rows,
        wrong_types=wrong,
        repair_requested=bool(repair),
        count=meta.count,
        rows=decode_row_digests(rows) if rows_key is not None and rows_key not in wrong else None,
    )


async def _state_replies(
    client: redis.asyncio.Redis,
    keys: MarketKeys,
    expected: Mapping[str, str],
    repair_key: str,
    skip: set[str],
    rows_key: str | None,
) -> list[Any]:
    k = keys
    pipe = client.pipeline(transaction=False)
    # A reply not asked for (a key of the wrong type, the row digests when not wanted) is
    # not queued at all and reads as None: no placeholder command (a cluster pipeline
    # refuses keyless commands such as ECHO).
    meta = k.meta not in skip
    ban = k.ban_until not in skip
    rows = rows_key is not None and rows_key not in skip
    if meta:
        pipe.hmget(k.meta, _STATE_FIELDS)
    pipe.exists(k.symbols)
    pipe.exists(k.last_good)
    pipe.exists(k.by_symbol)
    if ban:
        pipe.get(k.ban_until)
    pipe.exists(repair_key)
    if rows and rows_key is not None:
        pipe.get(rows_key)
    for name in expected:
        pipe.type(name)
    got = iter(await pipe.execute())
    replies: list[Any] = [
        next(got) if meta else [None] * len(_STATE_FIELDS),
        next(got),
        next(got),
        next(got),
        next(got) if ban else None,
        next(got),
        next(got) if rows else None,
    ]
    replies.extend(got)
    return replies


async def _types(client: redis.asyncio.Redis, names: list[str]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.type(name)
    return [t.decode() if isinstance(t, bytes) else str(t) for t in await pipe.execute()]
