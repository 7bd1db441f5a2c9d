"""Celery tasks for deployments still on Celery beat (needs ``symbold[celery]``).

``symbold.refresh_symbols`` runs one refresh cycle through the very code the daemon uses
(:func:`daemon.refresh.oneshot.refresh_markets`); it is a ``shared_task``, so it binds to whichever
Celery app the worker runs: add ``"daemon.celery_tasks"`` to the legacy app's ``include``, or
run ``celery -A daemon.celery_app worker`` for a standalone worker.

Settings come from the same layers as the daemon's (``/etc/symbold/config.toml``, ``SYMBOLD_*``,
``REDIS_URL``, ``CELERY_BROKER_URL``), read once per worker process.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import shared_task

from daemon.config.loader import Config, load_config
from daemon.config.settings import MARKETS, ConfigError, MarketName
from daemon.refresh.oneshot import refresh_markets, run_async


@functools.cache
def _config() -> Config:
    return load_config()


def _markets(config: Config, market: str | list[str] | None) -> list[MarketName]:
    if market is None:
        return list(config.settings.markets.enabled())
    names = [market] if isinstance(market, str) else list(market)
    unknown = [n for n in names if n not in MARKETS]
    if unknown:
        raise ConfigError(f"unknown market(s) {unknown}; expected some of {list(MARKETS)}")
    return [n for n in MARKETS if n in names]


@shared_task(name="symbold.refresh_symbols", ignore_result=False)  # type: ignore[untyped-decorator]
def refresh_symbols(market: str | list[str] | None = None) -> list[dict[str, Any]]:
    """Refresh `market` (a name, a list, or None for every enabled market) once.

    Returns one summary per market: market, outcome, reason, version, count, listed.
    """
    config = _config()
    results = run_async(
        refresh_markets(config.settings, config.url, _markets(config, market), config.connection)
    )
    return [
        {
            "market": r.market,
            "outcome": r.outcome,
            "reason": r.reason,
            "version": r.version,
            "count": r.count,
            "listed": r.listed,
        }
        for r in results
    ]
