"""Client construction and the lazy holders, against real redis-server processes."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import threading
import time
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry

from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import RedisSettings
from daemon.redis.clients import AsyncClients, ConnectionConfig, SyncClient
from tests.support.redis_server import RedisServer


def config_for(url: str, **overrides: Any) -> ConnectionConfig:
    return ConnectionConfig(
        url=parse_redis_url(url, "test"),
        settings=RedisSettings(client_name="symbold-test", **overrides),
    )


def test_sync_client_has_bounded_blocking_pool_timeouts_and_retry(redis_url: str) -> None:
    client = config_for(redis_url, max_connections=3, retry_attempts=4).make_sync()
    pool = client.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert pool.max_connections == 3
    conn = pool.get_connection()
    try:
        assert isinstance(conn.retry, redis.retry.Retry)
        assert conn.retry._retries == 4
        assert conn.socket_timeout == 5.0
        assert conn.socket_connect_timeout == 5.0
        assert conn.health_check_interval == 30
    finally:
        pool.release(conn)
    names = [c["name"] for c in client.client_list()]
    assert "symbold-test" in names
    client.close()


async def test_async_client_uses_asyncio_retry_class(redis_url: str) -> None:
    client = config_for(redis_url, retry_attempts=2).make_async()
    pool = client.connection_pool
    assert isinstance(pool, redis.asyncio.BlockingConnectionPool)
    conn = pool.make_connection()
    # the sync Retry would be accepted here and silently do nothing
    assert isinstance(conn.retry, redis.asyncio.retry.Retry)
    assert conn.retry._retries == 2
    # a reset peer surfaces as ConnectionError (retried), not uvloop's RuntimeError
    assert type(conn).__name__.startswith("ResetSafe")
    assert await client.ping()
    await client.aclose()


async def test_blocking_pool_waits_instead_of_failing(redis_url: str) -> None:
    client = config_for(redis_url, max_connections=2, pool_timeout=5.0).make_async()
    # 8 concurrent blocking commands on a pool of 2: a plain pool raises "Too many connections".
    results = await asyncio.gather(*(client.blpop([f"nokey{i}"], timeout=0.05) for i in range(8)))
    assert results == [None] * 8
    await client.aclose()


def test_async_clients_one_per_event_loop(redis_url: str) -> None:
    holder = AsyncClients(config_for(redis_url))
    seen: list[int] = []

    async def use() -> None:
        client = holder.get()
        assert holder.get() is client  # same loop: same client
        seen.append(id(client))
        await client.set("k", "v")
        assert await client.get("k") == "v"
        await holder.aclose()

    # Celery-style code runs asyncio.run more than once; the legacy global broke here.
    asyncio.run(use())
    asyncio.run(use())
    assert len(seen) == 2


# The first loop's connection is never closed (the caller skipped aclose); Python reports that
# socket when it is collected, which is the caller's leak, not what this test is about.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_async_client_reused_in_a_new_loop_without_close_still_works(redis_url: str) -> None:
    holder = AsyncClients(config_for(redis_url))

    async def use(close: bool) -> str:
        value: str = await holder.get().echo("hi")
        if close:
            await holder.aclose()
        return value

    assert asyncio.run(use(close=False)) == "hi"
    # a loop-bound global would raise "Event loop is closed" here
    assert asyncio.run(use(close=False)) == "hi"
    assert len(holder) == 1  # the first loop's client was dropped, not kept forever
    assert asyncio.run(use(close=True)) == "hi"
    assert len(holder) == 0  # the first loop's client was dropped, not kept forever
    gc.collect()  # report the abandoned sockets here, under this test's warning filter


def test_sync_client_thread_race_creates_one_client(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_for(redis_url)
    calls = 0
    original = ConnectionConfig.make_sync

    def slow_make_sync(self: ConnectionConfig, *, decode: bool = True) -> redis.Redis:
        nonlocal calls
        calls += 1
        time.sleep(0.05)  # widen the window in which an unlocked check-then-set would race
        return original(self, decode=decode)

    monkeypatch.setattr(ConnectionConfig, "make_sync", slow_make_sync)
    holder = SyncClient(config)
    barrier = threading.Barrier(32)
    got: list[redis.Redis] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        client = holder.get()
        with lock:
            got.append(client)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 32
    assert calls == 1
    assert len({id(c) for c in got}) == 1
    holder.close()


def _child(holder: SyncClient, parent_client_id: int, out: Any) -> None:
    client = holder.get()
    out.put((client.client_id(), client.ping(), os.getpid()))


def test_sync_client_after_fork_uses_its_own_connection(redis_url: str) -> None:
    holder = SyncClient(config_for(redis_url))
    parent = holder.get()
    parent_id = parent.client_id()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(holder, parent_id, queue))
    proc.start()
    child_id, child_ping, child_pid = queue.get(timeout=20)
    proc.join(20)
    assert proc.exitcode == 0
    assert child_pid != os.getpid()
    assert child_ping is True
    assert child_id != parent_id
    # the child did not close or reuse the parent's socket
    assert holder.get() is parent
    assert parent.client_id() == parent_id
    holder.close()


async def test_async_client_survives_a_redis_restart(redis_factory: type[RedisServer]) -> None:
    server = redis_factory().start()
    client = config_for(server.url, retry_attempts=5, retry_backoff_cap=0.2).make_async()
    await client.set("k", "1")
    server.restart()  # empty, same port; the pooled connection is now dead
    # without a retry policy on the pool's connections this fails at once
    assert await client.get("k") is None
    assert await client.set("k", "2")
    await client.aclose()


def test_sync_client_survives_a_redis_restart(redis_factory: type[RedisServer]) -> None:
    server = redis_factory().start()
    client = config_for(server.url, retry_attempts=5, retry_backoff_cap=0.2).make_sync()
    client.set("k", "1")
    server.restart()
    assert client.get("k") is None
    client.close()


async def test_socket_timeout_bounds_a_paused_server(redis_factory: type[RedisServer]) -> None:
    server = redis_factory().start()
    client = config_for(server.url, socket_timeout=0.3, retry_attempts=0).make_async()
    assert await client.ping()
    server.pause()
    try:
        start = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            await client.ping()
        assert time.monotonic() - start < 2.0
    finally:
        server.resume()
    await client.aclose()
