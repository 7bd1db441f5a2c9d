"""Recipe: make a ccxt Binance exchange draw on the shared budget instead of its own throttle.

ccxt throttles each exchange *instance* on its own, so eight bot processes with ccxt each
believe they have the whole IP limit. These helpers replace that per instance::

    import ccxt.async_support as ccxt
    from daemon.budget import AsyncWeightBudget
    from daemon.budget.ccxt_recipe import use_budget

    budget = AsyncWeightBudget.from_settings(market="spot")
    exchange = ccxt.binance()
    use_budget(exchange, budget)                # also turns ccxt's enableRateLimit off
    book = await exchange.fetch_order_book("BTC/USDT")

(``use_budget_sync`` does the same for the blocking ``ccxt.binance`` with a
:class:`~daemon.budget.WeightBudget`.) What it does: ccxt's ``fetch(url, method, headers,
body)`` (every REST call ends there) is wrapped on the instance: the endpoint's weight from
:mod:`daemon.budget.weights` is acquired first, and after the answer the rate-limit headers
are observed and a 429/418 is reported, so every other process stops too. Status and headers
are caught in ccxt's ``on_rest_response`` hook through a context variable, so concurrent
calls on one instance do not mix them up. ccxt itself is not imported here.
"""

from __future__ import annotations

import contextvars
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from daemon.budget._async import AsyncWeightBudget
from daemon.budget._sync import WeightBudget
from daemon.budget.weights import Cost, EndpointWeights

_answer: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "symbold_budget_ccxt_answer", default=None
)


def _cost(weights: EndpointWeights, url: str, method: str) -> Cost:
    parts = urlsplit(url)
    return weights.cost(method, parts.path, dict(parse_qsl(parts.query)))


def _hook(exchange: Any) -> None:
    original = exchange.on_rest_response

    def on_rest_response(
        code: int, reason: str, url: str, method: str, headers: Any, *rest: Any
    ) -> Any:
        box = _answer.get()
        if box is not None:
            box["status"], box["headers"] = code, dict(headers or {})
        return original(code, reason, url, method, headers, *rest)

    exchange.on_rest_response = on_rest_response
    exchange.enableRateLimit = False  # the shared budget replaces ccxt's per-instance throttle


def use_budget(
    exchange: Any,
    budget: AsyncWeightBudget,
    *,
    weights: EndpointWeights | None = None,
    priority: str = "normal",
    account: str | None = None,
) -> None:
    """Route every REST call of an asyncio ccxt exchange through `budget` (see module doc)."""
    table = weights or EndpointWeights(budget.options.default_weight)
    fetch = exchange.fetch
    _hook(exchange)

    async def budgeted_fetch(
        url: str, method: str = "GET", headers: Any = None, body: Any = None
    ) -> Any:
        cost = _cost(table, url, method)
        grant = await budget.acquire(
            cost.weight, orders=cost.orders, priority=priority, account=account
        )
        box: dict[str, Any] = {}
        token = _answer.set(box)
        try:
            return await fetch(url, method, headers, body)
        finally:
            _answer.reset(token)
            if "headers" in box:
                await budget.observe(box["headers"], grant=grant)
                if box["status"] in (429, 418):
                    await budget.report_limited(box["status"], box["headers"])

    exchange.fetch = budgeted_fetch


def use_budget_sync(
    exchange: Any,
    budget: WeightBudget,
    *,
    weights: EndpointWeights | None = None,
    priority: str = "normal",
    account: str | None = None,
) -> None:
    """Blocking twin of :func:`use_budget`, for ``ccxt.binance`` and a WeightBudget."""
    table = weights or EndpointWeights(budget.options.default_weight)
    fetch = exchange.fetch
    _hook(exchange)

    def budgeted_fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        cost = _cost(table, url, method)
        grant = budget.acquire(cost.weight, orders=cost.orders, priority=priority, account=account)
        box: dict[str, Any] = {}
        token = _answer.set(box)
        try:
            return fetch(url, method, headers, body)
        finally:
            _answer.reset(token)
            if "headers" in box:
                budget.observe(box["headers"], grant=grant)
                if box["status"] in (429, 418):
                    budget.report_limited(box["status"], box["headers"])

    exchange.fetch = budgeted_fetch
