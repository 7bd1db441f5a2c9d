"""Timer arithmetic (pure) and forced-refresh coalescing (in-process, no I/O)."""

from __future__ import annotations

import asyncio
import random
import time

from daemon.config.settings import MarketSettings, UpstreamSettings
from daemon.refresh.cycle import CycleResult
from daemon.refresh.scheduler import ForcedRefresh, next_delay

MARKET = MarketSettings(enabled=True, interval=300.0, jitter=0.1)
UPSTREAM = UpstreamSettings(backoff_base=5.0, backoff_ceiling=600.0)


def delay(result: CycleResult, failures: int = 0, seed: int = 1) -> float:
    return next_delay(result, failures, market=MARKET, upstream=UPSTREAM, rng=random.Random(seed))


def test_success_waits_interval_with_jitter() -> None:
    values = {delay(CycleResult("spot", "accepted"), seed=s) for s in range(50)}
    assert all(270.0 <= v <= 330.0 for v in values)
    assert len(values) > 40  # really jittered
    assert 270.0 <= delay(CycleResult("spot", "unchanged")) <= 330.0


def test_failures_back_off_exponentially_up_to_the_ceiling() -> None:
    err = CycleResult("spot", "error")
    first = [delay(err, 1, seed=s) for s in range(200)]
    assert all(v == 5.0 for v in first)  # attempt 0 draws from [0, base]; the base is the floor
    tenth = [delay(err, 10, seed=s) for s in range(200)]
    assert max(tenth) <= 600.0
    assert max(tenth) > 300.0  # grew far beyond the base
    assert all(v >= 5.0 for v in tenth)  # never hammers


def test_ban_wait_is_never_shortened() -> None:
    banned = CycleResult("spot", "error", wait=1800.0)
    assert delay(banned, 1) == 1800.0
    skipped = CycleResult("spot", "skipped", wait=42.0)
    assert delay(skipped, 1) >= 42.0


def test_permanent_errors_wait_the_ceiling() -> None:
    assert delay(CycleResult("spot", "error", retryable=False), 1) == 600.0


async def test_forced_refresh_coalesces_a_burst_and_keeps_the_gap() -> None:
    stop = asyncio.Event()
    ran = asyncio.Event()
    gap = 0.3

    async def action() -> None:
        ran.set()

    forced = ForcedRefresh(action, min_gap=gap, stop=stop)
    task = asyncio.create_task(forced.run())
    try:
        async with asyncio.timeout(5):
            for _ in range(500):  # a burst, as a signal storm delivers it
                forced.request()
            await ran.wait()
            first = time.monotonic()
            ran.clear()
            assert forced.forced == 1
            assert not forced.requested.is_set()  # the whole burst was consumed by one run
            for _ in range(500):
                forced.request()
            await ran.wait()
            assert time.monotonic() - first >= gap * 0.99
            assert forced.forced == 2
    finally:
        stop.set()
        await task
