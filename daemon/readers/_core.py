"""What the sync and async readers share: options, results, scripts, decoding, the near-cache.

Nothing here does I/O. The near-cache rules live in :class:`NearCache` so that both readers
apply exactly the same ones; the readers only move bytes between Redis and this state.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import redis

from daemon.config.redis_target import redact_url, resolve_redis_url
from daemon.config.settings import MARKETS, Loaded, Settings, load_settings
from daemon.contract.keys import MarketKeys, keys_for, market_keys
from daemon.contract.meta import MetaFields, decode_timestamp
from daemon.contract.record import SymbolRecord
from daemon.contract.record import decode_listing as _decode_listing

# Re-exported: both readers decode with it, and the package exports record_to_dict.
from daemon.contract.record import decode_record as decode_record
from daemon.contract.record import record_to_dict as record_to_dict
from daemon.redis.clients import ConnectionConfig

# A library inside the bot's processes: stdlib logging, silent unless the application
# configures handlers. The NullHandler on the package's namespace keeps Python's last-resort
# handler from printing our warnings to stderr when the application configured nothing.
logging.getLogger("symbold").addHandler(logging.NullHandler())
log = logging.getLogger("symbold.readers")

# ---------------------------------------------------------------------------------------------
# options and results
# ---------------------------------------------------------------------------------------------


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
class SnapshotInfo:
    """One market's snapshot as Redis holds it, read in one round trip.

    ``version`` is None when there is no snapshot at all (the daemon never ran, or Redis was
    emptied and nothing has been republished yet). ``age`` is seconds since the daemon last
    confirmed the data (``refreshed_at``, else ``meta.fetched_at``), by this host's clock.
    ``has_symbols`` False with ``has_last_good`` True means the expiring list is gone and
    :meth:`get_symbols` is serving the ``last_good`` copy.
    """

    market: str
    version: str | None
    count: int | None
    listed: int | None
    stale: bool
    age: float | None
    refreshed_at: float | None
    fetched_at: float | None
    has_symbols: bool
    has_last_good: bool
    source: str | None
    last_error: str | None

    @property
    def present(self) -> bool:
        return self.version is not None


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
    last_events: Mapping[str, str | None] = field(default_factory=dict)
    """Per market: the version named by the last events message received (None: none yet,
    or the message named none)."""


# ---------------------------------------------------------------------------------------------
# connection and keys
# ---------------------------------------------------------------------------------------------


def connection_config_for(loaded: Loaded | None) -> tuple[Loaded, ConnectionConfig]:
    """The daemon's settings (loaded now if not given) and the connection they resolve to,
    by the project's one URL order (``[redis] url`` > ``REDIS_URL`` > ``CELERY_BROKER_URL``)."""
    if loaded is None:
        loaded = load_settings()
    url = resolve_redis_url(loaded.settings.redis.url, loaded.redis_url_origin, loaded.environ)
    log.debug("reader.configured %s", url.describe())
    return loaded, ConnectionConfig(url=url, settings=loaded.settings.redis)


def subscriber_config(config: ConnectionConfig) -> ConnectionConfig:
    """The events connection's settings: no hidden retry, no library health check.

    redis-py's pub/sub object reconnects and resubscribes by itself inside a retried read, so a
    dropped connection could go unnoticed while messages were missed. With no retries the error
    reaches the subscriber loop, which marks the channel lost before resubscribing; its own
    PINGs replace the health check.
    """
    return ConnectionConfig(
        url=config.url,
        settings=msgspec.structs.replace(
            config.settings, retry_attempts=0, health_check_interval=0
        ),
    )


def key_table(settings: Settings | None, prefix: str) -> dict[str, MarketKeys]:
    """Key names of the configured markets (with their overrides when `settings` is given)."""
    if settings is None:
        return {m: market_keys(m, prefix) for m in MARKETS}
    return {m: keys_for(settings, m) for m in MARKETS}


def extra_market_keys(market: str, prefix: str) -> MarketKeys:
    """Key names of a market outside the configured three (default names under `prefix`)."""
    if not isinstance(market, str) or not market:
        raise TypeError(f"market must be a non-empty str, got {market!r}")
    return market_keys(market, prefix)


# ---------------------------------------------------------------------------------------------
# scripts (one round trip, one consistent view: all of a market's keys share a hash tag)
# ---------------------------------------------------------------------------------------------


NO_WRITES: Final = "#!lua flags=no-writes\n"


@dataclass(frozen=True, slots=True)
class Script:
    """A read-only Lua script in its two forms.

    ``ro_source`` carries the ``no-writes`` flag, which ``EVALSHA_RO`` (Redis >= 7.0) needs to
    run it and which lets it run on replicas and under OOM; a user whose ACL allows only reads
    can call it. ``source`` is the bare body, for plain ``EVALSHA`` on older servers, whose Lua
    does not understand the flags line.
    """

    source: str
    sha: str
    ro_source: str
    ro_sha: str

    @classmethod
    def of(cls, body: str) -> Script:
        flagged = NO_WRITES + body
        return cls(body, _sha1(body), flagged, _sha1(flagged))


def _sha1(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 (Redis's script id)


# KEYS: by_symbol; ARGV: symbol. -> record, or 1 (the hash exists, no such symbol), or 0 (there
# is no by_symbol hash at all: evicted, flushed, never written). One HGET when the symbol is there.
LOOKUP_SCRIPT: Final = Script.of(
    "local r = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if r then return r end\n"
    "return redis.call('EXISTS', KEYS[1])"
)

# KEYS: by_symbol, meta; ARGV: symbol. -> {record, or nil, or 0 when there is no by_symbol
# hash; version or nil}
RECORD_SCRIPT: Final = Script.of(
    "local r = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if not r and redis.call('EXISTS', KEYS[1]) == 0 then r = 0 end\n"
    "return {r, redis.call('HGET', KEYS[2], 'version')}"
)

# KEYS: symbols, last_good, meta. -> {listing or nil, version or nil}
LISTING_SCRIPT: Final = Script.of(
    "local blob = redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[2])\n"
    "return {blob, redis.call('HGET', KEYS[3], 'version')}"
)

# KEYS: symbols, last_good, meta, by_symbol. -> {listing or nil, version or nil, {records}}
FILTER_SCRIPT: Final = Script.of(
    "local blob = redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[2])\n"
    "return {blob, redis.call('HGET', KEYS[3], 'version'), redis.call('HVALS', KEYS[4])}"
)

INFO_FIELDS: Final = ("version", "count", "listed", "stale", "fetched_at", "source", "last_error")

# KEYS: meta, refreshed_at, symbols, last_good. -> {{meta fields}, refreshed_at, 0/1, 0/1}
INFO_SCRIPT: Final = Script.of(
    "return {redis.call('HMGET', KEYS[1], "
    + ", ".join(f"'{f}'" for f in INFO_FIELDS)
    + "), redis.call('GET', KEYS[2]), redis.call('EXISTS', KEYS[3]),"
    " redis.call('EXISTS', KEYS[4])}"
)


# Script arguments after the sha: numkeys, keys, argv.


def lookup_args(keys: MarketKeys, name: str) -> tuple[Any, ...]:
    return (1, keys.by_symbol, name)


def record_args(keys: MarketKeys, name: str) -> tuple[Any, ...]:
    return (2, keys.by_symbol, keys.meta, name)


def listing_args(keys: MarketKeys) -> tuple[Any, ...]:
    return (3, keys.symbols, keys.last_good, keys.meta)


def filter_args(keys: MarketKeys) -> tuple[Any, ...]:
    return (4, keys.symbols, keys.last_good, keys.meta, keys.by_symbol)


def info_args(keys: MarketKeys) -> tuple[Any, ...]:
    return (4, keys.meta, keys.refreshed_at, keys.symbols, keys.last_good)


def read_only_scripts(config: ConnectionConfig) -> bool:
    """Whether to start with ``EVALSHA_RO``. Not on a cluster: redis-py routes plain
    ``EVALSHA`` by its key arguments but asks a node (``COMMAND GETKEYS``, one more round
    trip per call) for any other script command."""
    return config.mode != "cluster"


def is_unknown_command(exc: redis.ResponseError) -> bool:
    """The server does not have the command (``EVALSHA_RO`` before Redis 7.0)."""
    return "unknown command" in str(exc).lower()


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------


class _Named(msgspec.Struct, gc=False):
    symbol: str


_decode_names: Final = msgspec.json.Decoder(list[_Named]).decode


class _Event(msgspec.Struct, gc=False):
    version: str | None = None


_decode_event: Final = msgspec.json.Decoder(_Event).decode


def text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def decode_listing(blob: bytes | None) -> tuple[SymbolRecord, ...]:
    return () if blob is None else tuple(_decode_listing(blob))


def check_statuses(statuses: Collection[str]) -> frozenset[str]:
    # A bare string is a collection of characters: almost certainly a caller bug.
    if isinstance(statuses, str):
        raise TypeError("statuses must be a collection of strings, not a str")
    return frozenset(statuses)


def filtered(
    blob: bytes | None, values: Iterable[bytes], statuses: frozenset[str]
) -> list[SymbolRecord]:
    """Records with a status in `statuses`: those in the stored listing first, in listing
    order, then the others by symbol (plain ``str`` order)."""
    if not statuses:
        return []
    chosen = {r.symbol: r for r in map(decode_record, values) if r.status in statuses}
    out: list[SymbolRecord] = []
    if blob is not None:
        for named in _decode_names(blob):
            rec = chosen.pop(named.symbol, None)
            if rec is not None:
                out.append(rec)
    out.extend(chosen[name] for name in sorted(chosen))
    return out


def snapshot_info_from(market: str, reply: Sequence[Any], now: float) -> SnapshotInfo:
    meta_values, refreshed_raw, has_symbols, has_last_good = reply
    meta = MetaFields.from_hash(dict(zip(INFO_FIELDS, meta_values, strict=True)))
    refreshed_at = decode_timestamp(refreshed_raw)
    basis = refreshed_at if refreshed_at is not None else meta.fetched_at
    return SnapshotInfo(
        market=market,
        version=meta.version,
        count=meta.count,
        listed=meta.listed,
        stale=meta.stale,
        age=None if basis is None else max(0.0, now - basis),
        refreshed_at=refreshed_at,
        fetched_at=meta.fetched_at,
        has_symbols=bool(has_symbols),
        has_last_good=bool(has_last_good),
        source=meta.source,
        last_error=meta.last_error,
    )


def event_version(data: object) -> str | None:
    """The ``version`` of an events message; None if there is none or it cannot be read."""
    if not isinstance(data, bytes | str):
        return None
    try:
        return _decode_event(data).version
    except msgspec.DecodeError:
        return None


def lookup_result(raw: Any, market: str, keys: MarketKeys) -> SymbolRecord | None:
    """Decode a :data:`LOOKUP_SCRIPT` reply: the record, None for "no such symbol", or
    :class:`SnapshotMissingError` when the market has no ``by_symbol`` hash."""
    if isinstance(raw, bytes):
        return decode_record(raw)
    if raw == 1:
        return None
    raise SnapshotMissingError(market, keys.by_symbol)


# ---------------------------------------------------------------------------------------------
# near-cache state
# ---------------------------------------------------------------------------------------------


class MarketCache:
    """Decoded records of one market, all of one snapshot version.

    ``records`` maps symbol -> record, or None for "not in this version" (negative entries).
    The dict is replaced, never cleared in place, so a lookup that already holds it reads one
    version's entries throughout.
    """

    __slots__ = ("gen", "listing", "records", "version")

    def __init__(self) -> None:
        self.gen = 0
        self.version: str | None = None
        self.records: dict[str, SymbolRecord | None] = {}
        self.listing: tuple[SymbolRecord, ...] | None = None

    def _reset(self, version: str | None) -> None:
        self.gen += 1
        self.version = version
        self.records = {}
        self.listing = None


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


class ChannelSilentError(redis.ConnectionError):
    """No reply on the events connection for ``silence_limit`` seconds (half-open TCP)."""


class SnapshotMissingError(LookupError):
    """The market's ``by_symbol`` hash is not in Redis: evicted (``allkeys-lru``), flushed, or
    not written yet. Not the same as "no such symbol" (None): nothing can be said about any
    symbol until the daemon writes the snapshot again."""

    def __init__(self, market: str, key: str) -> None:
        super().__init__(
            f"no snapshot of market {market!r} in Redis: {key} is absent"
            " (evicted, flushed, or not written yet)"
        )
        self.market = market
        self.key = key


def describe_error(exc: BaseException, secrets: Collection[str] = ()) -> str:
    """``Type: message`` with URL credentials and the connection's `secrets` masked."""
    message = redact_url(f"{type(exc).__name__}: {exc}")
    for secret in secrets:
        message = message.replace(secret, "***")
    return message


class ReaderClosedError(RuntimeError):
    """The reader was closed; make a new one."""


POLL_INTERVAL: Final = 0.1
"""How long the sync subscriber waits for a message before checking for stop and pings, which
bounds how long ``close()`` takes."""
