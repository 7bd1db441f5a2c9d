"""The near-cache: options, status, and the state with every rule about it, shared by the
sync and async readers (which only move bytes between Redis and this state).

Nothing here does I/O. Each cached record may carry its compiled order rules
(:class:`~daemon.rules.SymbolRules`), compiled on first use and dropped with the record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import redis

from daemon.config.settings import MARKETS
from daemon.contract.keys import MarketKeys
from daemon.contract.record import SymbolRecord
from daemon.readers._core import describe_error, extra_market_keys, log
from daemon.rules import SymbolRules, rules_for


@dataclass(frozen=True, slots=True)
class NearCacheOptions:
    """How the in-process near-cache behaves (see the package docstring for the rules).

    ``ping_interval``: the events connection is PINGed this often; ``silence_limit``: with no
    reply of any kind for this long the channel counts as lost (a half-open TCP connection
    never says so itself), so this is also the most a cached answer can lag behind Redis when
    the connection dies without a sound. ``retry_min``/``retry_max``: backoff between attempts
    to resubscribe. ``max_entries``: per market, so lookups of made-up names cannot grow the
    negative cache without bound.
    """

    markets: tuple[str, ...] = MARKETS
    ping_interval: float = 1.0
    silence_limit: float = 3.0
    retry_min: float = 0.05
    retry_max: float = 5.0
    max_entries: int = 100_000

    def __post_init__(self) -> None:
        if isinstance(self.markets, str):
            raise TypeError("markets must be a collection of market names, not a str")
        if not 0 < self.ping_interval < self.silence_limit:
            raise ValueError("need 0 < ping_interval < silence_limit")
        if not 0 < self.retry_min <= self.retry_max:
            raise ValueError("need 0 < retry_min <= retry_max")
        if self.max_entries < 1:
            raise ValueError("max_entries must be at least 1")


def near_cache_options(near_cache: bool | NearCacheOptions) -> NearCacheOptions | None:
    if isinstance(near_cache, NearCacheOptions):
        return near_cache
    return NearCacheOptions() if near_cache else None


@dataclass(frozen=True, slots=True)
class NearCacheStatus:
    """A consistent-enough snapshot of the near-cache's counters (for health checks, tests)."""

    enabled: bool
    live: bool
    """Subscribed and heard from within ``silence_limit``: hits may be served from memory."""
    subscriptions: int
    """Times the events channel became live (the first subscription counts)."""
    drops: int
    """Times a live channel was lost."""
    events: int
    """Messages received on the events channels."""
    invalidations: int
    """Times a market's cached records were dropped (event, newer version seen, resubscribe)."""
    fills: int
    """Reads that went to Redis with the near-cache enabled (misses and not-live reads)."""
    versions: Mapping[str, str | None] = field(default_factory=dict)
    """Per market: the snapshot version the cached records belong to (None: nothing cached)."""
    entries: Mapping[str, int] = field(default_factory=dict)
    """Per market: cached lookups (records and negative answers)."""
    compiled: Mapping[str, int] = field(default_factory=dict)
    """Per market: cached records whose order rules are compiled and kept next to them."""
    last_events: Mapping[str, str | None] = field(default_factory=dict)
    """Per market: the version named by the last events message received (None: none yet,
    or the message named none)."""


class _Event(msgspec.Struct, gc=False):
    version: str | None = None


_decode_event: Final = msgspec.json.Decoder(_Event).decode


def event_version(data: object) -> str | None:
    """The ``version`` of an events message; None if there is none or it cannot be read."""
    if not isinstance(data, bytes | str):
        return None
    try:
        return _decode_event(data).version
    except msgspec.DecodeError:
        return None


class MarketCache:
    """Decoded records of one market, all of one snapshot version.

    ``records`` maps symbol -> record, or None for "not in this version" (negative entries).
    ``compiled`` maps symbol -> (record, its compiled rules), filled on a record's first
    :meth:`rules_of`; an entry counts only while its record is the very object
    ``records`` holds. Both dicts are replaced, never cleared in place, so a lookup that
    already holds one reads one version's entries throughout, and a new version drops the
    compiled rules together with the records.
    """

    __slots__ = ("compiled", "gen", "listing", "records", "version")

    def __init__(self) -> None:
        self.gen = 0
        self.version: str | None = None
        self.records: dict[str, SymbolRecord | None] = {}
        self.compiled: dict[str, tuple[SymbolRecord, SymbolRules]] = {}
        self.listing: tuple[SymbolRecord, ...] | None = None

    def _reset(self, version: str | None) -> None:
        self.gen += 1
        self.version = version
        self.records = {}
        self.compiled = {}
        self.listing = None

    def rules_of(self, name: str, record: SymbolRecord) -> SymbolRules:
        """`record`'s compiled rules: the ones kept next to it when `record` is the object
        cached under `name`, else compiled now and kept there (raises
        :class:`~daemon.rules.RulesError` for malformed filters; nothing is kept then).

        Lock-free: the identity check makes a racing store harmless. Rules compiled for a
        record of an older version and stored after a reset are never served for the new
        version's record (another object), only overwritten on its first use.
        """
        compiled = self.compiled
        pair = compiled.get(name)
        if pair is not None and pair[0] is record:
            return pair[1]
        rules = rules_for(record)
        if self.records.get(name) is record:  # only next to the cached record itself
            compiled[name] = (record, rules)
        return rules


_monotonic: Final = time.monotonic


class NearCache:
    """The near-cache's state and every rule about it, shared by the sync and async readers.

    Readers look up ``markets[m].records`` without a lock (hot path), and only when
    ``monotonic() < live_until``. Everything else changes under ``_lock``:

    - Entries come only from reads of Redis that returned the snapshot version with them
      (one script, so the record and the version are consistent) via :meth:`offer`.
    - A read takes a *ticket* (the market's generation) before it goes to Redis. Emptying a
      market or changing its version bumps the generation (adding entries of the same
      version does not). If the ticket is still current when the
      reply comes back, the read started after the cached version was established, so what it
      saw is at least as new: a different version replaces the cached one. If the ticket is
      stale, the order of the two is unknown, and a different version empties the cache
      (never serves either). So once any read saw version V2, no later lookup is answered
      from V1 entries, whatever the interleaving; no ordering of the version hashes is needed.
    - An events message for a market empties it unless it names the cached version (versions
      are content hashes, so equal version = equal data: a late or repeated message is
      harmless). A message never puts data in.
    - Becoming live (all channels confirmed subscribed) empties every market first: anything
      published while we were not subscribed was missed. Losing the channel sets
      ``live_until`` to 0, so lookups go to Redis until the next subscription.
    """

    def __init__(self, options: NearCacheOptions) -> None:
        self.options = options
        self.markets: dict[str, MarketCache] = {m: MarketCache() for m in options.markets}
        self.live_until = 0.0
        self.live = False
        self._lock = threading.Lock()
        self.subscriptions = 0
        self.drops = 0
        self.events = 0
        self.invalidations = 0
        self.fills = 0
        self.last_events: dict[str, str | None] = {}

    # -- reads of Redis ---------------------------------------------------------------------

    def offer(
        self,
        mc: MarketCache,
        ticket: int,
        version: str | None,
        name: str | None = None,
        record: SymbolRecord | None = None,
        listing: tuple[SymbolRecord, ...] | None = None,
    ) -> None:
        """A read that started at `ticket` saw `version` (and this record or listing)."""
        with self._lock:
            self.fills += 1
            if mc.gen == ticket:
                if version is None or version != mc.version:
                    if mc.version is not None or mc.records or mc.listing is not None:
                        self.invalidations += 1
                    mc._reset(version)
            elif version != mc.version:
                # Raced with another change: cannot tell which view is newer, keep neither.
                if mc.version is not None:
                    self.invalidations += 1
                mc._reset(None)
                return
            if version is None:
                return  # no snapshot: nothing to cache
            if name is not None and len(mc.records) < self.options.max_entries:
                mc.records[name] = record
            if listing is not None:
                mc.listing = listing

    # -- the events channel -----------------------------------------------------------------

    def on_event(self, market: str, data: object) -> None:
        version = event_version(data)
        with self._lock:
            self.events += 1
            self.last_events[market] = version
            mc = self.markets.get(market)
            if mc is None or (version is not None and version == mc.version):
                return
            if mc.version is not None:
                self.invalidations += 1
            mc._reset(None)

    def on_message(
        self,
        message: Mapping[str, Any],
        channels: Mapping[bytes, str],
        pending: set[bytes],
        now: float,
    ) -> bool:
        """Apply one pub/sub message (an event, or a subscribe confirmation taken off
        `pending`); True when waiters should be woken. Both subscribers call this, so the
        sync and async readers treat the channel alike. Any message renews a live channel."""
        try:
            kind = message["type"]
            if kind == "message":
                market = channels.get(message["channel"])
                if market is None:
                    return False
                self.on_event(market, message["data"])
                return True
            if kind != "subscribe":
                return False
            pending.discard(message["channel"])
            if pending:
                return False
            # Also after a reconnect: whatever was published in between was missed, so
            # start afresh.
            fresh = not self.live
            self.subscribed(now)
            if fresh:
                log.debug("reader.channel_live channels=%d", len(channels))
            return True
        finally:
            self.heard(now)

    def subscribed(self, now: float) -> None:
        """Every channel is (re)subscribed: forget everything, then serve from memory again."""
        with self._lock:
            for mc in self.markets.values():
                if mc.version is not None:
                    self.invalidations += 1
                mc._reset(None)
            if not self.live:
                self.subscriptions += 1
            self.live = True
            self.live_until = now + self.options.silence_limit

    def heard(self, now: float) -> None:
        """Any reply on the channel renews the lease of a live channel."""
        if self.live:
            self.live_until = now + self.options.silence_limit

    def lost(self) -> bool:
        """The channel is gone; True if it was live."""
        with self._lock:
            was = self.live
            self.live = False
            self.live_until = 0.0
            if was:
                self.drops += 1
            return was

    def forget_all(self, *, after_fork: bool = False) -> None:
        """After close or fork: nothing live, nothing cached (and, in a forked child, a fresh
        lock: another thread of the parent may have held it at the fork)."""
        if after_fork:
            self._lock = threading.Lock()
        with self._lock:
            self.live = False
            self.live_until = 0.0
            for mc in self.markets.values():
                mc._reset(None)

    def status(self) -> NearCacheStatus:
        with self._lock:
            return NearCacheStatus(
                enabled=True,
                live=self.live and _monotonic() < self.live_until,
                subscriptions=self.subscriptions,
                drops=self.drops,
                events=self.events,
                invalidations=self.invalidations,
                fills=self.fills,
                versions={m: mc.version for m, mc in self.markets.items()},
                entries={m: len(mc.records) for m, mc in self.markets.items()},
                compiled={m: len(mc.compiled) for m, mc in self.markets.items()},
                last_events=dict(self.last_events),
            )


DISABLED_STATUS: Final = NearCacheStatus(
    enabled=False,
    live=False,
    subscriptions=0,
    drops=0,
    events=0,
    invalidations=0,
    fills=0,
)


def channel_table(
    options: NearCacheOptions, keys_of: Mapping[str, MarketKeys], prefix: str
) -> dict[bytes, str]:
    """events channel name (bytes, as a bytes client reports it) -> market."""
    out: dict[bytes, str] = {}
    for market in options.markets:
        keys = keys_of.get(market) or extra_market_keys(market, prefix)
        out[keys.events.encode()] = market
    return out


def backoff(previous: float, options: NearCacheOptions) -> float:
    return min(options.retry_max, max(options.retry_min, previous * 2))


def subscriber_failed(
    near: NearCache,
    notify: Callable[[], None],
    exc: Exception,
    secrets: Collection[str],
    delay: float,
) -> float:
    """What both subscribers do when their listening ends with `exc` (call it inside the
    ``except`` block): the channel is lost, waiters are woken, and the next retry delay is
    returned. A Redis or socket error after a live channel logs a warning and restarts the
    back-off; anything else is a bug here, logged with its traceback, and the subscription
    goes on."""
    was_live = near.lost()
    notify()
    if not isinstance(exc, redis.RedisError | OSError):
        log.exception("reader.subscriber_failed")
    elif was_live:
        log.warning("reader.channel_lost: %s", describe_error(exc, tuple(secrets)))
        return near.options.retry_min
    return delay
