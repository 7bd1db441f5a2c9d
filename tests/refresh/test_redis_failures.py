"""Redis down or refusing writes during a cycle: reported in the result, never raised, and no
request upstream while Redis is away.

Real redis-server and fake Binance processes on loopback, nothing mocked (see conftest.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio

from daemon.config.settings import Settings
from tests.refresh.conftest import OwnServer
from tests.refresh.spot_market import BASE_LISTED, BASE_PAYLOAD, CHANGED_PAYLOAD, KEYS
from tests.support.builders import accepted, open_refresher
from tests.support.fake_binance import SPOT, FakeBinance, Fault
from tests.support.stored_snapshot import direct_client, listed_names, read_stored


async def test_redis_down_returns_an_error_without_asking_upstream(
    redis_factory: Any, settings: Settings, fake: FakeBinance
) -> None:
    server = redis_factory().start()
    async with open_refresher(server.url, settings) as ref:
        await accepted(ref)
        server.kill()
        requests = fake.requests[SPOT]

        result = await ref.refresh_once()

        assert result.outcome == "error"
        assert result.redis_down is True
        assert result.reason.startswith("redis: ConnectionError")
        assert result.ok is False
        assert fake.requests[SPOT] == requests
        with pytest.raises(redis.ConnectionError):
            await ref.watch()

        # Back (empty): the next cycle writes a full snapshot again.
        server.start()
        again = await ref.refresh_once()
        assert again.outcome == "accepted"
        check = direct_client(server.url)
        try:
            assert listed_names(await check.get(KEYS.symbols)) == BASE_LISTED
        finally:
            await check.aclose()


async def test_redis_refusing_writes_is_reported_not_raised(
    own: OwnServer, fake: FakeBinance
) -> None:
    """maxmemory 1 with noeviction: reads work, every write fails with OOM (not retried)."""
    check, ref = own.check, own.ref
    await accepted(ref)
    stored = await read_stored(check)
    fake.set_payload(SPOT, CHANGED_PAYLOAD)
    await check.config_set("maxmemory", "1")

    result = await ref.refresh_once()  # the commit is refused
    assert result.outcome == "error"
    assert result.redis_down is True
    assert result.reason.startswith("redis: OutOfMemoryError: ")

    fake.set_payload(SPOT, BASE_PAYLOAD)
    fake.set_mode(SPOT, Fault.status(500))
    result = await ref.refresh_once()  # recording the failure is refused
    assert result.outcome == "error"
    assert result.redis_down is True

    await check.config_set("maxmemory", "0")
    assert await read_stored(check) == stored


async def test_redis_refusing_writes_during_a_ban_is_reported_not_raised(
    own: OwnServer, fake: FakeBinance
) -> None:
    """A banned cycle that finds the cache gone tries to republish; a refused write there
    must not escape refresh_once either."""
    check, ref = own.check, own.ref
    await accepted(ref)
    fake.fail(SPOT, Fault.rate_limited(retry_after=60))
    assert (await ref.refresh_once()).outcome == "error"
    await check.delete(KEYS.symbols)
    await check.config_set("maxmemory", "1")

    result = await ref.refresh_once()

    assert result.outcome == "error"
    assert result.redis_down is True
    assert fake.requests[SPOT] == 2
    await check.config_set("maxmemory", "0")
    # Once writes work again, the banned cycle republishes and still does not fetch.
    skipped = await ref.refresh_once()
    assert skipped.outcome == "skipped"
    assert await check.exists(KEYS.symbols) == 1
    assert fake.requests[SPOT] == 2
