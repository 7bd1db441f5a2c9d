"""Staging a whole ``by_symbol`` hash before the transaction that renames it into place.

Why: redis-py packs each command in one pure-Python call, and one HSET of every record
(thousands of fields, MBs) would hold the event loop for tens of ms. :func:`stage` writes the
hash under a fresh key a batch of fields per round trip, so the loop runs in between; the
store's fenced transaction then WATCHes that key, checks it exists and RENAMEs it over
``by_symbol`` (:class:`StagingLost` when it vanished: the write is refused whole, as if a
watched key had changed). Readers never see a staging key; it expires on its own should the
process die before the rename.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import redis.asyncio
from redis.exceptions import RedisError, WatchError

__all__ = [
    "BATCH",
    "STAGE_ABOVE",
    "TTL_MS",
    "StagingLost",
    "drop",
    "stage",
    "stage_encoded",
    "staging_name",
]

BATCH: Final = 200
"""Fields per HSET: small enough that packing one batch is a short step for the loop."""
STAGE_ABOVE: Final = 8 << 20
"""Bytes of records above which a whole by_symbol is staged. Below it, packing the one HSET
inside the transaction is a few ms for the loop (2,292 records of the 2023 spot payload, 5 MB:
about 3 ms), cheaper than the extra round trips; above it (a modern 17 MB payload gives 18 MB
of records) staging keeps the loop free."""
TTL_MS: Final = 600_000
"""A staging key outlives any transaction by far, and still goes away on its own."""


class StagingLost(WatchError):
    """The staging hash vanished before the transaction (expired, deleted)."""


def staging_name(by_symbol_key: str) -> str | None:
    """A fresh staging key in the same cluster slot as `by_symbol_key` (None when that key
    names no hash tag, so no other name is sure to share its slot)."""
    opened = by_symbol_key.find("{")
    closed = by_symbol_key.find("}", opened + 1)
    if opened < 0 or closed <= opened + 1:
        return None
    return f"{by_symbol_key}:staging:{uuid.uuid4().hex}"


async def stage(
    client: redis.asyncio.Redis, by_symbol_key: str, by_symbol: Mapping[str, bytes]
) -> str | None:
    """Write `by_symbol` under a fresh staging key, :data:`BATCH` fields per round trip, and
    return its name; None (the transaction then writes the hash itself) when there is
    nothing to stage or no staging name shares the slot of `by_symbol_key`."""
    name = staging_name(by_symbol_key)
    if name is None or not by_symbol:
        return None
    items = list(by_symbol.items())
    for start in range(0, len(items), BATCH):
        batch: Any = dict(items[start : start + BATCH])  # redis-py's invariant Mapping type
        pipe = client.pipeline(transaction=False)
        pipe.hset(name, mapping=batch)
        pipe.pexpire(name, TTL_MS)
        await pipe.execute()
    return name


async def stage_encoded(
    client: redis.asyncio.Redis,
    by_symbol_key: str,
    names: Sequence[str],
    encode: Callable[[Sequence[str]], list[bytes]],
) -> str | None:
    """Like :func:`stage`, for records not encoded yet: `encode` gives the JSON of a batch
    of `names` just before it is sent, so the whole hash is never in memory at once (a
    batch of 200 records at 17 MB: about 1.5 MB, a millisecond or two of encoding)."""
    name = staging_name(by_symbol_key)
    if name is None or not names:
        return None
    for start in range(0, len(names), BATCH):
        part = names[start : start + BATCH]
        batch: Any = dict(zip(part, encode(part), strict=True))
        pipe = client.pipeline(transaction=False)
        pipe.hset(name, mapping=batch)
        pipe.pexpire(name, TTL_MS)
        await pipe.execute()
        del batch
    return name


async def drop(client: redis.asyncio.Redis, name: str) -> None:
    """Delete a staging key left over by a refused or failed transaction (after a successful
    one it is gone already). Best effort: it expires anyway."""
    with contextlib.suppress(RedisError):
        await client.delete(name)
