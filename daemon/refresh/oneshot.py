"""One refresh cycle outside the daemon: ``symbold refresh`` and the Celery task share it.

It builds the same :class:`~daemon.refresh.cycle.MarketRefresher` the daemon's loops use, runs one
cycle per market and closes everything again, so there is exactly one implementation of a
refresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from daemon.config.redis_url import RedisURL
from daemon.config.settings import MarketName, Settings
from daemon.redis.clients import ConnectionConfig
from daemon.refresh.cycle import CycleResult, MarketRefresher, source_config
from daemon.upstream.fetch import make_session

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on uvloop when it is installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def refresh_markets(
    settings: Settings,
    url: RedisURL,
    markets: Sequence[MarketName],
    connection: ConnectionConfig | None = None,
) -> list[CycleResult]:
    """One cycle of each market, in order; never raises for Redis or upstream failures.
    `connection` is the one built with the configuration (else built here from `url`)."""
    connection = connection or ConnectionConfig(url=url, settings=settings.redis)
    client = connection.make_async(decode=False)
    session = make_session(source_config(settings.markets.get(markets[0]), settings.upstream))
    results: list[CycleResult] = []
    try:
        for name in markets:
            refresher = MarketRefresher.for_market(settings, name, client=client, session=session)
            results.append(await refresher.refresh_once())
    finally:
        await session.close()
        await client.aclose()
    return results
