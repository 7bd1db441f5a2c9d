"""One refresh cycle outside the daemon: ``symbold refresh`` and the Celery task share it.

It builds the same :class:`~daemon.refresh.cycle.MarketRefresher` the daemon's loops use, runs one
cycle per market and closes everything again, so there is exactly one implementation of a
refresh. Each market's fetch draws from the same shared weight budget as the daemon's (a full
window or a stored ban: the cycle is skipped, exit 75 for ``symbold refresh``) unless
``[budget] own_fetches`` is false; a market whose budget cannot be built is refreshed
uncharged, with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

# Re-exported: the callers of a one-shot refresh run it with the same runner.
from daemon.aio import run_async as run_async
from daemon.budget import AsyncWeightBudget, BudgetError
from daemon.config.redis_url import RedisURL
from daemon.config.settings import ConfigError, MarketName, Settings
from daemon.logs import get_logger
from daemon.redis.clients import ConnectionConfig
from daemon.refresh.cycle import CycleResult, MarketRefresher, source_config
from daemon.upstream.fetch import make_session


def _budget(
    connection: ConnectionConfig, settings: Settings, name: MarketName
) -> AsyncWeightBudget | None:
    # Building one does no I/O; limits not published yet fall back to the configured or
    # built-in ones, so only a bad [budget] section ends up here.
    if not settings.budget.own_fetches:
        return None
    try:
        return AsyncWeightBudget(connection, settings, market=name)
    except (BudgetError, ConfigError) as exc:
        get_logger("symbold.refresh").warning("budget.unavailable", market=name, error=str(exc))
        return None


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
            budget = _budget(connection, settings, name)
            try:
                refresher = MarketRefresher.for_market(
                    settings, name, client=client, session=session, budget=budget
                )
                results.append(await refresher.refresh_once())
            finally:
                if budget is not None:
                    await budget.aclose()
    finally:
        await session.close()
        await client.aclose()
    return results
