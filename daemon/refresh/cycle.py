"""One refresh cycle of one market: fetch, normalize, guard, write or fall back.

The daemon's timer loop, ``symbold refresh`` and the Celery ``refresh_symbols`` task all run
this same :meth:`MarketRefresher.refresh_once`. It never raises for upstream or Redis trouble:
it returns a :class:`CycleResult` saying what happened, and has logged it.

Rules it keeps:
- a reply that is malformed, empty or shrunk beyond the guard never replaces good data;
- after any failure the cache keeps being served: if ``symbols`` vanished (expired, Redis
  restarted empty) it is republished from the snapshot held in memory or from ``last_good``;
- a 429/418 deadline is stored in Redis and honoured by every later cycle, across restarts;
  the stored deadline is re-read every cycle (deleting it lifts the ban) and one longer than
  Binance's longest ban (3 days) is clamped and logged as an error;
- a changed row a bot cannot use (guards.row_problem) is held back: the served row stays;
- a snapshot key of the wrong type stops the write whole (exit 65: data) and asks the next
  cycle for a full rewrite that replaces it;
- Redis configured to evict keys (maxmemory-policy allkeys-*/volatile-*) is warned about, or
  with ``[redis] eviction = "refuse"`` not written to at all.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Mapping
from typing import Final

import aiohttp
import redis
import redis.asyncio

from daemon.budget import AsyncWeightBudget
from daemon.config.settings import (
    GuardSettings,
    MarketName,
    MarketSettings,
    SchedulerSettings,
    Settings,
    UpstreamSettings,
)
from daemon.contract.keys import MarketKeys, keys_for
from daemon.contract.meta import HeldRow, SnapshotMeta
from daemon.contract.record import SymbolRecord
from daemon.contract.rows import DIGEST_BYTES, RowDigests, encode_row_digests
from daemon.logs import get_logger, scrub_text
from daemon.redis.errors import RECOVERABLE, ProblemKind
from daemon.refresh.bans import ban_to_honour
from daemon.refresh.budgeted import FetchDeferred, SharedBan, fetch_with_budget
from daemon.refresh.eviction import EvictionWatch
from daemon.refresh.report import (
    log_dropped,
    log_held,
    log_written,
    redis_failed,
    warn_if_weight_high,
)
from daemon.refresh.result import CycleResult, Outcome, source_config
from daemon.refresh.worker import off_loop
from daemon.snapshot import diff as snapshot_diff
from daemon.snapshot import listing, normalize, payload, trust
from daemon.snapshot.guards import ShrinkStreak, Verdict, judge
from daemon.snapshot.hold import hold_rows
from daemon.snapshot.lease import LeaseLost
from daemon.snapshot.store import (
    MAX_BAN,
    HeldSnapshot,
    SnapshotCorrupt,
    SnapshotStore,
    StoredState,
    new_token,
)
from daemon.upstream.fetch import (
    FetchResult,
    RateLimited,
    UpstreamError,
)

# The result types live in daemon.refresh.result; callers may keep importing them from here.
__all__ = ["CycleResult", "MarketRefresher", "Outcome", "source_config"]


# A restart reads the stored rows of at most this many symbols one by one (HMGET); more, and
# it reads the whole hash (HSCAN steps), which costs about the same then.
_PARTLY_AT_MOST: Final = 200


def _nothing_served(name: str) -> bytes | None:
    return None


def _diff(old: listing.SnapshotBlobs, new: listing.SnapshotBlobs) -> snapshot_diff.SnapshotDiff:
    """What changed, comparing records where both sides have them (only changed rows are
    encoded; a row read back from Redis compares by its stored JSON)."""
    return snapshot_diff.diff_snapshots(old.rows(), new.rows())


class MarketRefresher:
    """Owns one market's refresh cycle and the snapshot it last accepted (held in memory).

    Not re-entrant: callers must not run two cycles of one market at once (the scheduler
    guarantees it; :meth:`refresh_once` also holds an internal flag and refuses overlap).
    """

    def __init__(
        self,
        name: str,
        market: MarketSettings,
        *,
        upstream: UpstreamSettings,
        guards: GuardSettings,
        scheduler: SchedulerSettings,
        keys: MarketKeys,
        client: redis.asyncio.Redis,
        session: aiohttp.ClientSession,
        eviction: str = "warn",
        budget: AsyncWeightBudget | None = None,
    ) -> None:
        self.name = name
        # The market's shared request-weight budget; None: fetches are not charged.
        self.budget = budget
        self.eviction = eviction
        self._eviction = EvictionWatch(eviction, get_logger("symbold.refresh").bind(market=name))
        self.market = market
        self.upstream = upstream
        self.guards = guards
        self.source = source_config(market, upstream)
        self.store = SnapshotStore(
            client, keys, cache_ttl=market.cache_ttl, changes_maxlen=scheduler.changes_maxlen
        )
        # The JSON a write sends is encoded in the worker thread, not in the loop.
        self.store.offload = off_loop
        self.session = session
        self.held: HeldSnapshot | None = None
        self.ban_until: float = 0.0
        # True while a ban this process learnt could not be stored in Redis yet: then the
        # in-memory deadline counts too; otherwise the stored one is the only authority.
        self._ban_unsaved = False
        self.last_result: CycleResult | None = None
        # Rows seen in the previous payload: unchanged rows are not decoded again.
        self.memo = normalize.RowMemo()
        # The blobs the memo's rows gave last time, under which market settings.
        self._derived: tuple[MarketSettings, listing.SnapshotBlobs] | None = None
        # From the last successful fetch, for metrics.
        self.fetch_ms: float | None = None
        self.used_weight: int | None = None
        self._running = False
        self.log = get_logger("symbold.refresh").bind(market=name)

    @property
    def eviction_policy(self) -> str | None:
        """Redis's ``maxmemory-policy`` as last seen (None: not known)."""
        return self._eviction.policy

    @classmethod
    def for_market(
        cls,
        settings: Settings,
        name: MarketName,
        *,
        client: redis.asyncio.Redis,
        session: aiohttp.ClientSession,
        market: MarketSettings | None = None,
        keys: MarketKeys | None = None,
        budget: AsyncWeightBudget | None = None,
    ) -> MarketRefresher:
        """The refresher of market `name` under `settings` (`market` and `keys` override the
        settings' own, e.g. for a benchmark's private key prefix)."""
        return cls(
            name,
            market if market is not None else settings.markets.get(name),
            upstream=settings.upstream,
            guards=settings.guards,
            scheduler=settings.scheduler,
            keys=keys if keys is not None else keys_for(settings, name),
            client=client,
            session=session,
            eviction=settings.redis.eviction,
            budget=budget,
        )

    async def refresh_once(self) -> CycleResult:
        """Run one cycle; never raises for upstream or Redis failures."""
        if self._running:
            return CycleResult(self.name, Outcome.SKIPPED, reason="a refresh is already running")
        self._running = True
        started = time.perf_counter()
        try:
            result = await self._cycle(started)
        except LeaseLost:
            # Another daemon leads this market now; Redis refused our write, nothing changed.
            self.log.warning("refresh.fenced", reason="lease lost; the write was refused")
            result = CycleResult(self.name, Outcome.FENCED, reason="lease lost")
        except SnapshotCorrupt as exc:
            # A key changed type between this cycle's state read and its write.
            result = await self._corrupt(exc.keys, started)
        finally:
            self._running = False
        self.last_result = result
        return result

    async def _cycle(self, started: float) -> CycleResult:
        try:
            # The stored row digests matter only to a refresher that has derived no rows yet.
            state = await self.store.read_state(rows=not self.memo.digests)
            refused = await self._eviction.check(self.store, self.name)
        except RECOVERABLE as exc:
            return redis_failed(self.log, self.name, exc, started)
        if refused is not None:
            return refused
        if state.wrong_types and not state.repair_requested:
            return await self._corrupt(state.wrong_types, started)

        now = time.time()
        ban = self._shared_ban(state, now)
        if ban > now:
            self.ban_until = ban
            return await self._skipped("rate-limit ban", ban - now, state, started)

        try:
            # Never wait for the budget inside a cycle: a full window is a skipped cycle.
            # Nothing served at all: a budget new to this Redis starts fresh (first start).
            cold = self.held is None and not (state.has_symbols or state.has_last_good)
            fetched = await fetch_with_budget(
                self.budget, self.session, self.source, max_wait=0.0, cold=cold
            )
        except FetchDeferred as deferred:  # the shared budget says not now: nothing was sent
            return await self._skipped(deferred.reason, deferred.wait, state, started)
        except UpstreamError as err:
            if err.used_weight is not None:
                self.used_weight = err.used_weight
            return await self._upstream_failed(err, state, started)
        self.fetch_ms = fetched.elapsed_ms
        self.used_weight = fetched.used_weight

        try:
            # The body goes to the worker in a box it empties, and the result kept here has
            # none: the multi-MB body is freed once decoded, not at the end of the cycle.
            box = [fetched.body]
            fetched = dataclasses.replace(fetched, body=b"")
            result = await self._accept_or_reject(fetched, box, state, started)
        except RECOVERABLE as exc:
            return redis_failed(self.log, self.name, exc, started)
        return result

    async def _skipped(
        self, reason: str, wait: float, state: StoredState, started: float
    ) -> CycleResult:
        try:
            await self._keep_serving(state)
        except RECOVERABLE as exc:
            return redis_failed(self.log, self.name, exc, started)
        self.log.warning("refresh.skipped", reason=reason, wait_s=round(wait, 1))
        return CycleResult(self.name, Outcome.SKIPPED, reason=reason, wait=wait)

    def _shared_ban(self, state: StoredState, now: float) -> float:
        """The ban deadline to honour (see :func:`daemon.refresh.bans.ban_to_honour`)."""
        ban, clamped = ban_to_honour(state.ban_until, now, self.ban_until, self._ban_unsaved)
        if clamped:
            self.log.error(
                "ban.clamped",
                stored=state.ban_until,
                clamped_to_s=MAX_BAN,
                reason="longer than Binance's longest ban (3 days)",
            )
        if not self._ban_unsaved:
            self.ban_until = ban
        return ban

    async def _corrupt(self, wrong: Mapping[str, str], started: float) -> CycleResult:
        """A snapshot key of the wrong type: nothing was written; report it as data
        corruption and ask the next cycle for a full rewrite."""
        shown = ", ".join(f"{key} is a {kind}" for key, kind in sorted(wrong.items()))
        self.log.error(
            "snapshot.corrupt",
            keys=sorted(wrong),
            error=f"snapshot keys of the wrong type: {shown}",
            action="the next cycle rewrites the snapshot whole",
        )
        try:
            await self.store.mark_corrupt(wrong)
        except RECOVERABLE as exc:
            return redis_failed(self.log, self.name, exc, started)
        return CycleResult(
            self.name,
            Outcome.FAILED,
            reason=f"redis: snapshot keys of the wrong type: {shown}",
            problem=ProblemKind.DATA,
            duration_ms=(time.perf_counter() - started) * 1000.0,
        )

    def _fingerprint(self) -> bytes:
        """What, besides the rows, decides what a payload derives to (see trust.fingerprint)."""
        m = self.market
        return trust.fingerprint(
            self.name,
            list_statuses=m.list_statuses,
            quote_priority=m.quote_priority,
            pinned=m.pinned,
        )

    def _trustable(self, state: StoredState) -> tuple[RowDigests, str, int, int] | None:
        """Whether Redis's snapshot may stand for a payload whose rows match its stored row
        digests: this refresher has derived nothing yet (else its memo is as cheap and keeps
        the records), the digests describe the stored version under today's derivation, and
        nothing asks for more than a renewal (no repair, no held rows to re-judge). Returns
        the digests with the stored version, count and listed, or None."""
        rows, version, count, listed = state.rows, state.version, state.count, state.listed
        if rows is None or version is None or count is None or listed is None:
            return None
        trusted = (
            not self.memo.digests
            and rows.rows > 0
            and rows.version == version
            and state.complete
            and not state.wrong_types
            and not state.repair_requested
            and not state.held_rows
            and rows.fingerprint == self._fingerprint()
        )
        return (rows, version, count, listed) if trusted else None

    async def _trusted(
        self,
        fetched: FetchResult,
        box: list[bytes],
        state: StoredState,
        started: float,
        stored: tuple[RowDigests, str, int, int],
    ) -> CycleResult | None:
        """The cycle of a payload whose every row is the one the stored snapshot came from:
        no row is decoded, the snapshot is renewed in place. None (the body still in `box`)
        when a row differs or the stored snapshot changed meanwhile: derive it then."""
        rows, version, count, listed = stored
        # With the stored region digest, a payload laid out as Binance does costs one hash.
        matched = await off_loop(trust.match_rows, box[0], rows.digests, rows.region)
        if matched is None:
            return None
        warn_if_weight_high(self.log, fetched.used_weight, matched.weight_limit)
        verdict = self._judge(listed, count, version, matched.server_time, state)
        if not verdict.accept:
            box.clear()
            return await self._reject(verdict.reason, state, started, verdict.streak)
        meta = self._meta(fetched, version, count, listed, matched.server_time, started)
        meta = dataclasses.replace(meta, rate_limits=matched.rate_limits)
        # The stored digests gain the region digest they lacked (once), so the next restart
        # matches with one hash too.
        gained = None
        if matched.region and matched.region != rows.region:
            gained = encode_row_digests(version, rows.fingerprint, rows.digests, matched.region)
        if not await self.store.renew(meta, token=new_token(), rows=gained):
            return None
        box.clear()
        held = self.held
        blobs = held.blobs if held is not None and held.meta.version == version else None
        self.held = HeldSnapshot(blobs=blobs, meta=meta)
        log_written(self.log, meta, None, meta.duration_ms, fetched.url, unchanged=True)
        return CycleResult(
            self.name,
            Outcome.UNCHANGED,
            version=version,
            count=count,
            listed=listed,
            duration_ms=meta.duration_ms,
        )

    def _judge(
        self,
        listed: int,
        count: int,
        version: str,
        server_time: int | None,
        state: StoredState,
        unusable: int = 0,
    ) -> Verdict:
        """The snapshot guards' verdict on a payload (see guards.judge); a confirmed shrink or
        stale server time is logged here."""
        last_listed = self.held.meta.listed if self.held is not None else state.listed
        last_server_time = (
            self.held.meta.server_time if self.held is not None else state.server_time
        )
        streak = state.streak if state.streak.version else ShrinkStreak()
        verdict = judge(
            # A held row is one the bot cannot use: many of them count like a shrink.
            listed=max(0, listed - unusable),
            count=count,
            version=version,
            last_listed=last_listed,
            streak=streak,
            max_shrink=self.guards.max_shrink,
            confirm_shrink=self.guards.confirm_shrink,
            server_time=server_time,
            last_server_time=last_server_time,
        )
        if verdict.accept and verdict.confirmed_shrink:
            self.log.error(
                "refresh.shrink_accepted"
                if verdict.reason != "server_time_confirmed"
                else "refresh.server_time_accepted",
                listed=listed,
                last_listed=last_listed,
                server_time=server_time,
                last_server_time=last_server_time,
                confirmations=self.guards.confirm_shrink,
            )
        return verdict

    def _meta(
        self,
        fetched: FetchResult,
        version: str,
        count: int,
        listed: int,
        server_time: int | None,
        started: float,
        held_rows: tuple[HeldRow, ...] = (),
    ) -> SnapshotMeta:
        return SnapshotMeta(
            version=version,
            count=count,
            listed=listed,
            source=fetched.url,
            server_time=server_time,
            fetched_at=time.time(),
            duration_ms=(time.perf_counter() - started) * 1000.0,
            # Computed now, not at import: a Celery prefork child has its own pid.
            writer=(
                self.store.fence.token.decode()
                if self.store.fence
                else f"{socket.gethostname()}:{os.getpid()}"
            ),
            held_rows=held_rows,
        )

    async def _accept_or_reject(
        self, fetched: FetchResult, box: list[bytes], state: StoredState, started: float
    ) -> CycleResult:
        stored = self._trustable(state)
        if stored is not None:
            done = await self._trusted(fetched, box, state, started, stored)
            if done is not None:
                return done
        try:
            # The CPU work of a cycle runs in a worker thread, in steps short enough that the
            # event loop (health answers, watchdog pings, other markets) keeps its turn.
            norm, blobs = await off_loop(self._derive, box)
        except payload.PayloadError as err:
            return await self._reject(f"malformed reply: {err}", state, started, None)
        warn_if_weight_high(self.log, fetched.used_weight, norm.weight_limit)
        log_dropped(self.log, norm)
        repair = bool(state.wrong_types) or state.repair_requested
        records, digests = norm.records, norm.digests
        unchanged = state.version == blobs.version and not repair
        held_rows: tuple[HeldRow, ...] = ()
        unusable = 0  # held rows the listing would have had
        diff = None
        # What Redis serves, when it was read back only where it can differ (a restart whose
        # payload differs in a few rows): also the base of an incremental write.
        served_partly: listing.SnapshotBlobs | None = None
        if not unchanged:
            old, partly = await self._served(norm, state)
            if partly:
                served_partly = old
            # Only rows that differ from the served ones are judged (the rest were judged
            # when they were first served).
            kept = await off_loop(
                hold_rows,
                records,
                digests,
                old.digests if old is not None else {},
                old.blob if old is not None else _nothing_served,
                streaks={row.symbol: row for row in state.held_rows},
                confirm=self.guards.confirm_shrink,
            )
            held_rows = kept.verdicts.held
            log_held(self.log, kept.verdicts.held, kept.verdicts.confirmed)
            if held_rows:
                names = {row.symbol for row in held_rows}
                statuses = self.market.list_statuses
                unusable = sum(
                    1 for rec in records if rec.symbol in names and rec.status in statuses
                )
                blobs = await off_loop(self._blobs, kept.records, kept.digests, kept.kept)
                unchanged = state.version == blobs.version and not repair
            if not unchanged and old is not None and old.digests:
                diff = await off_loop(_diff, old, blobs)
            # What was served (a whole by_symbol read back from Redis on a restart) is not
            # needed any more: it goes before the write makes its JSON, not after.
            old = None

        verdict = self._judge(
            blobs.listed, blobs.count, blobs.version, norm.server_time, state, unusable
        )
        if not verdict.accept:
            return await self._reject(verdict.reason, state, started, verdict.streak, blobs)

        meta = self._meta(
            fetched, blobs.version, blobs.count, blobs.listed, norm.server_time, started, held_rows
        )
        meta = dataclasses.replace(meta, rate_limits=norm.rate_limits)
        duration_ms = meta.duration_ms
        # What Redis holds, if we know its content: then only the difference is sent.
        previous = None
        if state.complete and not repair:
            if unchanged:
                previous = blobs
            elif self.held is not None and self.held.meta.version == state.version:
                previous = self.held.blobs
            elif served_partly is not None:
                previous = served_partly
        # The row digests a restart may trust: only for a snapshot that is exactly what these
        # rows derive to (no row held back) from a payload without odd rows (whose warnings a
        # trusted cycle would not repeat).
        rows = None
        if not held_rows and not (norm.dropped or norm.refused or norm.duplicates or norm.lenient):
            rows = encode_row_digests(
                blobs.version, self._fingerprint(), b"".join(self.memo.digests), self.memo.region
            )
        # The JSON derived this cycle goes out as it is (see _derive); `blobs`, held in
        # memory, keeps none.
        made, norm = norm.json, dataclasses.replace(norm, json=None)
        await self.store.commit(
            await off_loop(blobs.with_json, made) if made is not None else blobs,
            meta,
            diff=diff,
            token=new_token(),
            previous=previous,
            publish=not unchanged,
            repair=repair,
            rows_held=len(held_rows),
            rows=rows,
        )
        if repair:
            self.log.warning("snapshot.repaired", keys=sorted(state.wrong_types))
        self.held = HeldSnapshot(blobs=blobs, meta=meta)
        outcome = Outcome.UNCHANGED if unchanged else Outcome.ACCEPTED
        log_written(self.log, blobs, diff, duration_ms, fetched.url, unchanged=unchanged)
        return CycleResult(
            self.name,
            outcome,
            diff=diff,
            version=blobs.version,
            count=blobs.count,
            listed=blobs.listed,
            duration_ms=duration_ms,
        )

    async def _served(
        self, norm: normalize.Normalized, state: StoredState
    ) -> tuple[listing.SnapshotBlobs | None, bool]:
        """What Redis serves now, to compare this payload's rows with (None: nothing), and
        whether it was read back only where it can differ (see :meth:`_served_partly`). The
        snapshot held in memory when it is the stored version, else read from Redis."""
        held = self.held
        if held is not None and held.blobs is not None and held.meta.version == state.version:
            return held.blobs, False
        if not state.has_by_symbol:
            return None, False
        partly = await self._served_partly(norm, state)
        if partly is not None:
            return partly, True
        served = await self.store.read_by_symbol()
        whole = await off_loop(
            listing.SnapshotBlobs.stored,
            served,
            b"",
            version=state.version or "",
            count=len(served),
            listed=0,
        )
        return whole, False

    async def _served_partly(
        self, norm: normalize.Normalized, state: StoredState
    ) -> listing.SnapshotBlobs | None:
        """What Redis serves, read only where it can differ from what this payload derives.

        The stored row digests (meta:rows) name the rows the stored snapshot was derived from,
        under this refresher's fingerprint: a row of this payload among them gives the record
        stored for its symbol, so only the other rows' symbols are read (HMGET). Returns the
        served snapshot as records (the same rows) and stored JSON (the others), or None when
        that is not known exactly (no usable row digests, odd rows, many changed rows, a hash
        whose length is not meta's count, or a stored symbol this payload lacks, whose name
        only a whole read gives): then the caller reads the whole hash. Like the renewal of a
        payload whose every row matches, it trusts the stored rows it does not read to be
        what meta:rows says they were derived from (only this daemon writes them)."""
        rows, version, count, listed = state.rows, state.version, state.count, state.listed
        if (
            rows is None
            or version is None
            or count is None
            or listed is None
            or rows.version != version
            or rows.fingerprint != self._fingerprint()
            or not state.complete
            or state.wrong_types
            or state.repair_requested
            or state.held_rows
            or norm.dropped
            or norm.refused
            or norm.duplicates
            or norm.lenient
        ):
            return None
        stored_rows = {
            rows.digests[at : at + DIGEST_BYTES] for at in range(0, len(rows.digests), DIGEST_BYTES)
        }
        same: dict[str, SymbolRecord] = {}
        for row_digest, outcome in zip(self.memo.digests, self.memo.outcomes, strict=True):
            record = outcome.record
            if record is not None and row_digest in stored_rows:
                same[record.symbol] = record
        others = [rec.symbol for rec in norm.records if rec.symbol not in same]
        if len(others) > _PARTLY_AT_MOST:
            return None
        # The hash holds as many symbols as meta says (a field deleted by another writer would
        # otherwise go unnoticed: the same rows are not read back), and every one of them is
        # one of these (the rows' symbols are unique on both sides); else some stored symbol
        # is gone from the payload, and only a whole read names it.
        if await self.store.count_rows() != count:
            return None
        found = await self.store.read_rows(others)
        if len(same) + len(found) != count:
            return None
        digests = {name: norm.digests[name] for name in same}
        digests.update((name, normalize.digest(blob)) for name, blob in found.items())
        return listing.SnapshotBlobs(
            version=version,
            count=count,
            listed=listed,
            digests=digests,
            records=same,
            kept=found,
            listed_names=(),
            listing_digest=None,
        )

    def _derive(self, box: list[bytes]) -> tuple[normalize.Normalized, listing.SnapshotBlobs]:
        """Records and snapshot blobs of the reply in `box`, which it empties (runs in the
        worker thread; one cycle at a time per market is what makes the row memo safe)."""
        body = box.pop()
        # A reply under 4 MiB keeps each new record's JSON until the write, so that a first
        # cycle encodes every row once, not twice; a 17 MB reply's (about as large as the
        # reply) would cost more memory than it saves time.
        keep_json = len(body) < payload.WHOLE_BELOW
        norm = normalize.normalize(body, market=self.name, memo=self.memo, keep_json=keep_json)
        del body
        last = self._derived
        if last is not None and last[0] is self.market:
            if norm.same_rows:
                # The same rows as last time under the same listing settings: the same
                # listing, JSON and version, so they are not rebuilt (most cycles are so).
                return norm, last[1]
            if norm.replaced is not None:
                # A few rows changed in place: unless one changed its status or quote, the
                # listing's order stands and only the version is computed again.
                blobs = listing.replace_rows(last[1], norm.replaced, norm.digests)
                if blobs is not None:
                    self._derived = (self.market, blobs)
                    return norm, blobs
        blobs = self._blobs(norm.records, norm.digests)
        self._derived = (self.market, blobs)
        return norm, blobs

    def _blobs(
        self,
        records: tuple[SymbolRecord, ...],
        digests: Mapping[str, bytes],
        kept: Mapping[str, bytes] | None = None,
    ) -> listing.SnapshotBlobs:
        listed = listing.prioritize(
            records,
            list_statuses=self.market.list_statuses,
            quote_priority=self.market.quote_priority,
            pinned=self.market.pinned,
        )
        return listing.build_snapshot(records, listed, digests, kept)

    async def _reject(
        self,
        reason: str,
        state: StoredState,
        started: float,
        streak: ShrinkStreak | None,
        blobs: listing.SnapshotBlobs | None = None,
    ) -> CycleResult:
        self.log.warning(
            "refresh.rejected",
            reason=reason,
            listed=blobs.listed if blobs else None,
            version=blobs.version if blobs else None,
        )
        await self.store.record_failure(
            outcome="rejected", error=f"rejected: {reason}", token=new_token(), streak=streak
        )
        await self._keep_serving(state)
        return CycleResult(
            self.name,
            Outcome.REJECTED,
            reason=reason,
            version=blobs.version if blobs else None,
            listed=blobs.listed if blobs else 0,
            duration_ms=(time.perf_counter() - started) * 1000.0,
        )

    async def _upstream_failed(
        self, err: UpstreamError, state: StoredState, started: float
    ) -> CycleResult:
        wait: float | None = None
        message = scrub_text(f"{err.kind}: {err}")
        if isinstance(err, RateLimited):
            wait = err.retry_after if err.retry_after is not None else self.upstream.ban_fallback
            self.ban_until = time.time() + wait
        permanent = not err.retryable
        level = self.log.error if permanent else self.log.warning
        level(
            "refresh.failed",
            error=message,
            kind=err.kind,
            status=err.status,
            used_weight=err.used_weight,
            wait_s=wait,
            permanent=permanent,
        )
        try:
            if isinstance(err, RateLimited) and not isinstance(err, SharedBan):
                self._ban_unsaved = True
                await self.store.set_ban(self.ban_until)
                self._ban_unsaved = False
            await self.store.record_failure(outcome="error", error=message, token=new_token())
            await self._keep_serving(state)
        except RECOVERABLE as exc:
            return redis_failed(self.log, self.name, exc, started)
        return CycleResult(
            self.name,
            Outcome.FAILED,
            reason=message,
            wait=wait,
            retryable=not permanent,
            duration_ms=(time.perf_counter() - started) * 1000.0,
        )

    async def _keep_serving(self, state: StoredState) -> None:
        """After a failed cycle: put the cache back if it is gone."""
        if state.has_symbols and state.has_by_symbol:
            return
        source = await self.store.republish(self.held, token=new_token())
        if source is not None:
            self.log.warning("refresh.fallback", source=source)

    async def watch(self) -> str | None:
        """Between cycles: republish if Redis lost the cache (restart, flush, expiry).

        Returns where the data came from when it republished. Redis errors propagate.
        """
        state = await self.store.read_state()
        if state.wrong_types:
            return None  # the next cycle reports and repairs it; republishing would fail
        if state.has_symbols and state.has_by_symbol:
            return None
        if self.held is None and not state.has_last_good:
            return None
        source = await self.store.republish(self.held, token=new_token())
        if source is not None:
            self.log.warning("refresh.fallback", source=source, reason="cache missing")
        return source
