"""redis-py subclasses that close gaps the daemon depends on; the client factories in
:mod:`daemon.redis.clients` are their only users.

- Sentinel pools that block when full (bounded) and re-ask the sentinels for the primary at
  most every :data:`PRIMARY_RECHECK_INTERVAL`, so writes follow a switch-over within a second.
- Connections that report a write to a reset peer as ``ConnectionError`` (uvloop raises a bare
  ``RuntimeError``), so it is retried like any other lost connection.
- Cluster clients whose "no node answers" is a ``ConnectionError``
  (:class:`ClusterUnavailableError`), whose pub/sub works on a fresh asyncio client and finds
  a promoted replica after a failover.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.exceptions import RedisClusterException

from daemon.redis.errors import RECOVERABLE

# How often a sentinel pool asks the sentinels who the primary is, besides on every new
# connection. redis-py asks only when it opens a connection, so after a planned switch-over
# (SENTINEL FAILOVER, or a partition) pooled connections keep writing to the old primary, which
# stays a primary until the sentinels demote it (about 10 s later; verified), and those writes
# are then lost. Asking once a second bounds that window at about a second; a changed answer
# makes redis-py drop the idle connections to the old primary, and in-use ones on release.
PRIMARY_RECHECK_INTERVAL = 1.0


_RESET_SAFE: dict[type[Any], type[Any]] = {}


def reset_safe(cls: type[Any]) -> type[Any]:
    """`cls` with writes to a connection the peer reset reported as ``ConnectionError``.

    Under uvloop, redis-py writing to a transport that the peer reset raises
    ``RuntimeError("unable to perform operation on <TCPTransport closed=True>...")``: redis-py
    neither retries it nor wraps it, so it escapes every ``except RedisError`` and would end
    the market loop. As a ConnectionError it is retried on a fresh connection like any other.
    """
    safe = _RESET_SAFE.get(cls)
    if safe is not None:
        return safe

    class ResetSafe(cls):  # type: ignore[misc]
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            try:
                await super().send_packed_command(command, check_health)
            except RuntimeError as exc:
                await self.disconnect(nowait=True)
                raise redis.ConnectionError(f"connection lost while writing: {exc}") from exc

    ResetSafe.__name__ = ResetSafe.__qualname__ = f"ResetSafe{cls.__name__}"
    safe_cls: type[Any] = ResetSafe
    _RESET_SAFE[cls] = safe_cls
    return safe_cls


class AsyncBlockingSentinelPool(
    redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool
):
    """Sentinel-managed connections in a pool that waits for a free one (bounded), and that
    re-asks the sentinels for the primary at most every PRIMARY_RECHECK_INTERVAL."""

    _checked_at = float("-inf")

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if self.is_master and now - self._checked_at >= PRIMARY_RECHECK_INTERVAL:
            self._checked_at = now
            # No answer now is no reason to refuse a pooled connection that works; a new
            # connection asks again and reports it.
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                await self.get_master_address()  # type: ignore[no-untyped-call]
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]


class BlockingSentinelPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """The sync twin of :class:`AsyncBlockingSentinelPool`."""

    _checked_at = float("-inf")

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if self.is_master and now - self._checked_at >= PRIMARY_RECHECK_INTERVAL:
            self._checked_at = now
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                self.get_master_address()  # type: ignore[no-untyped-call]
        return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]


class AsyncSentinelRedis(redis.asyncio.Redis):
    """The primary's client in sentinel mode; ``aclose()`` also closes the sentinel clients."""

    sentinel_manager: redis.asyncio.sentinel.Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            sentinel, self.sentinel_manager = self.sentinel_manager, None
            if sentinel is not None:
                await sentinel.aclose()


class SentinelRedis(redis.Redis):
    """The primary's client in sentinel mode; ``close()`` also closes the sentinel clients."""

    sentinel_manager: redis.sentinel.Sentinel | None = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            sentinel, self.sentinel_manager = self.sentinel_manager, None
            if sentinel is not None:
                sentinel.close()


class _ClusterPubSub(redis.asyncio.cluster.ClusterPubSub):
    """Two gaps of redis-py 8.1's asyncio ClusterPubSub, closed:

    - it picks its node from the slot table without loading the table first, so SUBSCRIBE
      on a fresh client fails with KeyError(slot);
    - a client used only for pub/sub never refreshes the table (only failed regular commands
      do), so after a failover every new subscription would go to the dead node again. A
      failed first command (the one that picks and connects the node) re-reads the topology
      before the error goes up, so the caller's next attempt picks the new owner.
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.cluster.initialize()  # no-op once the client knows the topology
        fresh = self.connection is None
        try:
            return await super().execute_command(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            if fresh:
                with contextlib.suppress(*RECOVERABLE):
                    await self.cluster.nodes_manager.initialize()
            raise


class ClusterUnavailableError(redis.ConnectionError, RedisClusterException):
    """No node of the cluster answered, or the answers do not cover every slot.

    redis-py raises a bare ``RedisClusterException`` (not a ``RedisError``) for this, which
    would slip past every ``except redis.RedisError`` that handles "Redis is down" (the
    refresh cycle, the market loop, the readers' callers). This is both: a ConnectionError
    for them, still a RedisClusterException for code that expects redis-py's type.
    """


class _AsyncNodesManager(redis.asyncio.cluster.NodesManager):
    __slots__ = ()

    async def initialize(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            if isinstance(exc, redis.RedisError):
                raise
            raise ClusterUnavailableError(str(exc)) from exc


class _SyncNodesManager(redis.cluster.NodesManager):
    def initialize(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            if isinstance(exc, redis.RedisError):
                raise
            raise ClusterUnavailableError(str(exc)) from exc


class _SyncClusterPubSub(redis.cluster.ClusterPubSub):
    """The sync twin of :class:`_ClusterPubSub`: after a failed first command (the dead
    primary of the channel's slot), re-read the topology so the next subscription finds the
    promoted replica."""

    def execute_command(self, *args: Any) -> None:
        fresh = self.connection is None
        try:
            super().execute_command(*args)  # type: ignore[no-untyped-call]
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            if fresh:
                with contextlib.suppress(*RECOVERABLE):
                    self.cluster.nodes_manager.initialize()
            raise


class SyncRedisCluster(redis.cluster.RedisCluster):
    """redis-py's cluster client, with a ``pubsub()`` that recovers after a failover and an
    unreachable cluster reported as :class:`ClusterUnavailableError` (a ConnectionError)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)  # the sync client reads the topology right here
        except RedisClusterException as exc:
            if isinstance(exc, redis.RedisError):
                raise
            raise ClusterUnavailableError(str(exc)) from exc
        # Same object, one overridden method: every later topology refresh goes through it.
        self.nodes_manager.__class__ = _SyncNodesManager

    def pubsub(
        self,
        node: redis.cluster.ClusterNode | None = None,
        host: str | None = None,
        port: int | None = None,
        **kwargs: Any,
    ) -> redis.cluster.ClusterPubSub:
        return _SyncClusterPubSub(self, node=node, host=host, port=port, **kwargs)


class AsyncRedisCluster(redis.asyncio.cluster.RedisCluster):
    """redis-py's asyncio cluster client, with a ``pubsub()`` that works on a fresh client and
    recovers after a failover, and an unreachable cluster reported as
    :class:`ClusterUnavailableError` (a ConnectionError)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Same object, one overridden method: every topology read goes through it.
        self.nodes_manager.__class__ = _AsyncNodesManager

    def pubsub(
        self,
        node: redis.asyncio.cluster.ClusterNode | None = None,
        host: str | None = None,
        port: int | None = None,
        **kwargs: Any,
    ) -> redis.asyncio.cluster.ClusterPubSub:
        return _ClusterPubSub(self, node=node, host=host, port=port, **kwargs)
