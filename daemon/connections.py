"""Redis clients built the one right way, and the lazy holders that hand them out.

What a caller may rely on:
- every client has explicit connect/socket timeouts, a health-check interval, a client name, a
  *blocking* pool with a bound (waiting for a free connection instead of raising "Too many
  connections"), and a retry policy with jittered exponential backoff of the matching class
  (the sync ``Retry`` silently does nothing inside the asyncio client, and ``from_url`` alone
  gives connections no retry);
- :class:`AsyncClients` gives one client per running event loop, created inside that loop, so
  ``asyncio.run`` twice (as Celery-style code does) never meets "Event loop is closed";
- :class:`SyncClient` creates its client once even when many threads race the first call, and
  starts afresh in a forked child (Celery prefork) instead of sharing the parent's sockets.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import ExponentialWithJitterBackoff

from daemon.redis_url import RedisURL
from daemon.settings import RedisSettings


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Everything needed to build a client: the resolved URL plus the [redis] settings."""

    url: RedisURL
    settings: RedisSettings

    def _common_kwargs(self, decode: bool) -> dict[str, Any]:
        s = self.settings
        return {
            "socket_connect_timeout": s.connect_timeout,
            "socket_timeout": s.socket_timeout,
            "socket_keepalive": True,
            "health_check_interval": s.health_check_interval,
            "client_name": s.client_name,
            "max_connections": s.max_connections,
            # BlockingConnectionPool: how long to wait for a free connection.
            "timeout": s.pool_timeout,
            "decode_responses": decode,
            "encoding": "utf-8",
        }

    def _backoff(self) -> ExponentialWithJitterBackoff:
        s = self.settings
        return ExponentialWithJitterBackoff(cap=s.retry_backoff_cap, base=s.retry_backoff_base)

    def make_async(self, *, decode: bool = True) -> redis.asyncio.Redis:
        """A new asyncio client; call it inside the loop that will use it."""
        retry = redis.asyncio.retry.Retry(self._backoff(), self.settings.retry_attempts)
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.url.url, retry=retry, **self._common_kwargs(decode)
        )
        # from_pool hands the pool to the client, so aclose() also closes its connections.
        return redis.asyncio.Redis.from_pool(pool)

    def make_sync(self, *, decode: bool = True) -> redis.Redis:
        """A new synchronous client."""
        retry = redis.retry.Retry(self._backoff(), self.settings.retry_attempts)
        pool = redis.BlockingConnectionPool.from_url(
            self.url.url, retry=retry, **self._common_kwargs(decode)
        )
        return redis.Redis.from_pool(pool)


class AsyncClients:
    """One lazily created asyncio client per event loop.

    A client is bound to the loop it was created in. Call :meth:`aclose` before a loop ends;
    a client whose loop closed without that is dropped the next time a new loop asks (its
    sockets can no longer be closed politely), so the holder never grows without bound.
    """

    def __init__(self, config: ConnectionConfig, *, decode: bool = True) -> None:
        self._config = config
        self._decode = decode
        # Not a WeakKeyDictionary: each client refers to its loop, so weak keys would never die.
        self._clients: dict[asyncio.AbstractEventLoop, redis.asyncio.Redis] = {}

    @property
    def config(self) -> ConnectionConfig:
        return self._config

    def get(self) -> redis.asyncio.Redis:
        """The client of the running loop (created on first use). Must be called in a loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for dead in [other for other in self._clients if other.is_closed()]:
                del self._clients[dead]
            # No await between the lookup and the store: no other task can interleave.
            client = self._config.make_async(decode=self._decode)
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close and forget the running loop's client, if it has one."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    def __len__(self) -> int:
        return len(self._clients)


class SyncClient:
    """A lazily created synchronous client: thread-safe and fork-safe."""

    def __init__(self, config: ConnectionConfig, *, decode: bool = True) -> None:
        self._config = config
        self._decode = decode
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._pid = os.getpid()
        _fork_reset.add(self)

    @property
    def config(self) -> ConnectionConfig:
        return self._config

    def get(self) -> redis.Redis:
        """The client (created on first use, exactly once per process)."""
        client = self._client
        if client is not None and self._pid == os.getpid():
            return client
        with self._lock:
            if self._pid != os.getpid():
                self._after_fork()
            if self._client is None:
                self._client = self._config.make_sync(decode=self._decode)
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _after_fork(self) -> None:
        # The parent's sockets belong to the parent: drop them without closing (closing would
        # send QUIT on the parent's connections) and start with a fresh lock, which another
        # parent thread may have held at the moment of fork.
        self._client = None
        self._lock = threading.Lock()
        self._pid = os.getpid()


_fork_reset: weakref.WeakSet[SyncClient] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for holder in list(_fork_reset):
        holder._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
