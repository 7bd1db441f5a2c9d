"""One Binance request-weight budget per market, shared by every process of the bot via Redis.

What a caller gets::

    from daemon.budget import AsyncWeightBudget, WeightBudget, Banned, BudgetExhausted

    budget = WeightBudget.from_settings(market="spot")      # same Redis as the daemon
    grant = budget.acquire(20)                # charge exchangeInfo's weight, or wait
    resp = session.get(url)
    budget.observe(resp.headers, grant=grant) # reconcile to X-MBX-USED-WEIGHT-*
    if resp.status_code in (429, 418):
        budget.report_limited(resp.status_code, resp.headers)   # every process stops

    async with AsyncWeightBudget.from_url("redis://...", market="spot") as abudget:
        await abudget.acquire(1, orders=1, account="main", priority="high")

The rules (limits, windows, policies, Redis keys, the endpoint weight table) are in
``docs/budget.md``. Logging goes to ``logging.getLogger("symbold.budget")`` (a NullHandler is
attached; nothing is configured on import). The aiohttp helper lives in
:mod:`daemon.budget.http_trace` and the ccxt recipe in :mod:`daemon.budget.ccxt_recipe`;
neither is imported here, so importing this package does not import aiohttp or ccxt.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from daemon.budget.errors import (
    Banned,
    BudgetError,
    BudgetExhausted,
    BudgetUnavailable,
    BudgetValueError,
)
from daemon.budget.keys import BudgetKeys, budget_keys
from daemon.budget.limits import Limit, parse_rate_limits, rate_limits_json
from daemon.budget.options import BudgetOptions
from daemon.budget.results import BanReport, BudgetStats, BudgetUsage, Grant, WindowUsage
from daemon.lazy import lazy_exports

if TYPE_CHECKING:
    from daemon.budget._async import AsyncWeightBudget, store_time_offset
    from daemon.budget._sync import WeightBudget
    from daemon.budget._sync import store_time_offset as store_time_offset_sync

logging.getLogger("symbold.budget").addHandler(logging.NullHandler())

# The two clients load on first use, so that a caller who needs only key names, limits or
# result types (``symbold status`` among them) does not pay for both.
__getattr__ = lazy_exports(
    __name__,
    {
        "AsyncWeightBudget": "daemon.budget._async:AsyncWeightBudget",
        "store_time_offset": "daemon.budget._async:store_time_offset",
        "WeightBudget": "daemon.budget._sync:WeightBudget",
        "store_time_offset_sync": "daemon.budget._sync:store_time_offset",
    },
)

__all__ = [
    "AsyncWeightBudget",
    "BanReport",
    "Banned",
    "BudgetError",
    "BudgetExhausted",
    "BudgetKeys",
    "BudgetOptions",
    "BudgetStats",
    "BudgetUnavailable",
    "BudgetUsage",
    "BudgetValueError",
    "Grant",
    "Limit",
    "WeightBudget",
    "WindowUsage",
    "budget_keys",
    "parse_rate_limits",
    "rate_limits_json",
    "store_time_offset",
    "store_time_offset_sync",
]
