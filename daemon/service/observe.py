"""What the running service reports about its markets: freshness, STATUS=, readiness.

:class:`Reporter` reads the service's current market loops (they are replaced on a reload) and
settings through callables, so it always describes what runs now.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from daemon.config.settings import Settings
from daemon.ops.freshness import Freshness, judge
from daemon.ops.notify import Notifier
from daemon.redis.errors import RECOVERABLE
from daemon.refresh.scheduler import MarketLoop
from daemon.service.status_line import market_text, status_line

# How often the STATUS= text is rebuilt (it is sent only when it changed).
STATUS_EVERY = 1.0
# Longest wait for one GET of refreshed_at while deciding readiness.
_LOOK_TIMEOUT = 2.0


class Reporter:
    """Freshness verdicts, the STATUS= line, and the wait for READY=1."""

    def __init__(
        self,
        notifier: Notifier,
        loops: Callable[[], list[MarketLoop]],
        settings: Callable[[], Settings],
    ) -> None:
        self.notifier = notifier
        self.loops = loops
        self.settings = settings
        # READY=1 sent; restart-only keys a reload changed (see daemon.service.reload).
        self.ready = False
        self.restart_needed: list[str] = []
        # refreshed_at seen in Redis per market (a snapshot another daemon or run published).
        self.seen_at: dict[str, float] = {}
        # Set after every cycle, so the readiness wait re-judges at once.
        self.cycled = asyncio.Event()
        self.last_status: str | None = None

    def freshness(self, now: float | None = None) -> list[Freshness]:
        """Each market's verdict by the one rule (daemon.ops.freshness), from the snapshot
        this daemon holds or, when newer, one seen in Redis."""
        now = time.time() if now is None else now
        max_age = self.settings().health.max_age
        return [
            judge(lp.refresher.name, self._refreshed_at(lp), max_age, now) for lp in self.loops()
        ]

    def _refreshed_at(self, lp: MarketLoop) -> float | None:
        held = lp.refresher.held
        times = [held.meta.fetched_at] if held is not None else []
        seen = self.seen_at.get(lp.refresher.name)
        times += [seen] if seen is not None else []
        return max(times) if times else None

    def status_line(self, now: float | None = None) -> str:
        verdicts = self.freshness(now)
        parts = []
        for lp, verdict in zip(self.loops(), verdicts, strict=True):
            r = lp.refresher
            count = r.held.meta.count if r.held is not None else None
            parts.append(market_text(verdict, count, lp.leading, r.last_result))
        return status_line(
            parts,
            starting=not self.ready,
            degraded=self.ready and not all(v.fresh for v in verdicts),
            restart_needed=self.restart_needed,
        )

    def publish(self) -> None:
        """Send STATUS= when its text changed since the last one sent."""
        line = self.status_line()
        if line != self.last_status:
            self.last_status = line
            self.notifier.status(line)

    def send_ready(self) -> str:
        """READY=1 with the current STATUS= line; returns the line."""
        self.ready = True
        line = self.status_line()
        self.last_status = line
        self.notifier.ready(status=line)
        return line

    async def tick(self, stop: asyncio.Event) -> None:
        """Keep STATUS= current between cycles (the age moves, a snapshot turns stale)."""
        while not stop.is_set():
            self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=STATUS_EVERY)

    async def await_fresh(self, limit: float, stop: asyncio.Event) -> list[Freshness]:
        """Wait until every market is fresh, `limit` seconds pass or `stop` is set; returns the
        last verdicts. Looks in Redis for snapshots published elsewhere, so a restart over a
        fresh snapshot, or a follower whose leader keeps it fresh, is ready without fetching."""
        deadline = time.monotonic() + limit
        while True:
            verdicts = self.freshness()
            missing = {v.market for v in verdicts if not v.fresh}
            if missing:
                await self._look_in_redis(missing)
                verdicts = self.freshness()
            remaining = deadline - time.monotonic()
            if all(v.fresh for v in verdicts) or remaining <= 0 or stop.is_set():
                return verdicts
            self.cycled.clear()
            waiters = [asyncio.ensure_future(e.wait()) for e in (self.cycled, stop)]
            try:
                await asyncio.wait(
                    waiters, timeout=min(remaining, 0.5), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def _look_in_redis(self, markets: set[str]) -> None:
        for lp in self.loops():
            # A cycle in flight may already have written Redis without holding the snapshot
            # yet; its end sets `cycled`, so wait for it rather than announce a snapshot
            # this process cannot describe.
            if lp.refresher.name not in markets or not lp.idle.is_set():
                continue
            with contextlib.suppress(TimeoutError, *RECOVERABLE):
                at = await asyncio.wait_for(lp.refresher.store.refreshed_at(), _LOOK_TIMEOUT)
                if at is not None:
                    self.seen_at[lp.refresher.name] = at
