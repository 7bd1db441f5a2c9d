"""Fixtures of the refresh tests: the fake Binance serving the base spot payload, settings
pointing at it, a refresher on the test's Redis database and a plain client to assert with.

A test module may define a fixture of the same name to replace one of these.

Every test runs a real redis-server (the session server's private database through
``redis_url``, or a server of its own from ``redis_factory`` when it kills, restarts or stalls
it) and the local fake Binance on loopback. Nothing is mocked: the refresher talks to both over
real sockets. Assertions read Redis through a separate plain client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio

from daemon.config.settings import Settings
from daemon.refresh.cycle import MarketRefresher
from tests.refresh.spot_market import BAN_FALLBACK, BASE_PAYLOAD, CACHE_TTL, MAX_BODY
from tests.support.builders import make_settings, open_refresher
from tests.support.fake_binance import SPOT, FakeBinance
from tests.support.redis_server import RedisServer
from tests.support.stored_snapshot import direct_client


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.set_payload(SPOT, BASE_PAYLOAD)
        yield server


@pytest.fixture
def settings(fake: FakeBinance) -> Settings:
    return make_settings(
        fake.url,
        {
            "markets.spot.cache_ttl": CACHE_TTL,
            "markets.spot.pinned": ["XRPTRY"],
            "upstream.ban_fallback": BAN_FALLBACK,
            "upstream.max_body_bytes": MAX_BODY,
        },
    )


@pytest.fixture
async def refresher(redis_url: str, settings: Settings) -> AsyncIterator[MarketRefresher]:
    async with open_refresher(redis_url, settings) as ref:
        yield ref


@dataclass
class OwnServer:
    """A refresher on a redis-server of the test's own (to restart or starve), and a plain
    client to the same server to assert with."""

    server: RedisServer
    check: redis.asyncio.Redis
    ref: MarketRefresher


@contextlib.asynccontextmanager
async def open_own(
    redis_factory: Any, settings: Settings, redis_overrides: Mapping[str, Any] | None = None
) -> AsyncIterator[OwnServer]:
    """A fresh redis-server of the test's own, a refresher on it (its Redis client settings
    overridden by `redis_overrides`) and a plain client to it."""
    server = redis_factory().start()
    check = direct_client(server.url)
    try:
        async with open_refresher(server.url, settings, redis_overrides=redis_overrides) as ref:
            yield OwnServer(server, check, ref)
    finally:
        await check.aclose()


@pytest.fixture
async def own(redis_factory: Any, settings: Settings) -> AsyncIterator[OwnServer]:
    async with open_own(redis_factory, settings) as server:
        yield server


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = direct_client(redis_url)
    yield client
    await client.aclose()
