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

The deployment (``[redis] mode`` and the URL, see :func:`daemon.config.redis_target.deployment`)
decides the client class; every one gets the same timeouts, retry and bounds:

- standalone: ``redis.Redis`` / ``redis.asyncio.Redis`` on a ``BlockingConnectionPool``;
- cluster: :class:`SyncRedisCluster` / :class:`AsyncRedisCluster`, redis-py's cluster clients
  with three gaps closed (an unreachable cluster raises :class:`ClusterUnavailableError`, a
  ``ConnectionError``, instead of a bare ``RedisClusterException``; pub/sub works on a fresh
  asyncio client; pub/sub finds the promoted replica after a failover). The retry is the
  cluster client's own (node connections never retry in redis-py: the cluster client re-reads
  the topology and retries, following MOVED/ASK). ``max_connections`` bounds each node's pool.
  The sync client's node pools are blocking (``pool_timeout``); redis-py's asyncio cluster has
  no blocking pool, so there a burst beyond the bound raises ``MaxConnectionsError``. The sync
  client reads the topology when it is built (redis-py), so building it raises when no node
  answers. The methods are typed as returning ``Redis``: the cluster classes have the same
  command methods, and code that needs cluster-only calls checks
  ``isinstance(client, RedisCluster)``;
- sentinel: ``Sentinel(...).master_for(service)``, a ``Redis`` whose pool asks the sentinels
  for the primary on every new connection and at least once a second
  (``PRIMARY_RECHECK_INTERVAL``), and drops connections to a demoted one. Closing the client
  also closes its connections to the sentinels.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
import redis.retry
import redis.sentinel
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.crc import key_slot

from daemon.config.redis_target import Deployment, Mode, RedisURL, deployment, format_address
from daemon.config.settings import ConfigError, RedisSettings
from daemon.redis.patches import (
    AsyncBlockingSentinelPool,
    AsyncRedisCluster,
    AsyncSentinelRedis,
    BlockingSentinelPool,
    SentinelRedis,
    SyncRedisCluster,
    reset_safe,
)


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Everything needed to build a client: the resolved URL plus the [redis] settings.

    Construction checks that the two agree (raises ConfigError: a cluster URL with
    ``mode = "sentinel"``, sentinel mode without a service name, ...).
    """

    url: RedisURL
    settings: RedisSettings
    target: Deployment = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        s = self.settings
        target = deployment(self.url, s.mode, s.sentinels, s.service_name)
        object.__setattr__(self, "target", target)

    @property
    def mode(self) -> Mode:
        return self.target.mode

    def describe(self) -> dict[str, object]:
        """Safe to log: the URL's fields plus the deployment (mode, nodes, service name)."""
        return self.url.describe() | self.target.describe()

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

    def _credentials(self) -> dict[str, Any]:
        return {"username": self.url.username, "password": self.url.password}

    def make_async(self, *, decode: bool = True) -> redis.asyncio.Redis:
        """A new asyncio client; call it inside the loop that will use it.

        In cluster mode this is a ``redis.asyncio.cluster.RedisCluster`` (see the module
        docstring); in sentinel mode an :class:`AsyncSentinelRedis`.
        """
        retry = redis.asyncio.retry.Retry(self._backoff(), self.settings.retry_attempts)
        if self.mode == "cluster":
            return cast(redis.asyncio.Redis, self._async_cluster(decode, retry))
        if self.mode == "sentinel":
            return self._async_sentinel(decode, retry)
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.url.url, retry=retry, **self._common_kwargs(decode)
        )
        pool.connection_class = reset_safe(pool.connection_class)
        # from_pool hands the pool to the client, so aclose() also closes its connections.
        return redis.asyncio.Redis.from_pool(pool)

    def make_sync(self, *, decode: bool = True) -> redis.Redis:
        """A new synchronous client (a ``redis.cluster.RedisCluster`` in cluster mode, a
        :class:`SentinelRedis` in sentinel mode)."""
        retry = redis.retry.Retry(self._backoff(), self.settings.retry_attempts)
        if self.mode == "cluster":
            return cast(redis.Redis, self._sync_cluster(decode, retry))
        if self.mode == "sentinel":
            return self._sync_sentinel(decode, retry)
        pool = redis.BlockingConnectionPool.from_url(
            self.url.url, retry=retry, **self._common_kwargs(decode)
        )
        return redis.Redis.from_pool(pool)

    # -- cluster ----------------------------------------------------------------------------

    def _cluster_kwargs(self, decode: bool) -> dict[str, Any]:
        kwargs = self._common_kwargs(decode) | self._credentials()
        del kwargs["timeout"]  # the asyncio cluster client has no blocking pool
        if self.url.tls:
            kwargs["ssl"] = True
            kwargs["ssl_cert_reqs"] = self.url.tls_verify or "required"
            kwargs.update(self.url.tls_options)
        return kwargs

    def _async_cluster(self, decode: bool, retry: redis.asyncio.retry.Retry) -> AsyncRedisCluster:
        nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in self.target.nodes]
        client = AsyncRedisCluster(startup_nodes=nodes, retry=retry, **self._cluster_kwargs(decode))
        # Nodes discovered later are built from connection_kwargs: make their connections
        # report a reset peer as ConnectionError too (see _reset_safe).
        kwargs = client.connection_kwargs
        kwargs["connection_class"] = reset_safe(kwargs["connection_class"])
        return client

    def _sync_cluster(self, decode: bool, retry: redis.retry.Retry) -> SyncRedisCluster:
        (first_host, first_port), *others = self.target.nodes
        kwargs = self._cluster_kwargs(decode)
        scheme = "redis"
        if kwargs.pop("ssl", False):
            scheme = "rediss"  # the URL picks the TLS connection class for the node pools
        # Giving the first node as a URL makes redis-py build each node's pool from
        # `connection_pool_class`, so the node pools can block at the bound like ours do.
        return SyncRedisCluster(
            url=f"{scheme}://{format_address(first_host, first_port)}",
            startup_nodes=[
                redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                for h, p in others
            ],
            retry=retry,
            connection_pool_class=redis.BlockingConnectionPool,
            timeout=self.settings.pool_timeout,
            **kwargs,
        )

    # -- sentinel ---------------------------------------------------------------------------

    def _sentinel_kwargs(self) -> dict[str, Any]:
        """How we talk to the sentinels: same timeouts, their own credentials, and no retry
        (an unreachable sentinel is skipped for the next one)."""
        s = self.settings
        return {
            "socket_connect_timeout": s.connect_timeout,
            "socket_timeout": s.socket_timeout,
            "socket_keepalive": True,
            "username": self.url.sentinel_username,
            "password": self.url.sentinel_password,
        }

    def _primary_kwargs(self, decode: bool) -> dict[str, Any]:
        return self._common_kwargs(decode) | self._credentials() | {"db": self.url.db}

    def _async_sentinel(self, decode: bool, retry: redis.asyncio.retry.Retry) -> AsyncSentinelRedis:
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(self.target.nodes),
            sentinel_kwargs=self._sentinel_kwargs()
            | {"retry": redis.asyncio.retry.Retry(NoBackoff(), 0)},
        )
        client = cast(
            AsyncSentinelRedis,
            sentinel.master_for(
                cast(str, self.target.service_name),
                redis_class=AsyncSentinelRedis,
                connection_pool_class=AsyncBlockingSentinelPool,
                retry=retry,
                **self._primary_kwargs(decode),
            ),
        )
        client.sentinel_manager = sentinel
        pool = client.connection_pool
        pool.connection_class = reset_safe(pool.connection_class)
        return client

    def _sync_sentinel(self, decode: bool, retry: redis.retry.Retry) -> SentinelRedis:
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(self.target.nodes),
            sentinel_kwargs=self._sentinel_kwargs() | {"retry": redis.retry.Retry(NoBackoff(), 0)},
        )
        client = cast(
            SentinelRedis,
            sentinel.master_for(  # type: ignore[no-untyped-call]
                cast(str, self.target.service_name),
                redis_class=SentinelRedis,
                connection_pool_class=BlockingSentinelPool,
                retry=retry,
                **self._primary_kwargs(decode),
            ),
        )
        client.sentinel_manager = sentinel
        return client


def check_one_slot(what: str, names: Iterable[str]) -> None:
    """Raise ConfigError unless every name (key or channel) hashes to one cluster slot.

    A snapshot is one MULTI over all of a market's keys; on a cluster that needs one slot.
    The default names share the ``{market}`` hash tag; key overrides (legacy names) may not.
    """
    slots: dict[int, list[str]] = {}
    for name in names:
        slots.setdefault(key_slot(name.encode()), []).append(name)
    if len(slots) > 1:
        groups = "; ".join(", ".join(group) for group in slots.values())
        raise ConfigError(
            f"{what}: on a Redis Cluster all of a market's keys must share one hash slot "
            f"(put the same {{tag}} in every name), but they fall into {len(slots)}: {groups}"
        )


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
