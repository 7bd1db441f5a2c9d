"""The market-loop tasks seen from outside: are they alive (for the watchdog), and stopping
them within a bound (for shutdown and reloads)."""

from __future__ import annotations

import asyncio
import time

from daemon.config.settings import Settings
from daemon.logs import get_logger
from daemon.refresh.scheduler import MarketLoop

# A market loop that shows no sign of life for this long (beyond its longest legitimate
# cycle) is taken as wedged and the watchdog stops pinging.
WEDGE_MARGIN = 30.0


def task_name(loop: MarketLoop) -> str:
    """The name of the task that runs `loop` (``market-<name>``)."""
    return f"market-{loop.refresher.name}"


def liveness(
    loops: list[MarketLoop],
    tasks: list[asyncio.Task[None]],
    settings: Settings,
    now: float | None = None,
) -> str | None:
    """None while every market loop works; else why the watchdog should stop pinging.

    A loop is wedged when its task ended, or when it has not beaten for longer than its
    longest legitimate cycle (every host timing out, plus a few Redis timeouts) or the check
    interval, whichever is longer, plus :data:`WEDGE_MARGIN`."""
    now = time.monotonic() if now is None else now
    by_name = {t.get_name(): t for t in tasks}
    for lp in loops:
        task = by_name.get(task_name(lp))
        if task is not None and task.done():
            return f"market loop {lp.refresher.name} ended"
        source = lp.refresher.source
        longest = len(source.base_urls) * source.timeout_total + 3 * settings.redis.socket_timeout
        limit = max(longest, settings.scheduler.check_interval) + WEDGE_MARGIN
        if now - lp.beat > limit:
            return f"market loop {lp.refresher.name} silent for {now - lp.beat:.0f} s"
    return None


async def drain(tasks: list[asyncio.Task[None]], force_exit: asyncio.Event, grace: float) -> bool:
    """Let running cycles finish within `grace` seconds, then cancel what is left.

    Returns True if `force_exit` (a second stop request) cut the grace period short.
    """
    pending = {t for t in tasks if not t.done()}
    if not pending:
        return False
    force = asyncio.create_task(force_exit.wait())
    deadline = time.monotonic() + grace
    while pending and not force.done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.wait(
            [*pending, force], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        pending = {t for t in pending if not t.done()}
    forced = force.done()
    force.cancel()
    if pending:
        get_logger("symbold.service").warning(
            "service.abandoning", tasks=sorted(t.get_name() for t in pending), forced=forced
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return forced
