"""The snapshot store: how one market's snapshot lives in Redis.

What a reader may rely on:

- A snapshot is written in one MULTI/EXEC: ``symbols``, ``last_good``, ``refreshed_at``,
  ``by_symbol`` and ``meta`` change together; a reader sees the old snapshot or the new one,
  never a mix (all keys share the ``{market}`` hash tag, so this also holds on a cluster).
- ``symbols`` expires after ``cache_ttl``; ``last_good`` never expires; both hold the same JSON
  array of the listed records; ``by_symbol`` holds every record (all statuses).
- Counters in ``metrics`` are exact: each event is counted by a tiny script guarded by a
  one-time token, so a transaction that redis-py retries after a timeout cannot count twice.
  The tokens live in one capped sorted set per market (``<metrics>:once``, the newest
  :data:`ONCE_KEEP` tokens), not in a key per event.
- Every write is all or nothing, also when a key holds the wrong type: the keys are WATCHed
  and their types checked before MULTI, so a wrong-type key aborts the write before anything
  is applied (:class:`SnapshotCorrupt`) and a type change after the check aborts EXEC.
  :meth:`SnapshotStore.commit` with ``repair=True`` deletes the wrong-type keys and rewrites
  the snapshot whole.
- A change is appended to the ``changes`` stream and published on ``events`` only when the
  content changed; entries carry the ``version`` so a consumer can drop a duplicate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple, TypeVar

import msgspec
import redis.asyncio
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from daemon.contract.keys import MarketKeys
from daemon.contract.meta import (
    MetaError,
    SnapshotMeta,
    decode_timestamp,
    encode_timestamp,
)
from daemon.contract.ratelimits import MAX_BAN_SECONDS
from daemon.snapshot.diff import SnapshotDiff
from daemon.snapshot.guards import ShrinkStreak
from daemon.snapshot.lease import Fence, LeaseLost
from daemon.snapshot.listing import (
    KeptListing,
    Patch,
    SnapshotBlobs,
    patch_listing,
    patched,
    splice_listing,
)
from daemon.snapshot.normalize import digest
from daemon.snapshot.staging import (
    STAGE_ABOVE,
    StagingLost,
    drop,
    stage,
    stage_encoded,
    staging_name,
)
from daemon.snapshot.state import (
    HeldSnapshot,
    SnapshotCorrupt,
    StoredState,
    evicts,
    new_token,
    read_state,
)

# The shared types live in daemon.snapshot.state; they stay importable from here.
__all__ = [
    "MAX_BAN",
    "ONCE_KEEP",
    "HeldSnapshot",
    "SnapshotCorrupt",
    "SnapshotStore",
    "StoredState",
    "evicts",
    "new_token",
]

# Count one event exactly once: the token is in the set only if this event was counted already.
# The set keeps the newest ONCE_KEEP tokens: a retried transaction is re-sent within seconds,
# so a token only has to outlive that, and the set stays small whatever the interval.
_COUNT_ONCE = """
if redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[4]) == 1 then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -1 - tonumber(ARGV[5]))
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[6])
end
return false
"""
_TOKEN_TTL = 24 * 3600
MAX_BAN = MAX_BAN_SECONDS  # the name this module has always exported
"""The longest ban Binance gives (they escalate from 2 minutes to 3 days)."""
ONCE_KEEP = 256
"""How many recent event tokens a market keeps (one sorted set, a few KB)."""
# The types of every key this store writes, in one round trip ("none" for an absent key).
_TYPES = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('TYPE', key)['ok'] end
return out
"""
# A watched transaction aborted by a concurrent touch (our own lease renewal) is rebuilt.
_WATCH_RETRIES = 3

_encode = msgspec.json.Encoder().encode

KEEP_LISTING_UP_TO: Final = 1 << 20
"""A listing of at most this many bytes is kept after it is written, so that the next write
of listed rows whose JSON changed length splices them in (a copy) instead of encoding every
listed row again. Rows that keep their length (the usual change: Binance's decimals have a
fixed width) are patched in place in Redis and need only the row starts, which are always
kept. Larger listings (2 MB from the 2023 spot payload, 10 MB from a modern 17 MB one) are not
kept: the daemon's idle memory matters more than a few ms on a rarer kind of change."""

T = TypeVar("T")


class _Changes(NamedTuple):
    """What an incremental write sends: the changed rows, the removed names, and the listing
    when it changed: either whole (`listing`, with its row starts when known) or as in-place
    `patches` of the stored one; both None when it did not change."""

    rows: dict[str, bytes]
    removed: list[str]
    listing: bytes | None
    starts: list[int] | None
    patches: list[Patch] | None


def _changes(
    blobs: SnapshotBlobs, previous: SnapshotBlobs, kept: KeptListing | None, patch: bool
) -> _Changes:
    """Encodes only what is sent. A changed listing is, in this order of preference: patched
    in place (`patch`, every changed listed row the same length as before, see
    :func:`patch_listing`), spliced from `kept` (see :func:`splice_listing`), encoded whole."""
    listing: bytes | None = None
    starts: list[int] | None = None
    patches: list[Patch] | None = None
    if blobs.listing_digest is None or blobs.listing_digest != previous.listing_digest:
        if kept is not None and patch:
            patches = patch_listing(kept, blobs, previous)
        if patches is None:
            spliced = splice_listing(kept, blobs, previous) if kept is not None else None
            listing, starts = spliced if spliced is not None else blobs.symbols_json_spans()
    new, old = blobs.digests, previous.digests
    if new is old:  # the same snapshot (unchanged, most cycles): nothing to compare
        return _Changes({}, [], listing, starts, patches)
    changed = {n: blobs.blob(n) for n, d in new.items() if old.get(n) != d}
    return _Changes(changed, [n for n in old if n not in new], listing, starts, patches)


class _ListingNotAsKept(Exception):
    """The stored listing is not the one a patch was made for: send it whole instead."""


# The milliseconds the first key has left (PTTL), then the length of each key and, for each
# (start, end) pair of ARGV, its bytes there: whether the stored listing is the one patches
# were made for, in one round trip.
_LISTING_AT = """
local out = {redis.call('PTTL', KEYS[1])}
for _, key in ipairs(KEYS) do
  out[#out + 1] = redis.call('STRLEN', key)
  for j = 1, #ARGV, 2 do
    out[#out + 1] = redis.call('GETRANGE', key, ARGV[j], ARGV[j + 1])
  end
end
return out
"""
# A listing with less time than this left is not patched: SETRANGE on a key that expired in
# between would make a new one of zeros up to the patch.
_PATCH_MIN_TTL_MS = 10_000


def _mapping(fields: Mapping[str, Any]) -> Any:
    # redis-py's hset wants an invariant Mapping of its own key union; ours is narrower.
    return fields


class _NotPrevious(Exception):
    """Redis does not hold the snapshot an incremental write was based on."""


_REPAIR_TTL = 7 * 24 * 3600
_SCAN_COUNT = 200  # fields per HSCAN in read_by_symbol: about 1 ms of Redis time each


class SnapshotStore:
    """Reads and writes one market's keys on a bytes (non-decoding) asyncio client."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        keys: MarketKeys,
        *,
        cache_ttl: int,
        changes_maxlen: int = 1000,
        stage_above: int = STAGE_ABOVE,
    ) -> None:
        self.client = client
        self.keys = keys
        self.cache_ttl = cache_ttl
        self.changes_maxlen = changes_maxlen
        # A whole by_symbol of more bytes than this is staged before the transaction.
        self.stage_above = stage_above
        # Set while this daemon leads the market among replicas: every write then checks,
        # inside its transaction, that the lease still holds our token.
        self.fence: Fence | None = None
        # The listing last written, for the next incremental write to splice (see _keep).
        self.kept_listing: KeptListing | None = None
        # Runs the CPU work of a write (encoding the JSON it sends) off the event loop, e.g.
        # the refresh worker's off_loop; None: inline.
        self.offload: Callable[..., Awaitable[Any]] | None = None

    async def _cpu(self, fn: Callable[..., T], *args: Any) -> T:
        if self.offload is None:
            return fn(*args)
        result: T = await self.offload(fn, *args)
        return result

    @property
    def once_key(self) -> str:
        """The sorted set of recently counted event tokens (derived from the metrics key, so
        it shares the market's hash tag)."""
        return f"{self.keys.metrics}:once"

    @property
    def rows_key(self) -> str:
        """The digests of the upstream rows the stored snapshot came from
        (:mod:`daemon.contract.rows`), written with it; derived from the meta key, so it
        shares the market's hash tag."""
        return f"{self.keys.meta}:rows"

    @property
    def repair_key(self) -> str:
        """Set by :meth:`mark_corrupt`: the next commit rewrites the snapshot whole."""
        return f"{self.keys.meta}:repair"

    def expected_types(self) -> dict[str, str]:
        """Every key a snapshot write touches, with the one type the store writes there."""
        k = self.keys
        return {
            k.symbols: "string",
            k.last_good: "string",
            k.refreshed_at: "string",
            k.by_symbol: "hash",
            k.meta: "hash",
            k.metrics: "hash",
            k.changes: "stream",
            self.once_key: "zset",
            self.rows_key: "string",
        }

    def _count(self, pipe: Pipeline, field: str, token: str, amount: int = 1) -> None:
        pipe.eval(
            _COUNT_ONCE,
            2,
            self.keys.metrics,
            self.once_key,
            field,
            _TOKEN_TTL,
            f"{time.time():.3f}",
            f"{token}:{field}",
            ONCE_KEEP,
            amount,
        )

    async def read_state(self, *, rows: bool = False) -> StoredState:
        """One non-transactional round trip: meta fields, key existence and types, the ban
        deadline, a pending repair, with `rows` the stored row digests (see
        :func:`daemon.snapshot.state.read_state`)."""
        return await read_state(
            self.client,
            self.keys,
            self.expected_types(),
            self.repair_key,
            self.rows_key if rows else None,
        )

    async def mark_corrupt(self, wrong: Mapping[str, str]) -> None:
        """Ask the next commit (of this or any other process) for a full rewrite that
        replaces the wrong-type keys. A plain string key: SET works whatever it held."""
        await self.client.set(self.repair_key, _encode(sorted(wrong)), ex=_REPAIR_TTL)

    async def eviction_policy(self) -> str | None:
        """``maxmemory-policy`` as INFO reports it (on a cluster, the first evicting policy
        of any node); None when INFO does not say (an old server, or INFO refused by ACL)."""
        info: dict[str, Any] = await self.client.info("memory")
        policies = [info.get("maxmemory_policy")]
        # A cluster client answers with one dict per node.
        policies += [v.get("maxmemory_policy") for v in info.values() if isinstance(v, dict)]
        found = [str(p) for p in policies if p]
        evicting = [p for p in found if evicts(p)]
        if evicting:
            return evicting[0]
        return found[0] if found else None

    async def read_by_symbol(self) -> dict[str, bytes]:
        """The stored per-symbol records (for diffing against what a restarted daemon fetched).

        Read with HSCAN, a few hundred fields per command: one HGETALL of a 10x hash held Redis
        for ~100 ms (every reader's lookup queued behind it) and the event loop while the reply
        was parsed. Not one snapshot if a writer changes the hash meanwhile; the commit that
        follows is a whole, fenced write, so only this cycle's diff could be off."""
        out: dict[str, bytes] = {}
        async for name, value in self.client.hscan_iter(self.keys.by_symbol, count=_SCAN_COUNT):
            out[name.decode()] = value
        return out

    async def count_rows(self) -> int:
        """How many symbols by_symbol holds (HLEN)."""
        return int(await self.client.hlen(self.keys.by_symbol))

    async def read_rows(self, names: Sequence[str]) -> dict[str, bytes]:
        """The stored records of `names` that exist (HMGET, :data:`_SCAN_COUNT` names per
        command): what a restarted daemon reads when it knows which rows can differ."""
        out: dict[str, bytes] = {}
        for start in range(0, len(names), _SCAN_COUNT):
            part = names[start : start + _SCAN_COUNT]
            values = await self.client.hmget(self.keys.by_symbol, part)
            out.update(
                (name, value)
                for name, value in zip(part, values, strict=True)
                if isinstance(value, bytes)  # None: no such field
            )
        return out

    async def _stage(self, by_symbol: Mapping[str, bytes]) -> str | None:
        """Stage a whole ``by_symbol`` hash (see :func:`daemon.snapshot.staging.stage`) when it
        holds more than ``stage_above`` bytes; None: the transaction writes it itself."""
        if sum(map(len, by_symbol.values())) <= self.stage_above:
            return None
        return await stage(self.client, self.keys.by_symbol, by_symbol)

    async def _whole(
        self, blobs: SnapshotBlobs
    ) -> tuple[bytes, list[int] | None, str | None, dict[str, bytes]]:
        """What a whole write of `blobs` sends: the listing (and its row starts), and
        by_symbol either staged (the staging key's name, an empty dict) or made whole for the
        transaction (None, the hash). Records that will surely be staged (their listing alone
        is over ``stage_above``) are encoded a batch at a time as they are staged, never all
        at once."""
        listing, starts = await self._cpu(blobs.symbols_json_spans)
        # Listed rows are cut out of the listing, not encoded a second time.
        if len(listing) > self.stage_above and staging_name(self.keys.by_symbol) is not None:
            names = list(blobs.digests)
            json_of = blobs.cutter(listing, starts)
            staged = await stage_encoded(self.client, self.keys.by_symbol, names, json_of)
            if staged is not None:
                return listing, starts, staged, {}
        by_symbol = await self._cpu(blobs.by_symbol_from, listing, starts)
        return listing, starts, await self._stage(by_symbol), by_symbol

    def _keep(
        self,
        blobs: SnapshotBlobs,
        listing: bytes | None,
        starts: list[int] | None,
        patches: list[Patch] | None = None,
    ) -> None:
        """After a write: keep where the listing it wrote has each row (and its JSON, if
        small), for the next write to patch or splice."""
        kept, named = self.kept_listing, blobs.listing_digest
        if patches is not None and kept is not None and named is not None:
            # Patched in place: rows keep their places and lengths.
            text = patched(kept.listing, patches) if kept.listing is not None else None
            self.kept_listing = KeptListing(named, kept.names, kept.starts, kept.size, text)
            return
        if listing is None:
            return  # the listing did not change: what is kept (if anything) still is it
        self.kept_listing = None
        if starts is not None and named is not None:
            text = listing if len(listing) <= KEEP_LISTING_UP_TO else None
            self.kept_listing = KeptListing(named, blobs.listed_names, starts, len(listing), text)

    def _verifier(self, patches: list[Patch]) -> Callable[[Pipeline], Awaitable[None]]:
        """Raises :class:`_ListingNotAsKept` (run after WATCH) unless both stored copies of
        the listing have the kept length and, where each patch goes, the row it replaces, and
        ``symbols`` does not expire within seconds."""
        kept = self.kept_listing
        keys = (self.keys.symbols, self.keys.last_good)
        ranges = [n for p in patches for n in (p.offset, p.offset + len(p.blob) - 1)]

        async def verify(pipe: Pipeline) -> None:
            if kept is None:
                raise _ListingNotAsKept
            ttl_ms, *found = await pipe.eval(_LISTING_AT, len(keys), *keys, *ranges)
            if 0 <= ttl_ms < _PATCH_MIN_TTL_MS or ttl_ms == -2:  # -1: no expiry, fine
                raise _ListingNotAsKept
            per_key = 1 + len(patches)
            for at in range(0, len(found), per_key):
                size, *rows = found[at : at + per_key]
                if size != kept.size or any(
                    digest(row) != p.old for row, p in zip(rows, patches, strict=True)
                ):
                    raise _ListingNotAsKept

        return verify

    def _replace_by_symbol(
        self, pipe: Pipeline, staged: str | None, by_symbol: Mapping[str, bytes]
    ) -> None:
        k = self.keys
        # UNLINK, not DEL or a RENAME over it: a hash of more than 64 fields is then freed by a
        # background thread of Redis, not inside the EXEC every reader's command waits for
        # (RENAME over the 10x spot hash: 10-40 ms; UNLINK + RENAME: ~15 µs). A raw command:
        # the async cluster pipeline's unlink() is a coroutine of its own.
        pipe.execute_command("UNLINK", k.by_symbol)
        if staged is None:
            if by_symbol:
                pipe.hset(k.by_symbol, mapping=_mapping(by_symbol))
            return
        # RENAME replaces by_symbol whole (whatever it held) and keeps the staging TTL:
        # PERSIST drops it, as by_symbol never expires.
        pipe.rename(staged, k.by_symbol)
        pipe.persist(k.by_symbol)

    async def _transact(
        self,
        fill: Callable[[Pipeline], None],
        *,
        expect_version: str | None = None,
        repair: bool = False,
        staged: str | None = None,
        verify: Callable[[Pipeline], Awaitable[None]] | None = None,
    ) -> None:
        """Run one MULTI/EXEC that `fill` builds, all or nothing.

        `staged` names a staging hash (see :meth:`_stage`) that `fill` renames into place: it
        is WATCHed and must exist, so the rename can never fail inside EXEC (a command that
        fails there would leave the others applied).

        Every key the store writes is WATCHed and its type checked first: a key of the wrong
        type raises :class:`SnapshotCorrupt` before anything is queued (with `repair`, such
        keys are deleted inside the same MULTI instead, and `fill` rewrites them). With a
        fence, it runs only while the lease holds our token (LeaseLost otherwise); with
        `expect_version`, only while meta holds that version (_NotPrevious otherwise);
        `verify` runs last before MULTI (on the watching connection) and may refuse. A
        change to any watched key between the checks and EXEC aborts EXEC; our own lease
        renewal also touches the lease key, hence a few retries. A watched transaction is
        never re-sent by redis-py after a timeout, and every counter in it counts once by
        token anyway.
        """
        watched = list(self.expected_types())
        if self.fence is not None:
            watched.append(self.fence.key)
        if staged is not None:
            watched.append(staged)
        for attempt in range(_WATCH_RETRIES + 1):
            try:
                await self._watched_attempt(fill, watched, expect_version, repair, staged, verify)
            except WatchError:
                # From EXEC (a watched key changed) or from any command after WATCH on a
                # connection that dropped. Either nothing was applied, or (a reply lost after
                # EXEC) the retry repeats idempotent writes whose counter counts once by token.
                if attempt == _WATCH_RETRIES:
                    raise
                continue
            return

    async def _watched_attempt(
        self,
        fill: Callable[[Pipeline], None],
        watched: list[str],
        expect_version: str | None,
        repair: bool,
        staged: str | None = None,
        verify: Callable[[Pipeline], Awaitable[None]] | None = None,
    ) -> None:
        expected = self.expected_types()
        async with self.client.pipeline(transaction=True) as pipe:
            await pipe.watch(*watched)
            if staged is not None and not await pipe.exists(staged):
                raise StagingLost(staged)
            found = await pipe.eval(_TYPES, len(expected), *expected)
            wrong = {
                name: kind.decode() if isinstance(kind, bytes) else str(kind)
                for (name, want), kind in zip(expected.items(), found, strict=True)
                if (kind.decode() if isinstance(kind, bytes) else str(kind)) not in ("none", want)
            }
            if wrong and not repair:
                raise SnapshotCorrupt(wrong)
            claim = False
            if self.fence is not None:
                holder: bytes | None = await pipe.get(self.fence.key)  # type: ignore[assignment]
                # Vacant (Redis restarted empty): nobody else leads; claim it with the write.
                claim = holder is None
                if holder is not None and holder != self.fence.token:
                    raise LeaseLost(self.fence.key)
            if expect_version is not None:
                if self.keys.meta in wrong:
                    raise _NotPrevious
                stored: bytes | None = await pipe.hget(self.keys.meta, "version")  # type: ignore[assignment]
                if stored is None or stored.decode() != expect_version:
                    raise _NotPrevious
            if verify is not None:
                await verify(pipe)
            pipe.multi()  # type: ignore[no-untyped-call]
            if claim and self.fence is not None:
                pipe.set(self.fence.key, self.fence.token, px=self.fence.ttl_ms)
            if repair:
                if wrong:
                    pipe.delete(*wrong)
                pipe.delete(self.repair_key)
            fill(pipe)
            await pipe.execute()

    async def commit(
        self,
        blobs: SnapshotBlobs,
        meta: SnapshotMeta,
        *,
        diff: SnapshotDiff | None,
        token: str,
        previous: SnapshotBlobs | None = None,
        publish: bool = True,
        repair: bool = False,
        rows_held: int = 0,
        rows: bytes | None = None,
    ) -> str:
        """Write an accepted snapshot and count ``refresh_success``, atomically.

        ``rows`` is the ``meta:rows`` value that describes this snapshot (see
        :mod:`daemon.contract.rows`), written in the same transaction; None deletes the key
        (a snapshot with held rows, or from a payload not to be trusted, has none).

        ``rows_held`` (rows of this payload held back, the previous row served instead) is
        added to the ``rows_held`` counter in the same step. ``repair`` deletes keys of the
        wrong type and writes everything whole; without it such a key raises
        :class:`SnapshotCorrupt` and nothing is written.

        ``previous`` is the snapshot Redis is believed to hold (its version was read this
        cycle and every key exists): then only the difference is written (changed and removed
        symbols, the list if it changed), under WATCH on ``meta`` so that a concurrent writer
        or a restarted Redis turns it into a full write instead. ``publish`` sends the event
        (a new version); the stream gets an entry only for a non-empty diff.
        Returns ``"incremental"`` or ``"full"``.
        """
        if previous is not None and not repair:
            try:
                await self._write(
                    blobs, meta, diff, token, previous, publish, False, rows_held, rows
                )
            except (WatchError, _NotPrevious):
                pass
            else:
                return "incremental"
        await self._write(blobs, meta, diff, token, None, publish, repair, rows_held, rows)
        return "full"

    async def renew(self, meta: SnapshotMeta, *, token: str, rows: bytes | None = None) -> bool:
        """Record that the snapshot Redis holds (of ``meta.version``) was fetched again: renew
        the listing's expiry, write ``refreshed_at`` and meta, count ``refresh_success``; in
        one fenced MULTI, only while meta still holds that version. False (nothing written)
        when it does not any more or a watched key kept changing: the caller writes whole.
        ``rows``, when given, replaces ``meta:rows`` (for the same snapshot) in the same MULTI."""

        def fill(pipe: Pipeline) -> None:
            if rows is not None:
                pipe.set(self.rows_key, rows)
            pipe.expire(self.keys.symbols, self.cache_ttl)
            self._renewal(pipe, meta, token)

        try:
            await self._transact(fill, expect_version=meta.version)
        except (WatchError, _NotPrevious):
            return False
        return True

    def _renewal(self, pipe: Pipeline, meta: SnapshotMeta, token: str, rows_held: int = 0) -> None:
        """What every accepted cycle writes besides the snapshot's content."""
        k = self.keys
        pipe.set(k.refreshed_at, encode_timestamp(meta.fetched_at))
        pipe.hset(
            k.meta,
            mapping=_mapping(meta.to_hash() | {"shrink_version": "", "shrink_count": "0"}),
        )
        self._count(pipe, "refresh_success", token)
        if rows_held:
            self._count(pipe, "rows_held", token, rows_held)

    async def _write(
        self,
        blobs: SnapshotBlobs,
        meta: SnapshotMeta,
        diff: SnapshotDiff | None,
        token: str,
        previous: SnapshotBlobs | None,
        publish: bool,
        repair: bool,
        rows_held: int,
        rows: bytes | None,
    ) -> None:
        k = self.keys
        # The JSON to send is made here, once (`fill` may run again on a retry), off the loop,
        # and only what is sent: the snapshot keeps records and digests, not their JSON.
        by_symbol: dict[str, bytes] = {}
        whole = b""
        starts: list[int] | None = None
        staged = None
        changes = _Changes({}, [], None, None, None)
        if previous is None:
            whole, starts, staged, by_symbol = await self._whole(blobs)

        def fill(pipe: Pipeline) -> None:
            if previous is not None:
                changed, removed, listing, _, patches = changes
                if listing is not None:
                    pipe.set(k.last_good, listing)
                    pipe.set(k.symbols, listing, ex=self.cache_ttl)
                else:
                    for patch in patches or ():
                        pipe.setrange(k.last_good, patch.offset, patch.blob)
                        pipe.setrange(k.symbols, patch.offset, patch.blob)
                    pipe.expire(k.symbols, self.cache_ttl)
                if changed:
                    pipe.hset(k.by_symbol, mapping=_mapping(changed))
                if removed:
                    pipe.hdel(k.by_symbol, *removed)
            else:
                pipe.set(k.last_good, whole)
                pipe.set(k.symbols, whole, ex=self.cache_ttl)
                self._replace_by_symbol(pipe, staged, by_symbol)
            # The list goes out twice rather than as one SET plus a server-side COPY: COPY of
            # a multi-MB value costs Redis ~10x a SET (fresh pages), and every reader's command
            # queues behind it. An unchanged list only has its expiry renewed; a few rows of
            # unchanged lengths are overwritten in place (SETRANGE).
            if rows is not None:
                pipe.set(self.rows_key, rows)
            else:
                pipe.delete(self.rows_key)
            self._renewal(pipe, meta, token, rows_held)
            event_fields = diff.to_builtins() if diff is not None else {}
            event = _encode({"market": k.market, "version": blobs.version, **event_fields})
            if diff is not None and not diff.is_empty:
                pipe.xadd(
                    k.changes,
                    {"version": blobs.version, "diff": event},
                    maxlen=self.changes_maxlen,
                    approximate=True,
                )
            if publish:
                # As a raw command: redis-py's cluster pipelines refuse the publish() method.
                pipe.execute_command("PUBLISH", k.events, event)

        try:
            # Patching the listing in place needs the stored one to be what was kept: checked
            # inside the transaction, and if it is not, written again with the listing whole.
            for patch in (True, False) if previous is not None else (False,):
                if previous is not None:
                    changes = await self._cpu(_changes, blobs, previous, self.kept_listing, patch)
                patches = changes.patches
                try:
                    await self._transact(
                        fill,
                        expect_version=previous.version if previous is not None else None,
                        repair=repair,
                        staged=staged,
                        verify=self._verifier(patches) if patches else None,
                    )
                except _ListingNotAsKept:
                    continue
                break
        finally:
            if staged is not None:
                await drop(self.client, staged)
        if previous is None:
            self._keep(blobs, whole, starts)
        else:
            self._keep(blobs, changes.listing, changes.starts, changes.patches)

    async def record_failure(
        self,
        *,
        outcome: str,
        error: str,
        token: str,
        streak: ShrinkStreak | None = None,
    ) -> None:
        """Count a failed (``refresh_error``) or held-back (``refresh_rejected``) cycle and
        note it in meta; the snapshot itself is left alone."""
        field = {"error": "refresh_error", "rejected": "refresh_rejected"}[outcome]
        fields: dict[str, str] = {"stale": "1", "last_error": error[:500]}
        if streak is not None:
            fields |= {"shrink_version": streak.version, "shrink_count": str(streak.count)}

        def fill(pipe: Pipeline) -> None:
            pipe.hset(self.keys.meta, mapping=_mapping(fields))
            self._count(pipe, field, token)

        await self._transact(fill)

    async def republish(self, held: HeldSnapshot | None, *, token: str) -> str | None:
        """Serve again after the cache vanished (expiry, Redis restarted empty).

        Uses the snapshot held in memory when there is one (it is the newest accepted), else
        the ``last_good`` copy in Redis. Counts ``fallback_used`` and marks meta stale.
        Returns where the data came from ("memory", "last_good"), or None if nothing to serve.
        """
        k = self.keys
        # A held snapshot without blobs (trusted from Redis, not derived here) has nothing to
        # put back: last_good serves.
        blobs = held.blobs if held is not None else None
        if blobs is None and not await self.client.exists(k.last_good):
            return None
        # Made once (`fill` may run again on a retry), from the records held in memory.
        listing, staged = b"", None
        by_symbol: dict[str, bytes] = {}
        if blobs is not None:
            listing, _, staged, by_symbol = await self._whole(blobs)

        def fill(pipe: Pipeline) -> None:
            if held is not None and blobs is not None:
                # Conservative: a snapshot put back from memory drops the row digests (a
                # restart then derives every row once) rather than rely on their version.
                pipe.delete(self.rows_key)
                pipe.set(k.last_good, listing)
                pipe.set(k.symbols, listing, ex=self.cache_ttl)
                self._replace_by_symbol(pipe, staged, by_symbol)
                pipe.set(k.refreshed_at, encode_timestamp(held.meta.fetched_at), nx=True)
                # Not last_error: a failed cycle recorded why just before falling back, and
                # the held snapshot's empty one must not erase it. Filled in if meta lost it.
                fields = held.meta.to_hash() | {"stale": "1"}
                del fields["last_error"]
                pipe.hset(k.meta, mapping=_mapping(fields))
                pipe.hsetnx(k.meta, "last_error", "")
                # Readers that lost their subscription with the old server learn the version.
                event = {"market": k.market, "version": held.meta.version, "republished": True}
                pipe.execute_command("PUBLISH", k.events, _encode(event))
            else:
                pipe.copy(k.last_good, k.symbols, replace=True)
                pipe.expire(k.symbols, self.cache_ttl)
                pipe.hset(k.meta, "stale", "1")
            self._count(pipe, "fallback_used", token)

        try:
            await self._transact(fill, staged=staged)
        finally:
            if staged is not None:
                await drop(self.client, staged)
        return "memory" if blobs is not None else "last_good"

    async def refreshed_at(self) -> float | None:
        return decode_timestamp(await self.client.get(self.keys.refreshed_at))

    async def request_refresh(self) -> None:
        """A follower asks the leader for a refresh (kept a minute if nobody takes it)."""
        await self.client.set(self.keys.refresh_request, encode_timestamp(time.time()), ex=60)

    async def take_refresh_request(self) -> bool:
        """The leader takes a pending request, if any (GETDEL: exactly one leader sees it)."""
        return await self.client.getdel(self.keys.refresh_request) is not None

    async def load_if_newer(self, held: HeldSnapshot | None) -> HeldSnapshot | None:
        """The stored snapshot when its version differs from `held`'s (followers keep it in
        memory to republish after a takeover); None when unchanged or absent.

        Read in one MULTI, so list, hash and meta belong to one snapshot.
        """
        k = self.keys
        version: bytes | None = await self.client.hget(k.meta, "version")  # type: ignore[assignment]
        if version is None or (held is not None and held.meta.version == version.decode()):
            return None
        pipe = self.client.pipeline(transaction=True)
        pipe.get(k.last_good)
        pipe.hgetall(k.by_symbol)
        pipe.hgetall(k.meta)
        symbols_json, by_symbol_raw, meta_raw = await pipe.execute()
        if symbols_json is None or not by_symbol_raw:
            return None
        try:
            snapshot_meta = SnapshotMeta.from_hash(meta_raw)
        except MetaError:
            return None
        blobs = SnapshotBlobs.stored(
            {name.decode(): value for name, value in by_symbol_raw.items()},
            symbols_json,
            version=snapshot_meta.version,
            count=snapshot_meta.count,
            listed=snapshot_meta.listed,
        )
        return HeldSnapshot(blobs=blobs, meta=snapshot_meta)

    async def set_ban(self, until: float) -> None:
        """Remember a 429/418 deadline so a restarted daemon honours it too (at most
        :data:`MAX_BAN` from now: a longer deadline is stored clamped)."""
        now = time.time()
        until = min(until, now + MAX_BAN) if not math.isnan(until) else now
        ttl_ms = max(1, int((until - now) * 1000))
        await self.client.set(self.keys.ban_until, encode_timestamp(until), px=ttl_ms)
