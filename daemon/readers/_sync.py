"""The synchronous reader and its events subscriber thread."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Collection
from typing import Any

import msgspec
import redis
from redis.exceptions import NoScriptError

from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import Loaded, Settings
from daemon.contract.keys import MarketKeys
from daemon.contract.record import SymbolRecord
from daemon.logs import scrub_text
from daemon.readers._core import (
    DISABLED_STATUS,
    POLL_INTERVAL,
    SCRIPTS_BY_SHA,
    ChannelSilentError,
    MarketCache,
    NearCache,
    NearCacheOptions,
    NearCacheStatus,
    ReaderClosedError,
    SnapshotInfo,
    backoff,
    channel_table,
    check_statuses,
    connection_config_for,
    decode_listing,
    decode_record,
    extra_market_keys,
    filter_args,
    filtered,
    info_args,
    key_table,
    listing_args,
    log,
    near_cache_options,
    record_args,
    snapshot_info_from,
    text,
)
from daemon.redis.clients import ConnectionConfig, SyncClient

_monotonic = time.monotonic


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


class _Subscriber:
    """The thread that keeps the events subscription and feeds the near-cache.

    Holds no reference to the reader, so a reader that is dropped without ``close()`` is
    still collected (a finalizer then stops this thread).
    """

    def __init__(
        self,
        near: NearCache,
        config: ConnectionConfig,
        channels: dict[bytes, str],
        changed: threading.Condition,
    ) -> None:
        self.near = near
        self.config = config
        self.channels = channels
        self.changed = changed
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="symbold-reader-events", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float) -> bool:
        if self.thread.ident is not None:
            self.thread.join(timeout)
        return not self.thread.is_alive()

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def _run(self) -> None:
        options = self.near.options
        client: redis.Redis | None = None
        delay = options.retry_min
        try:
            while not self.stop_event.is_set():
                try:
                    # Built inside the retry loop: a cluster client connects when it is made,
                    # and a cluster down at that moment must not end the subscriber.
                    if client is None:
                        client = self.config.make_sync(decode=False)
                    self._listen(client)
                except (redis.RedisError, OSError) as exc:
                    was_live = self.near.lost()
                    self._notify()
                    if was_live:
                        log.warning("reader.channel_lost", error=scrub_text(_describe(exc)))
                        delay = options.retry_min
                except Exception:  # noqa: BLE001 - a bug here must not end the subscription
                    self.near.lost()
                    self._notify()
                    log.exception("reader.subscriber_failed")
                if self.stop_event.wait(delay):
                    break
                delay = backoff(delay, options)
        finally:
            self.near.lost()
            self._notify()
            if client is not None:
                client.close()

    def _listen(self, client: redis.Redis) -> None:
        near, options = self.near, self.near.options
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(*self.channels)
            pending = set(self.channels)
            now = _monotonic()
            last_heard, next_ping = now, now + options.ping_interval
            while not self.stop_event.is_set():
                message: dict[str, Any] | None = pubsub.get_message(timeout=POLL_INTERVAL)
                now = _monotonic()
                if message is not None:
                    last_heard = now
                    kind = message["type"]
                    if kind == "message":
                        market = self.channels.get(message["channel"])
                        if market is not None:
                            near.on_event(market, message["data"])
                            self._notify()
                    elif kind == "subscribe":
                        pending.discard(message["channel"])
                        if not pending:
                            # Also after a reconnect the library made on its own: whatever
                            # was published in between was missed, so start afresh.
                            fresh = not near.live
                            near.subscribed(now)
                            self._notify()
                            if fresh:
                                log.info("reader.channel_live", channels=len(self.channels))
                    near.heard(now)
                if now >= next_ping:
                    pubsub.ping()
                    next_ping = now + options.ping_interval
                if now - last_heard > options.silence_limit:
                    raise ChannelSilentError(
                        f"no reply on the events connection for {options.silence_limit} s"
                    )
        finally:
            pubsub.close()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class SymbolReader:
    """Reads symbol records from the snapshot the daemon keeps in Redis (synchronous).

    Thread-safe: one reader serves every thread of a process (one bounded connection pool).
    Fork-safe: in a forked child it reconnects, and restarts its subscriber, on first use.

    Without the near-cache every call is one round trip; :meth:`get_symbol` is a single HGET.
    With ``near_cache=True`` (or :class:`NearCacheOptions`) decoded records of the current
    snapshot version are kept in memory and dropped when the daemon publishes a new version
    on the market's events channel; while that channel is not live, every call reads Redis.
    Call :meth:`close` when done (or use the reader as a context manager).
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
        self._clients = SyncClient(config, decode=False)
        options = near_cache_options(near_cache)
        self._near: NearCache | None = NearCache(options) if options is not None else None
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._subscriber: _Subscriber | None = None
        self._closed = False
        _readers.add(self)

    @classmethod
    def from_settings(
        cls, loaded: Loaded | None = None, *, near_cache: bool | NearCacheOptions = False
    ) -> SymbolReader:
        """A reader for the Redis the daemon uses: same settings file, same URL resolution
        (``[redis] url`` > ``REDIS_URL`` > ``CELERY_BROKER_URL`` > localhost)."""
        loaded, config = connection_config_for(loaded)
        return cls(config, loaded.settings, near_cache=near_cache)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        settings: Settings | None = None,
        near_cache: bool | NearCacheOptions = False,
    ) -> SymbolReader:
        """A reader for `url`; key names and timeouts from `settings` (default: defaults)."""
        settings = settings if settings is not None else Settings()
        config = ConnectionConfig(url=parse_redis_url(url, "argument"), settings=settings.redis)
        return cls(config, settings, near_cache=near_cache)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def client(self) -> redis.Redis:
        """The reader's (bytes) client, e.g. to PING on the same pool."""
        if self._closed:
            raise ReaderClosedError("this SymbolReader is closed")
        return self._clients.get()

    def keys(self, market: str = "spot") -> MarketKeys:
        """The key names this reader uses for `market`."""
        keys = self._keys.get(market)
        if keys is None:
            keys = self._keys.setdefault(market, extra_market_keys(market, self._prefix))
        return keys

    def _eval(self, args: tuple[Any, ...]) -> Any:
        client = self.client
        try:
            return client.execute_command("EVALSHA", *args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            # First use on this server, or it restarted: load and run again.
            client.script_load(SCRIPTS_BY_SHA[args[0]].source)
            return client.execute_command("EVALSHA", *args)  # type: ignore[no-untyped-call]

    def _cache_for(self, market: str) -> tuple[NearCache, MarketCache] | tuple[None, None]:
        near = self._near
        if near is not None:
            mc = near.markets.get(market)
            if mc is not None:
                self._ensure_subscriber(near)
                return near, mc
        return None, None

    def _ensure_subscriber(self, near: NearCache) -> None:
        if self._subscriber is not None:
            return
        with self._lock:
            if self._subscriber is not None or self._closed:
                return
            subscriber = _Subscriber(
                near,
                subscriber_config(self._config),
                channel_table(near.options, self._keys, self._prefix),
                self._changed,
            )
            weakref.finalize(self, subscriber.stop)
            subscriber.start()
            self._subscriber = subscriber

    def start(self) -> None:
        """Start the near-cache's subscriber now rather than on first use (no-op without)."""
        if self._closed:
            raise ReaderClosedError("this SymbolReader is closed")
        if self._near is not None:
            self._ensure_subscriber(self._near)

    # -- reads ------------------------------------------------------------------------------

    def get_symbol(self, name: str, market: str = "spot") -> SymbolRecord | None:
        """The record of `name` (any status), or None if the snapshot has no such symbol (or
        there is no snapshot). Raises ``redis.RedisError`` when Redis cannot be read."""
        near = self._near
        if near is not None:
            mc = near.markets.get(market)
            if mc is not None:
                if _monotonic() < near.live_until:
                    try:
                        return mc.records[name]
                    except KeyError:
                        pass
                return self._fill(near, mc, name, market)
        keys = self._keys.get(market) or self.keys(market)
        raw = self.client.execute_command("HGET", keys.by_symbol, name)  # type: ignore[no-untyped-call]
        return None if raw is None else decode_record(raw)

    def _fill(
        self, near: NearCache, mc: MarketCache, name: str, market: str
    ) -> SymbolRecord | None:
        self._ensure_subscriber(near)
        ticket = mc.gen
        raw, version = self._eval(record_args(self.keys(market), name))
        record = None if raw is None else decode_record(raw)
        near.offer(mc, ticket, text(version), name, record)
        return record

    def get_symbols(
        self, market: str = "spot", statuses: Collection[str] | None = None
    ) -> list[SymbolRecord]:
        """The listed symbols in priority order, as the daemon stored them (``symbols``, or
        ``last_good`` once that has expired); ``[]`` when neither exists.

        With `statuses`, every record whose status is one of them (listed or not): those in
        the stored listing first, in listing order, then the others ordered by symbol.
        """
        keys = self.keys(market)
        near, mc = self._cache_for(market)
        if statuses is not None:
            wanted = check_statuses(statuses)
            ticket = mc.gen if mc is not None else 0
            blob, version, values = self._eval(filter_args(keys))
            if near is not None and mc is not None:
                near.offer(mc, ticket, text(version))
            return filtered(blob, values, wanted)
        if near is not None and mc is not None:
            if _monotonic() < near.live_until:
                cached = mc.listing
                if cached is not None:
                    return list(cached)
            ticket = mc.gen
            blob, version = self._eval(listing_args(keys))
            listing = decode_listing(blob)
            near.offer(mc, ticket, text(version), listing=listing if blob is not None else None)
            return list(listing)
        blob, _ = self._eval(listing_args(keys))
        return list(decode_listing(blob))

    def snapshot_info(self, market: str = "spot") -> SnapshotInfo:
        """Version, counts, staleness and age of `market`'s snapshot (one round trip)."""
        near, mc = self._cache_for(market)
        ticket = mc.gen if mc is not None else 0
        info = snapshot_info_from(market, self._eval(info_args(self.keys(market))), time.time())
        if near is not None and mc is not None:
            near.offer(mc, ticket, info.version)
        return info

    # -- near-cache state -------------------------------------------------------------------

    def near_cache_status(self) -> NearCacheStatus:
        return DISABLED_STATUS if self._near is None else self._near.status()

    def wait_until(
        self, predicate: Callable[[NearCacheStatus], bool], timeout: float = 5.0
    ) -> bool:
        """Block until `predicate(near_cache_status())` holds (re-checked whenever the
        subscriber changes state: subscribed, lost, event received); False on timeout."""
        if self._near is not None:
            self._ensure_subscriber(self._near)
        with self._changed:
            return self._changed.wait_for(
                lambda: predicate(self.near_cache_status()), timeout=timeout
            )

    # -- lifetime ---------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Stop the subscriber (waiting up to `timeout` s) and close the connections."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            subscriber.stop()
            if not subscriber.join(timeout):
                log.warning("reader.subscriber_stuck", timeout_s=timeout)
        if self._near is not None:
            self._near.forget_all()
        self._clients.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> SymbolReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _after_fork(self) -> None:
        # The parent's thread does not exist here and its sockets are the parent's: forget
        # both (SyncClient drops its client by itself) and start afresh on first use.
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._subscriber = None
        if self._near is not None:
            self._near.forget_all(after_fork=True)


_readers: weakref.WeakSet[SymbolReader] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for reader in list(_readers):
        reader._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
