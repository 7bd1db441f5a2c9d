"""Health and metrics: the optional HTTP endpoint, and the freshness rule it shares.

``/healthz`` answers 200 while every enabled market holds a snapshot younger than
``health.max_age`` and 503 with the reasons otherwise; ``/metrics`` is Prometheus text format
from a registry private to the service (so tests and reloads never collide on the global one).
The endpoint is off by default and binds to 127.0.0.1 when on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from daemon.ops.freshness import Freshness, judge_freshness
from daemon.refresh.cycle import CycleResult, MarketRefresher

__all__ = ["Freshness", "HealthServer", "Telemetry", "judge_freshness"]


class Telemetry:
    """Prometheus metrics about refreshes, fed by the service after every cycle."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.refreshes = Counter(
            "symbold_refresh",
            "Refresh cycles by outcome (accepted, unchanged, rejected, error, skipped).",
            ["market", "outcome"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "symbold_last_success_timestamp_seconds",
            "UTC epoch seconds of the last accepted snapshot.",
            ["market"],
            registry=self.registry,
        )
        self.age = Gauge(
            "symbold_snapshot_age_seconds",
            "Seconds since the last accepted snapshot.",
            ["market"],
            registry=self.registry,
        )
        self.symbols = Gauge(
            "symbold_symbols",
            "Symbols in the last accepted snapshot (all statuses, and listed).",
            ["market", "kind"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "symbold_upstream_latency_seconds",
            "Time to fetch exchangeInfo from the host that answered.",
            ["market"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.used_weight = Gauge(
            "symbold_upstream_used_weight",
            "X-MBX-USED-WEIGHT-1M from the last reply (shared by every process on the IP).",
            ["market"],
            registry=self.registry,
        )
        self._refreshers: dict[str, MarketRefresher] = {}

    def track(self, refreshers: Iterable[MarketRefresher]) -> None:
        self._refreshers = {r.name: r for r in refreshers}
        for name in self._refreshers:
            for outcome in ("accepted", "unchanged", "rejected", "error", "skipped"):
                self.refreshes.labels(name, outcome)

    def observe(self, result: CycleResult) -> None:
        self.refreshes.labels(result.market, result.outcome).inc()
        refresher = self._refreshers.get(result.market)
        if refresher is None:
            return
        if refresher.fetch_ms is not None:
            self.upstream_latency.labels(result.market).observe(refresher.fetch_ms / 1000.0)
        if refresher.used_weight is not None:
            self.used_weight.labels(result.market).set(refresher.used_weight)
        if result.ok:
            self.symbols.labels(result.market, "all").set(result.count)
            self.symbols.labels(result.market, "listed").set(result.listed)

    def refresh_gauges(self, now: float) -> None:
        for name, refresher in self._refreshers.items():
            held = refresher.held
            if held is None:
                continue
            self.last_success.labels(name).set(held.meta.fetched_at)
            self.age.labels(name).set(max(0.0, now - held.meta.fetched_at))

    def render(self) -> bytes:
        self.refresh_gauges(time.time())
        return prometheus_client.generate_latest(self.registry)

    def freshness(self, max_age: float, now: float | None = None) -> list[Freshness]:
        now = time.time() if now is None else now
        return [
            judge_freshness(
                name, r.held.meta.fetched_at if r.held is not None else None, max_age, now
            )
            for name, r in self._refreshers.items()
        ]


class HealthServer:
    """aiohttp server for /healthz and /metrics."""

    def __init__(self, telemetry: Telemetry, *, host: str, port: int, max_age: float) -> None:
        self.telemetry = telemetry
        self.host = host
        self.port = port
        self.max_age = max_age
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        states = self.telemetry.freshness(self.max_age)
        stale = [s.reason for s in states if not s.fresh]
        if stale:
            return web.Response(status=503, text="stale: " + "; ".join(stale) + "\n")
        ages = ", ".join(f"{s.market} {s.age:.0f} s" for s in states if s.age is not None)
        return web.Response(status=200, text=f"ok: {ages}\n")

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=self.telemetry.render(),
            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST},
        )
