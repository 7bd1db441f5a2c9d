"""A lease key without a TTL (item 6 of issue 16), against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from daemon.snapshot.lease import Lease

pytestmark = pytest.mark.timeout(20)

KEY = "symbold:{spot}:leader"
TTL = 0.3


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    c = redis.asyncio.Redis.from_url(redis_url)
    yield c
    await c.aclose()


async def test_a_holder_without_ttl_is_taken_over_after_one_ttl(
    client: redis.asyncio.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await client.set(KEY, b"stranger")  # no TTL: no symbold leader writes this
    lease = Lease(client, KEY, ttl=TTL)
    assert await lease.try_acquire() is False
    assert "lease.no_ttl" in capsys.readouterr().out
    assert await lease.try_acquire() is False  # not before the bound
    # The bound is time itself: wait it out.
    await asyncio.sleep(TTL + 0.05)
    assert await lease.try_acquire() is True
    assert "lease.taken_over" in capsys.readouterr().out
    assert await client.get(KEY) == lease.token.encode()
    assert 0 < await client.pttl(KEY) <= int(TTL * 1000)


async def test_a_holder_with_a_ttl_is_never_taken_over(client: redis.asyncio.Redis) -> None:
    await client.set(KEY, b"other-leader", px=10_000)
    lease = Lease(client, KEY, ttl=TTL)
    for _ in range(2):
        assert await lease.try_acquire() is False
        await asyncio.sleep(TTL)
    assert await lease.try_acquire() is False
    assert await client.get(KEY) == b"other-leader"


async def test_a_holder_that_changed_restarts_the_bound(client: redis.asyncio.Redis) -> None:
    await client.set(KEY, b"first")
    lease = Lease(client, KEY, ttl=TTL)
    assert await lease.try_acquire() is False
    await asyncio.sleep(TTL + 0.05)
    await client.set(KEY, b"second")  # someone else, also without a TTL
    assert await lease.try_acquire() is False
    assert await client.get(KEY) == b"second"
