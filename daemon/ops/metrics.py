"""Prometheus metrics of the daemon, in a registry private to the service.

A private registry means tests and reloads never collide on prometheus-client's global one. It
holds symbold's own families (refreshes, snapshot age, symbols, upstream latency and weight,
leadership, the rate-limit ban deadline, the shared weight budget) and the standard
``process_*`` and ``python_info`` families. Values that live elsewhere (the held snapshot, the
lease, the budget in Redis) are read when /metrics is scraped, so a scrape shows the state at
that moment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Mapping

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.budget import AsyncWeightBudget, BudgetError, BudgetUsage
from daemon.redis.errors import RECOVERABLE
from daemon.refresh.cycle import CycleResult, MarketRefresher
from daemon.refresh.scheduler import MarketLoop

OUTCOMES = ("accepted", "unchanged", "rejected", "error", "skipped")
# A scrape never waits longer than this for the budget's usage in Redis.
BUDGET_READ_TIMEOUT = 1.0
_UNREADABLE: tuple[type[BaseException], ...] = (TimeoutError, BudgetError, *RECOVERABLE)


def limit_label(kind: str, interval: str) -> str:
    """The `limit` label of the budget gauges, e.g. "REQUEST_WEIGHT_1M"."""
    return f"{kind}_{interval}"


class BudgetCollector(Collector):
    """The shared weight budget of each market the service holds a budget for.

    ``symbold_budget_used`` / ``symbold_budget_limit`` come from the last usage read (absent when
    Redis could not be read); the counters from the budget object's own :meth:`stats`.
    """

    def __init__(self) -> None:
        self.budgets: Mapping[str, AsyncWeightBudget] = {}
        self.usage: dict[str, BudgetUsage] = {}

    async def read(self) -> None:
        """Read every budget's usage now (one script each, bounded; failures drop the figure)."""
        for market, budget in list(self.budgets.items()):
            try:
                self.usage[market] = await asyncio.wait_for(budget.usage(), BUDGET_READ_TIMEOUT)
            except _UNREADABLE:
                self.usage.pop(market, None)

    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily(
            "symbold_budget_used",
            "Weight (or requests, orders) used in the current window of the shared budget.",
            labels=["market", "limit"],
        )
        limit = GaugeMetricFamily(
            "symbold_budget_limit",
            "Binance's limit for that window (the budget hands out a safety share of it).",
            labels=["market", "limit"],
        )
        for market, usage in self.usage.items():
            if market not in self.budgets:
                continue
            for w in usage.windows:
                label = limit_label(w.kind, w.interval)
                used.add_metric([market, label], w.used)
                limit.add_metric([market, label], w.limit)
        yield used
        yield limit
        for name, doc in (
            ("waits", "Acquires of this daemon's budget that waited for a window to roll."),
            ("denials", "Acquires of this daemon's budget refused (window full, wait too long)."),
            ("bans", "Acquires of this daemon's budget refused because a 429/418 ban stands."),
        ):
            family = CounterMetricFamily(f"symbold_budget_{name}", doc, labels=["market"])
            for market, budget in self.budgets.items():
                family.add_metric([market], getattr(budget.stats(), name))
            yield family


class Telemetry:
    """Prometheus metrics about refreshes, fed by the service after every cycle."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.refreshes = Counter(
            "symbold_refresh",
            "Refresh cycles by outcome (accepted, unchanged, rejected, error, skipped).",
            ["market", "outcome"],
            registry=self.registry,
        )
        self.last_success = self._gauge(
            "symbold_last_success_timestamp_seconds",
            "UTC epoch seconds of the last accepted snapshot.",
        )
        self.age = self._gauge(
            "symbold_snapshot_age_seconds",
            "Seconds since the last accepted snapshot.",
        )
        self.symbols = self._gauge(
            "symbold_symbols",
            "Symbols in the last accepted snapshot (all statuses, and listed).",
            "kind",
        )
        self.upstream_latency = Histogram(
            "symbold_upstream_latency_seconds",
            "Time to fetch exchangeInfo from the host that answered.",
            ["market"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.used_weight = self._gauge(
            "symbold_upstream_used_weight",
            "X-MBX-USED-WEIGHT-1M from the last reply (shared by every process on the IP).",
        )
        self.leader = self._gauge(
            "symbold_leader",
            "1 while this daemon leads the market (holds its lease, or leases are off), else 0.",
        )
        self.ban_until = self._gauge(
            "symbold_ban_until_timestamp_seconds",
            "UTC epoch seconds until which a 429/418 forbids fetching; 0 when no ban stands.",
        )
        self.budget = BudgetCollector()
        self.registry.register(self.budget)
        self._loops: dict[str, MarketLoop] = {}

    def _gauge(self, name: str, doc: str, *more_labels: str) -> Gauge:
        """A gauge in this registry, labelled by market (and `more_labels`)."""
        return Gauge(name, doc, ["market", *more_labels], registry=self.registry)

    def track(
        self, loops: Iterable[MarketLoop], budgets: Mapping[str, AsyncWeightBudget] | None = None
    ) -> None:
        """Follow these market loops (and budgets) from now on (called again after a reload)."""
        self._loops = {lp.refresher.name: lp for lp in loops}
        self.budget.budgets = dict(budgets or {})
        for name in self._loops:
            for outcome in OUTCOMES:
                self.refreshes.labels(name, outcome)

    def seed(self, outcomes: Mapping[tuple[str, str], int]) -> None:
        """Start the refresh counters at these (market, outcome) totals, counted before this
        registry existed (a reload that turns the endpoint on keeps the daemon's totals)."""
        for (market, outcome), n in outcomes.items():
            self.refreshes.labels(market, outcome).inc(n)

    @property
    def refreshers(self) -> dict[str, MarketRefresher]:
        return {name: lp.refresher for name, lp in self._loops.items()}

    def observe(self, result: CycleResult) -> None:
        self.refreshes.labels(result.market, result.outcome).inc()
        loop = self._loops.get(result.market)
        if loop is None:
            return
        refresher = loop.refresher
        if refresher.fetch_ms is not None:
            self.upstream_latency.labels(result.market).observe(refresher.fetch_ms / 1000.0)
        if refresher.used_weight is not None:
            self.used_weight.labels(result.market).set(refresher.used_weight)
        if result.ok:
            self.symbols.labels(result.market, "all").set(result.count)
            self.symbols.labels(result.market, "listed").set(result.listed)

    def refresh_gauges(self, now: float) -> None:
        for name, loop in self._loops.items():
            refresher = loop.refresher
            self.leader.labels(name).set(1 if loop.leading else 0)
            ban = refresher.ban_until
            self.ban_until.labels(name).set(ban if ban > now else 0)
            held = refresher.held
            if held is None:
                continue
            self.last_success.labels(name).set(held.meta.fetched_at)
            self.age.labels(name).set(max(0.0, now - held.meta.fetched_at))

    def render(self) -> bytes:
        """The registry in Prometheus text format (budget figures as last read)."""
        self.refresh_gauges(time.time())
        return prometheus_client.generate_latest(self.registry)

    async def render_async(self) -> bytes:
        """Read the budgets' usage first (bounded), then render."""
        await self.budget.read()
        return self.render()
