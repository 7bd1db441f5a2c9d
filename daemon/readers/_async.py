"""The asynchronous symbol reader, and the one source of both reader twins.

``scripts/unasync.py`` generates ``readers/_sync.py`` from ``readers/_async.py`` by token
substitution (see its table), so the two cannot drift: edit the asyncio source and rerun
the script. What a task and a thread
truly do differently lives in the hand-written ``_backend_*`` pair of modules.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Collection
from typing import Any

import redis
import redis.asyncio  # unasync: remove
from redis.exceptions import NoScriptError

from daemon.config.loader import Config
from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import Loaded, Settings
from daemon.contract.keys import MarketKeys
from daemon.contract.record import SymbolRecord
from daemon.readers._backend_async import AsyncClients, AsyncSignal, AsyncSubscriber, fork_safe
from daemon.readers._core import (
    ReaderClosedError,
    SnapshotInfo,
    SnapshotMissingError,
    check_statuses,
    decode_listing,
    decode_record,
    extra_market_keys,
    filtered,
    key_table,
    log,
    lookup_result,
    resolve_config,
    snapshot_info_from,
    text,
)
from daemon.readers._near_cache import (
    DISABLED_STATUS,
    MarketCache,
    NearCache,
    NearCacheOptions,
    NearCacheStatus,
    channel_table,
    near_cache_options,
)
from daemon.readers._scripts import (
    FILTER_SCRIPT,
    INFO_SCRIPT,
    LISTING_SCRIPT,
    LOOKUP_SCRIPT,
    RECORD_SCRIPT,
    Script,
    filter_args,
    info_args,
    is_unknown_command,
    listing_args,
    lookup_args,
    read_only_scripts,
    record_args,
)
from daemon.redis.clients import ConnectionConfig
from daemon.rules import SymbolRules, rules_for

_monotonic = time.monotonic


class AsyncSymbolReader:
    """Reads symbol records from the snapshot the daemon keeps in Redis; asynchronous calls.

    The blocking reader is thread-safe (one reader serves every thread of a process, on one
    bounded connection pool) and fork-safe (a forked child reconnects, and restarts its
    subscriber, on first use). The asyncio one is bound to the event loop it is first used
    in: use one per loop. Both have the same methods and rules.

    Without the near-cache every call is one round trip (:meth:`get_symbol` a single HGET when
    the symbol is there, a script otherwise). With
    ``near_cache=True`` (or :class:`NearCacheOptions`) decoded records of the current snapshot
    version are kept in memory and dropped when the daemon publishes a new version on the
    market's events channel; while that channel is not live, every call reads Redis. Close
    the reader when done, or use it as a context manager.
    """

    def __init__(
        self,
        config: ConnectionConfig,
        settings: Settings | None = None,
        *,
        near_cache: bool | NearCacheOptions = False,
    ) -> None:
        self._config = config
        self._prefix = (settings.redis if settings is not None else config.settings).key_prefix
        self._keys: dict[str, MarketKeys] = key_table(settings, self._prefix)
        self._clients = AsyncClients(config)
        # EVALSHA_RO (read-only ACL users can run it) until the server says it has no such
        # command; then plain EVALSHA for this reader's lifetime.
        self._read_only = read_only_scripts(config)
        options = near_cache_options(near_cache)
        self._near: NearCache | None = NearCache(options) if options is not None else None
        self._lock = threading.Lock()
        self._signal = AsyncSignal()
        self._subscriber: AsyncSubscriber | None = None
        self._closed = False
        fork_safe(self)

    @classmethod
    def from_settings(
        cls,
        config: Config | Loaded | None = None,
        *,
        near_cache: bool | NearCacheOptions = False,
    ) -> AsyncSymbolReader:
        """A reader for the Redis the daemon uses, resolved by the one loader
        (:func:`daemon.config.loader.load_config`): same settings file, same URL order
        (``[redis] url`` > ``REDIS_URL`` > ``CELERY_BROKER_URL`` > localhost), same key names.

        `config`: a :class:`~daemon.config.loader.Config` already loaded (e.g. the CLI's),
        or settings loaded with ``load_settings`` (:class:`~daemon.config.settings.Loaded`,
        still accepted), or None to load now. Raises
        :class:`~daemon.config.settings.ConfigError` for a bad setting or URL.
        """
        resolved = resolve_config(config)
        return cls(resolved.connection, resolved.settings, near_cache=near_cache)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        settings: Settings | None = None,
        near_cache: bool | NearCacheOptions = False,
    ) -> AsyncSymbolReader:
        """A reader for `url`; key names and timeouts from `settings` (default: defaults)."""
        settings = settings if settings is not None else Settings()
        config = ConnectionConfig(url=parse_redis_url(url, "argument"), settings=settings.redis)
        return cls(config, settings, near_cache=near_cache)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def client(self) -> redis.asyncio.Redis:
        """The reader's (bytes) client, e.g. to PING on the same pool."""
        if self._closed:
            raise ReaderClosedError(f"this {type(self).__name__} is closed")
        return self._clients.get()

    def keys(self, market: str = "spot") -> MarketKeys:
        """The key names this reader uses for `market`."""
        keys = self._keys.get(market)
        if keys is None:
            keys = self._keys.setdefault(market, extra_market_keys(market, self._prefix))
        return keys

    async def _eval(self, script: Script, args: tuple[Any, ...]) -> Any:
        client = self.client
        if self._read_only:
            command, sha, source = "EVALSHA_RO", script.ro_sha, script.ro_source
        else:
            command, sha, source = "EVALSHA", script.sha, script.source
        try:
            return await client.execute_command(command, sha, *args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            # First use on this server, or it restarted: load and run again.
            await client.script_load(source)
            return await client.execute_command(command, sha, *args)  # type: ignore[no-untyped-call]
        except redis.ResponseError as exc:
            if command != "EVALSHA_RO" or not is_unknown_command(exc):
                raise
            # A server older than Redis 7.0: plain EVALSHA (and unflagged scripts) from now on.
            self._read_only = False
            log.debug("reader.evalsha_ro_unsupported")
            return await self._eval(script, args)

    def _cache_for(self, market: str) -> tuple[NearCache, MarketCache] | tuple[None, None]:
        near = self._near
        if near is not None:
            mc = near.markets.get(market)
            if mc is not None:
                self._ensure_subscriber(near)
                return near, mc
        return None, None

    def _ensure_subscriber(self, near: NearCache) -> None:
        if self._subscriber is not None or self._closed:
            return
        _ = self.client  # binds an asyncio reader to this loop (or refuses another one)
        with self._lock:
            if self._subscriber is not None or self._closed:
                return
            subscriber = AsyncSubscriber(
                near,
                self._config,
                channel_table(near.options, self._keys, self._prefix),
                self._signal,
                self._config.url.secrets(),
            )
            subscriber.start()
            weakref.finalize(self, subscriber.cancel)
            self._subscriber = subscriber

    async def start(self) -> None:
        """Start the near-cache's subscriber now rather than on first use (no-op without)."""
        if self._closed:
            raise ReaderClosedError(f"this {type(self).__name__} is closed")
        if self._near is not None:
            self._ensure_subscriber(self._near)

    # -- reads ------------------------------------------------------------------------------

    async def get_symbol(self, name: str, market: str = "spot") -> SymbolRecord | None:
        """The record of `name` (any status), or None if the snapshot has no such symbol.

        Raises :class:`~daemon.readers.SnapshotMissingError` when there is no snapshot to ask
        (the market's ``by_symbol`` hash is absent: evicted, flushed, not written yet), and
        ``redis.RedisError`` when Redis cannot be read: neither is "no such symbol".
        """
        near = self._near
        if near is not None:
            mc = near.markets.get(market)
            if mc is not None:
                if _monotonic() < near.live_until:
                    try:
                        return mc.records[name]
                    except KeyError:
                        pass
                return await self._fill(near, mc, name, market)
        keys = self._keys.get(market) or self.keys(market)
        raw = await self.client.execute_command("HGET", keys.by_symbol, name)  # type: ignore[no-untyped-call]
        if raw is not None:
            return decode_record(raw)
        # Rare, so a second round trip: one script tells "no such symbol" from "no snapshot"
        # atomically (a script on every lookup would cost the hot path ~20%).
        return lookup_result(await self._eval(LOOKUP_SCRIPT, lookup_args(keys, name)), market, keys)

    async def _fill(
        self, near: NearCache, mc: MarketCache, name: str, market: str
    ) -> SymbolRecord | None:
        self._ensure_subscriber(near)
        ticket = mc.gen
        keys = self.keys(market)
        raw, version = await self._eval(RECORD_SCRIPT, record_args(keys, name))
        if isinstance(raw, int):  # the script's marker: no by_symbol hash
            near.offer(mc, ticket, text(version))
            raise SnapshotMissingError(market, keys.by_symbol)
        record = None if raw is None else decode_record(raw)
        near.offer(mc, ticket, text(version), name, record)
        return record

    async def get_rules(self, name: str, market: str = "spot") -> SymbolRules | None:
        """The compiled order rules of `name` (see :mod:`daemon.rules`), or None if the
        snapshot has no such symbol; the same None and errors as :meth:`get_symbol`, plus
        :class:`~daemon.rules.RulesError` when the stored filters cannot be compiled.

        With the near-cache the rules are compiled once per cached record, on first use, and
        kept next to it: a hit costs what :meth:`get_symbol`'s does plus one dict lookup, no
        parsing, and returns the same ``SymbolRules`` object each time. A new snapshot version
        drops them with the record. Without the near-cache each call reads the record (one
        HGET) and compiles it.
        """
        near = self._near
        if near is not None:
            mc = near.markets.get(market)
            if mc is not None:
                if _monotonic() < near.live_until:
                    try:
                        record = mc.records[name]
                    except KeyError:
                        record = await self._fill(near, mc, name, market)
                else:
                    record = await self._fill(near, mc, name, market)
                return None if record is None else mc.rules_of(name, record)
        record = await self.get_symbol(name, market)
        return None if record is None else rules_for(record)

    async def get_symbols(
        self, market: str = "spot", statuses: Collection[str] | None = None
    ) -> list[SymbolRecord]:
        """The listed symbols in priority order, as the daemon stored them (``symbols``, or
        ``last_good`` once that has expired); ``[]`` when neither exists.

        With `statuses`, every record whose status is one of them (listed or not): those in
        the stored listing first, in listing order, then the others ordered by symbol. That
        reads ``by_symbol``, so, like :meth:`get_symbol`, it raises
        :class:`~daemon.readers.SnapshotMissingError` when that hash is absent (same round
        trip) instead of answering ``[]``.
        """
        keys = self.keys(market)
        near, mc = self._cache_for(market)
        if statuses is not None:
            wanted = check_statuses(statuses)
            ticket = mc.gen if mc is not None else 0
            blob, version, values = await self._eval(FILTER_SCRIPT, filter_args(keys))
            if near is not None and mc is not None:
                near.offer(mc, ticket, text(version))
            if not values:  # Redis has no empty hashes: no by_symbol hash at all
                raise SnapshotMissingError(market, keys.by_symbol)
            return filtered(blob, values, wanted)
        if near is not None and mc is not None:
            if _monotonic() < near.live_until:
                cached = mc.listing
                if cached is not None:
                    return list(cached)
            ticket = mc.gen
            blob, version = await self._eval(LISTING_SCRIPT, listing_args(keys))
            listing = decode_listing(blob)
            near.offer(mc, ticket, text(version), listing=listing if blob is not None else None)
            return list(listing)
        blob, _ = await self._eval(LISTING_SCRIPT, listing_args(keys))
        return list(decode_listing(blob))

    async def snapshot_info(self, market: str = "spot") -> SnapshotInfo:
        """Version, counts, staleness and age of `market`'s snapshot (one round trip)."""
        near, mc = self._cache_for(market)
        ticket = mc.gen if mc is not None else 0
        reply = await self._eval(INFO_SCRIPT, info_args(self.keys(market)))
        info = snapshot_info_from(market, reply, time.time())
        if near is not None and mc is not None:
            near.offer(mc, ticket, info.version)
        return info

    # -- near-cache state -------------------------------------------------------------------

    def near_cache_status(self) -> NearCacheStatus:
        return DISABLED_STATUS if self._near is None else self._near.status()

    async def wait_until(
        self,
        predicate: Callable[[NearCacheStatus], bool],
        # unasync: timeout: float | None = 5.0,
    ) -> None:  # unasync: ) -> bool:
        """Wait until `predicate(near_cache_status())` holds, re-checked whenever the
        subscriber changes state (subscribed, lost, event received).

        The blocking reader gives up after `timeout` seconds (None: never) and returns
        whether the predicate holds; bound the asyncio reader's wait with ``asyncio.timeout``.
        """
        if self._near is not None:
            self._ensure_subscriber(self._near)

        def ready() -> bool:
            return predicate(self.near_cache_status())

        await self._signal.wait_for(ready)  # unasync: return self._signal.wait_for(ready, timeout)

    # -- lifetime ---------------------------------------------------------------------------

    async def aclose(self) -> None:  # unasync: def close(self, timeout: float = 5.0) -> None:
        """Stop the subscriber and close the connections; idempotent. The blocking reader
        waits up to `timeout` s for its thread; the asyncio one must be closed in its loop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.stop()  # unasync: subscriber.stop(timeout)
        if self._near is not None:
            self._near.forget_all()
        await self._clients.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> AsyncSymbolReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _after_fork(self) -> None:
        # In a forked child the parent's subscriber does not exist and its cached entries may
        # be older than what this process can see: forget both, start afresh on first use
        # (the client holder drops the parent's sockets by itself).
        self._lock = threading.Lock()
        self._signal = AsyncSignal()
        self._subscriber = None
        if self._near is not None:
            self._near.forget_all(after_fork=True)
