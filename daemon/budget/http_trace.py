"""An aiohttp client middleware that runs every Binance request through the shared budget.

::

    from daemon.budget import AsyncWeightBudget
    from daemon.budget.http_trace import BudgetMiddleware

    budget = AsyncWeightBudget.from_settings(market="spot")
    async with aiohttp.ClientSession(middlewares=(BudgetMiddleware(budget),)) as session:
        async with session.get("https://api.binance.com/api/v3/depth?symbol=BTCUSDT") as r:
            ...

For a request to a Binance host (or one of ``extra_hosts``, e.g. a test server), the
middleware charges the endpoint's weight (:mod:`daemon.budget.weights`) before sending
(``acquire``; :class:`~daemon.budget.Banned` or ``BudgetExhausted`` propagate to the caller),
reconciles the counters from the response headers (``observe``), and on 429/418 stores the
shared deadline (``report_limited``). Other hosts pass through untouched. This module is the
only part of the budget that imports aiohttp.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import aiohttp
from yarl import URL

from daemon.budget._async import AsyncWeightBudget
from daemon.budget.weights import EndpointWeights

BINANCE_HOSTS: Final = frozenset(
    {
        "api.binance.com",
        "api-gcp.binance.com",
        "api1.binance.com",
        "api2.binance.com",
        "api3.binance.com",
        "api4.binance.com",
        "data-api.binance.vision",
        "testnet.binance.vision",
        "fapi.binance.com",
        "dapi.binance.com",
    }
)


class BudgetMiddleware:
    """aiohttp client middleware (``ClientSession(middlewares=(mw,))``); see the module doc."""

    def __init__(
        self,
        budget: AsyncWeightBudget,
        *,
        weights: EndpointWeights | None = None,
        priority: str = "normal",
        account: str | None = None,
        extra_hosts: Iterable[str] = (),
    ) -> None:
        self.budget = budget
        self.weights = weights or EndpointWeights(budget.options.default_weight)
        self.priority = priority
        self.account = account
        # "host" or "host:port" entries.
        self.hosts = frozenset(BINANCE_HOSTS | set(extra_hosts))

    def applies(self, url: URL) -> bool:
        host = url.host or ""
        return host in self.hosts or f"{host}:{url.port}" in self.hosts

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if not self.applies(request.url):
            return await handler(request)
        cost = self.weights.cost(request.method, request.url.path, request.url.query)
        grant = await self.budget.acquire(
            cost.weight, orders=cost.orders, priority=self.priority, account=self.account
        )
        response = await handler(request)
        await self.budget.observe(response.headers, grant=grant)
        if response.status in (429, 418):
            await self.budget.report_limited(response.status, response.headers)
        return response
