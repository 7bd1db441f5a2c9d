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
from dataclasses import dataclass, field
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


@dataclass(slots=True)
class _Call:
    """One REST call through the budget: its cost, and the answer ccxt's hook catches while
    the call runs inside ``with`` (status and headers; none when no answer came)."""

    cost: Cost
    box: dict[str, Any] = field(default_factory=dict)
    token: contextvars.Token[dict[str, Any] | None] | None = None

    def __enter__(self) -> _Call:
        self.token = _answer.set(self.box)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            _answer.reset(self.token)

    @property
    def headers(self) -> dict[str, Any] | None:
        return self.box.get("headers")

    @property
    def limited(self) -> int | None:
        """429 or 418 when Binance answered so."""
        status = self.box.get("status")
        return status if status in (429, 418) else None


def _install(exchange: Any, weights: EndpointWeights | None, default: int) -> tuple[Any, Any]:
    """Hook `exchange` and return (its own fetch, a function url, method -> :class:`_Call`)."""
    table = weights or EndpointWeights(default)
    fetch = exchange.fetch
    _hook(exchange)
    return fetch, lambda url, method: _Call(_cost(table, url, method))


def use_budget(
    exchange: Any,
    budget: AsyncWeightBudget,
    *,
    weights: EndpointWeights | None = None,
    priority: str = "normal",
    account: str | None = None,
) -> None:
    """Route every REST call of an asyncio ccxt exchange through `budget` (see module doc)."""
    fetch, start = _install(exchange, weights, budget.options.default_weight)

    async def budgeted_fetch(
        url: str, method: str = "GET", headers: Any = None, body: Any = None
    ) -> Any:
        call = start(url, method)
        w, n = call.cost.weight, call.cost.orders
        grant = await budget.acquire(w, orders=n, priority=priority, account=account)
        try:
            with call:
                return await fetch(url, method, headers, body)
        finally:
            if call.headers is not None:
                await budget.observe(call.headers, grant=grant)
            if call.limited:
                await budget.report_limited(call.limited, call.headers)

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
    fetch, start = _install(exchange, weights, budget.options.default_weight)

    def budgeted_fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        call = start(url, method)
        cost = call.cost
        grant = budget.acquire(cost.weight, orders=cost.orders, priority=priority, account=account)
        try:
            with call:
                return fetch(url, method, headers, body)
        finally:
            if call.headers is not None:
                budget.observe(call.headers, grant=grant)
            if call.limited:
                budget.report_limited(call.limited, call.headers)

    exchange.fetch = budgeted_fetch
