"""One refresh cycle outside the daemon: ``symbold refresh`` and the Celery task share it.

It builds the same :class:`~daemon.refresh.cycle.MarketRefresher` the daemon's loops use, runs one
cycle per market and closes everything again, so there is exactly one implementation of a
refresh.
"""

from __future__ import annotations

from collections.abc import Sequence

# Re-exported: the callers of a one-shot refresh run it with the same runner.
from daemon.aio import run_async as run_async
from daemon.config.redis_url import RedisURL
from daemon.config.settings import MarketName, Settings
from daemon.redis.clients import ConnectionConfig
from daemon.refresh.cycle import CycleResult, MarketRefresher, source_config
from daemon.upstream.fetch import make_session


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
