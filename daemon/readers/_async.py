"""The asyncio reader and its events subscriber task: the same behaviour as the sync twin."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable, Collection
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import Loaded, Settings
from daemon.contract.keys import MarketKeys
from daemon.contract.record import SymbolRecord
from daemon.logs import scrub_text
from daemon.readers._core import (
    DISABLED_STATUS,
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
from daemon.readers._sync import subscriber_config
from daemon.redis.clients import ConnectionConfig

_monotonic = time.monotonic


class _Signal:
    """Wakes every coroutine waiting in :meth:`AsyncSymbolReader.wait_until` (one loop)."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def add(self, fut: asyncio.Future[None]) -> None:
        self._waiters.append(fut)

    def discard(self, fut: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(fut)


class _Subscriber:
    """The task that keeps the events subscription and feeds the near-cache."""

    def __init__(
        self,
        near: NearCache,
        config: ConnectionConfig,
        channels: dict[bytes, str],
        signal: _Signal,
    ) -> None:
        self.near = near
        self.config = config
        self.channels = channels
        self.signal = signal
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name="symbold-reader-events"
        )
        return self.task

    async def stop(self) -> None:
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    def _notify(self) -> None:
        self.signal.notify()

    async def _run(self) -> None:
        options = self.near.options
        client = self.config.make_async(decode=False)
        delay = options.retry_min
        try:
            while True:
                try:
                    await self._listen(client)
                except (redis.RedisError, OSError) as exc:
                    was_live = self.near.lost()
                    self._notify()
                    if was_live:
                        log.warning(
                            "reader.channel_lost", error=scrub_text(f"{type(exc).__name__}: {exc}")
                        )
                        delay = options.retry_min
                except Exception:  # noqa: BLE001 - a bug here must not end the subscription
                    self.near.lost()
                    self._notify()
                    log.exception("reader.subscriber_failed")
                await asyncio.sleep(delay)
                delay = backoff(delay, options)
        finally:
            self.near.lost()
            self._notify()
            await client.aclose()

    async def _listen(self, client: redis.asyncio.Redis) -> None:
        near, options = self.near, self.near.options
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(*self.channels)
            pending = set(self.channels)
            now = _monotonic()
            last_heard, next_ping = now, now + options.ping_interval
            while True:
                wake = min(next_ping, last_heard + options.silence_limit)
                message: dict[str, Any] | None = await pubsub.get_message(
                    timeout=max(0.0, wake - now)
                )
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
                            fresh = not near.live
                            near.subscribed(now)
                            self._notify()
                            if fresh:
                                log.info("reader.channel_live", channels=len(self.channels))
                    near.heard(now)
                if now >= next_ping:
                    await pubsub.ping()
                    next_ping = now + options.ping_interval
                if now - last_heard > options.silence_limit:
                    raise ChannelSilentError(
                        f"no reply on the events connection for {options.silence_limit} s"
                    )
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]


def _cancel_soon(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    # A reader dropped without aclose(): stop its subscriber from whatever thread GC runs in.
    with contextlib.suppress(RuntimeError):  # the loop is closed already
        loop.call_soon_threadsafe(task.cancel)


class AsyncSymbolReader:
    """The asyncio twin of :class:`~daemon.readers.SymbolReader`: same methods, same rules,
    awaited.

    Bound to the event loop it is first used in (its client and subscriber task live there);
    use one reader per loop, and ``await reader.aclose()`` before that loop ends. The
    module-level functions (``daemon.readers.get_symbol``...) keep one reader per loop for you.
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
        options = near_cache_options(near_cache)
        self._near: NearCache | None = NearCache(options) if options is not None else None
        self._signal = _Signal()
        self._client_obj: redis.asyncio.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscriber: _Subscriber | None = None
        self._closed = False

    @classmethod
    def from_settings(
        cls, loaded: Loaded | None = None, *, near_cache: bool | NearCacheOptions = False
    ) -> AsyncSymbolReader:
        """A reader for the Redis the daemon uses (same settings, same URL resolution)."""
        loaded, config = connection_config_for(loaded)
        return cls(config, loaded.settings, near_cache=near_cache)

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
        """The reader's (bytes) client; created in the running loop on first use."""
        client = self._client_obj
        loop = asyncio.get_running_loop()
        if client is not None and loop is self._loop:
            return client
        if self._closed:
            raise ReaderClosedError("this AsyncSymbolReader is closed")
        if self._loop is not None and loop is not self._loop:
            raise RuntimeError(
                "this AsyncSymbolReader is bound to another event loop; use one reader per loop"
            )
        self._loop = loop
        client = self._client_obj = self._config.make_async(decode=False)
        return client

    def keys(self, market: str = "spot") -> MarketKeys:
        """The key names this reader uses for `market`."""
        keys = self._keys.get(market)
        if keys is None:
            keys = self._keys.setdefault(market, extra_market_keys(market, self._prefix))
        return keys

    async def _eval(self, args: tuple[Any, ...]) -> Any:
        client = self.client
        try:
            return await client.execute_command("EVALSHA", *args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            await client.script_load(SCRIPTS_BY_SHA[args[0]].source)
            return await client.execute_command("EVALSHA", *args)  # type: ignore[no-untyped-call]

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
        _ = self.client  # binds the reader to this loop (or refuses another one)
        subscriber = _Subscriber(
            near,
            subscriber_config(self._config),
            channel_table(near.options, self._keys, self._prefix),
            self._signal,
        )
        task = subscriber.start()
        weakref.finalize(self, _cancel_soon, asyncio.get_running_loop(), task)
        self._subscriber = subscriber

    async def start(self) -> None:
        """Start the near-cache's subscriber now rather than on first use (no-op without)."""
        if self._closed:
            raise ReaderClosedError("this AsyncSymbolReader is closed")
        if self._near is not None:
            self._ensure_subscriber(self._near)

    # -- reads ------------------------------------------------------------------------------

    async def get_symbol(self, name: str, market: str = "spot") -> SymbolRecord | None:
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
                return await self._fill(near, mc, name, market)
        keys = self._keys.get(market) or self.keys(market)
        raw = await self.client.execute_command("HGET", keys.by_symbol, name)  # type: ignore[no-untyped-call]
        return None if raw is None else decode_record(raw)

    async def _fill(
        self, near: NearCache, mc: MarketCache, name: str, market: str
    ) -> SymbolRecord | None:
        self._ensure_subscriber(near)
        ticket = mc.gen
        raw, version = await self._eval(record_args(self.keys(market), name))
        record = None if raw is None else decode_record(raw)
        near.offer(mc, ticket, text(version), name, record)
        return record

    async def get_symbols(
        self, market: str = "spot", statuses: Collection[str] | None = None
    ) -> list[SymbolRecord]:
        """See :meth:`daemon.readers.SymbolReader.get_symbols`."""
        keys = self.keys(market)
        near, mc = self._cache_for(market)
        if statuses is not None:
            wanted = check_statuses(statuses)
            ticket = mc.gen if mc is not None else 0
            blob, version, values = await self._eval(filter_args(keys))
            if near is not None and mc is not None:
                near.offer(mc, ticket, text(version))
            return filtered(blob, values, wanted)
        if near is not None and mc is not None:
            if _monotonic() < near.live_until:
                cached = mc.listing
                if cached is not None:
                    return list(cached)
            ticket = mc.gen
            blob, version = await self._eval(listing_args(keys))
            listing = decode_listing(blob)
            near.offer(mc, ticket, text(version), listing=listing if blob is not None else None)
            return list(listing)
        blob, _ = await self._eval(listing_args(keys))
        return list(decode_listing(blob))

    async def snapshot_info(self, market: str = "spot") -> SnapshotInfo:
        """Version, counts, staleness and age of `market`'s snapshot (one round trip)."""
        near, mc = self._cache_for(market)
        ticket = mc.gen if mc is not None else 0
        reply = await self._eval(info_args(self.keys(market)))
        info = snapshot_info_from(market, reply, time.time())
        if near is not None and mc is not None:
            near.offer(mc, ticket, info.version)
        return info

    # -- near-cache state -------------------------------------------------------------------

    def near_cache_status(self) -> NearCacheStatus:
        return DISABLED_STATUS if self._near is None else self._near.status()

    async def wait_until(self, predicate: Callable[[NearCacheStatus], bool]) -> None:
        """Wait until `predicate(near_cache_status())` holds (re-checked whenever the
        subscriber changes state). Bound it with ``asyncio.timeout``."""
        if self._near is not None:
            self._ensure_subscriber(self._near)
        loop = asyncio.get_running_loop()
        while not predicate(self.near_cache_status()):
            fut: asyncio.Future[None] = loop.create_future()
            self._signal.add(fut)
            try:
                await fut
            finally:
                self._signal.discard(fut)

    # -- lifetime ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the subscriber task and close the connections (call in the reader's loop)."""
        if self._closed:
            return
        self._closed = True
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            await subscriber.stop()
        if self._near is not None:
            self._near.forget_all()
        client, self._client_obj = self._client_obj, None
        if client is not None:
            await client.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> AsyncSymbolReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
