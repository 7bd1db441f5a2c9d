"""The timer loops: when each market refreshes, and how a forced refresh is coalesced.

- One :class:`MarketLoop` per enabled market; a market never refreshes twice at once because
  its loop is the only caller of its refresher's cycle.
- After success the next cycle is ``interval`` away, moved by up to ``jitter`` either way.
  After failures it backs off exponentially (full jitter) up to ``backoff_ceiling``, never
  shorter than a rate-limit ban, and permanent upstream errors (403/451) wait the ceiling.
- Between cycles the loop checks every ``check_interval`` that Redis still holds the cache, so
  a Redis that restarted empty is served again within seconds, not at the next refresh.
- :class:`ForcedRefresh` turns a burst of SIGHUPs into one refresh of every market, with at
  least ``min_refresh_gap`` between two forced refreshes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable

from daemon.config.settings import MarketSettings, SchedulerSettings, UpstreamSettings
from daemon.logs import get_logger, scrub_text
from daemon.redis.errors import RECOVERABLE
from daemon.refresh.cycle import CycleResult, MarketRefresher, Outcome
from daemon.snapshot.lease import Lease, LeaseLost
from daemon.upstream.fetch import retry_delay


def next_delay(
    result: CycleResult,
    failures: int,
    *,
    market: MarketSettings,
    upstream: UpstreamSettings,
    rng: random.Random,
) -> float:
    """Seconds until the next cycle after `result` (`failures` counts consecutive failures,
    this one included). Pure apart from `rng`."""
    if result.ok:
        spread = market.interval * market.jitter
        return max(1.0, market.interval + rng.uniform(-spread, spread))
    if result.outcome in (Outcome.SKIPPED, Outcome.FENCED) and result.wait is None:
        return market.interval
    if result.permanent:
        return upstream.backoff_ceiling
    backoff = retry_delay(
        None, failures - 1, base=upstream.backoff_base, cap=upstream.backoff_ceiling, rng=rng
    )
    # Full jitter can draw ~0; keep a floor so a broken upstream is not hammered.
    backoff = max(backoff, min(upstream.backoff_base, upstream.backoff_ceiling))
    if result.wait is not None:
        return max(backoff, result.wait)
    return backoff


# How often a follower retries while Redis does not answer at all (seconds).
_UNREACHABLE_RETRY = 0.5


class MarketLoop:
    """Refreshes one market on its timer until `stop` is set."""

    def __init__(
        self,
        refresher: MarketRefresher,
        *,
        upstream: UpstreamSettings,
        scheduler: SchedulerSettings,
        stop: asyncio.Event,
        rng: random.Random | None = None,
        on_cycle: Callable[[CycleResult], None] | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.refresher = refresher
        # With a lease this loop refreshes only while it leads the market among replicas, and
        # every write it makes is fenced by the lease token for good: a write in flight when
        # the lease was lost (a frozen process waking up) is refused by Redis.
        self.lease = lease
        if lease is not None:
            refresher.store.fence = lease.fence
        self.upstream = upstream
        self.scheduler = scheduler
        self.stop = stop
        self.wake = asyncio.Event()
        self.rng = rng or random.Random()
        self.on_cycle = on_cycle
        self.failures = 0
        self.cycles = 0
        self.next_at: float = time.time()
        self.idle = asyncio.Event()
        self.idle.set()
        # Set after every cycle (waiters clear it); lets a reload wait for "refreshed since".
        self.cycle_done = asyncio.Event()
        self.finished = False
        # Monotonic time the loop last showed it is alive (between and around cycles).
        self.beat = time.monotonic()
        self.log = get_logger("symbold.scheduler").bind(market=refresher.name)

    @property
    def leading(self) -> bool:
        return self.lease is None or self.lease.held

    async def run(self) -> None:
        """Cycle now, then on the timer; returns when `stop` is set (between cycles).

        With a lease: follow (stay warm, forward refresh requests) until the lease is free,
        then lead; a lost lease (expired, or a fenced write) turns it back into a follower.
        """
        keeper = asyncio.create_task(self._keep_lease()) if self.lease is not None else None
        try:
            await self._run()
        finally:
            self.finished = True
            self.cycle_done.set()
            if keeper is not None:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
            if self.lease is not None:
                await self.lease.release()

    async def _run(self) -> None:
        delay = 0.0
        while not self.stop.is_set():
            if not self.leading:
                delay = await self._follow()
                continue
            await self._wait(delay)
            if self.stop.is_set():
                break
            if not self.leading:
                continue
            self.wake.clear()
            self.idle.clear()
            try:
                result = await self.refresher.refresh_once()
            finally:
                self.idle.set()
            self.cycles += 1
            self.beat = time.monotonic()
            self.cycle_done.set()
            if result.fenced and self.lease is not None:
                self.lease.held = False
                continue
            self.failures = 0 if result.ok else self.failures + 1
            delay = next_delay(
                result,
                self.failures,
                market=self.refresher.market,
                upstream=self.upstream,
                rng=self.rng,
            )
            self.next_at = time.time() + delay
            if self.on_cycle is not None:
                self.on_cycle(result)

    async def _follow(self) -> float:
        """Wait as a follower until this daemon takes the lease; return the delay until the
        market's next refresh is due (so a takeover keeps one refresh per interval)."""
        assert self.lease is not None
        lease, store = self.lease, self.refresher.store
        announced = False
        while not self.stop.is_set():
            self.beat = time.monotonic()
            poll = lease.ttl / 3
            try:
                if self.wake.is_set():
                    # SIGHUP on a follower: ask the leader instead of fetching ourselves.
                    self.wake.clear()
                    await store.request_refresh()
                    self.log.info("refresh.forwarded", to=await lease.holder())
                if await lease.try_acquire():
                    self.log.info("lease.leading", token=lease.token)
                    return await self._due_in()
                if not announced:
                    announced = True
                    self.log.info("lease.following", leader=await lease.holder())
                held = await store.load_if_newer(self.refresher.held)
                if held is not None:
                    self.refresher.held = held
            except RECOVERABLE as exc:
                self.log.debug("redis.unavailable", error=scrub_text(str(exc)), during="follow")
                # Unreachable Redis: nobody can hold a lease we could see, so try again soon
                # rather than a whole poll later once it is back.
                poll = min(poll, _UNREACHABLE_RETRY)
            await _first_of((self.stop, self.wake), seconds=poll)
        return 0.0

    async def _due_in(self) -> float:
        refreshed_at = await self.refresher.store.refreshed_at()
        if refreshed_at is None:
            return 0.0
        return max(0.0, refreshed_at + self.refresher.market.interval - time.time())

    async def _keep_lease(self) -> None:
        """Renew the lease every ttl/3 while leading; notice when it is gone."""
        assert self.lease is not None
        lease = self.lease
        while not self.stop.is_set():
            await _first_of((self.stop,), seconds=lease.ttl / 3)
            if self.stop.is_set() or not lease.held:
                continue
            try:
                if not await lease.renew():
                    self.wake.set()  # leave any wait at once and turn follower
            except RECOVERABLE as exc:
                if lease.expired_locally():
                    lease.held = False
                    self.log.warning("lease.expired", error=scrub_text(str(exc)))
                    self.wake.set()

    def request_refresh(self) -> bool:
        """Refresh now (leader) or forward the request (follower). True if a cycle follows
        here, so a caller may wait for it."""
        self.wake.set()
        return self.leading

    async def _wait(self, delay: float) -> None:
        """Sleep `delay` seconds, waking early for `wake` or `stop`; watch the cache meanwhile."""
        deadline = time.monotonic() + delay
        while not self.stop.is_set() and not self.wake.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.beat = time.monotonic()
            step = min(remaining, self.scheduler.check_interval)
            if self.lease is not None:
                step = min(step, self.lease.ttl / 3)
            await _first_of((self.stop, self.wake), seconds=step)
            if self.stop.is_set() or self.wake.is_set() or deadline <= time.monotonic():
                return
            if not self.leading:
                return
            await self._watch()

    async def _watch(self) -> None:
        try:
            await self.refresher.watch()
            if self.lease is not None and await self.refresher.store.take_refresh_request():
                self.log.info("refresh.requested", by="a follower")
                self.wake.set()
        except RECOVERABLE as exc:
            self.log.debug("redis.unavailable", error=scrub_text(str(exc)), during="watch")
        except LeaseLost:
            if self.lease is not None:
                self.lease.held = False


async def _first_of(events: Iterable[asyncio.Event], seconds: float) -> None:
    """Wait until any of `events` is set, or `seconds` pass."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


class ForcedRefresh:
    """Coalesces refresh requests (SIGHUP) into runs of `action`.

    :meth:`request` only sets an event, so it is safe from a signal handler. Requests that
    arrive while `action` runs, or within `min_gap` of the last run's start, merge into the
    next run: N requests over T seconds cause at most 1 + T / min_gap runs.
    """

    def __init__(
        self, action: Callable[[], Awaitable[None]], *, min_gap: float, stop: asyncio.Event
    ) -> None:
        self.action = action
        self.min_gap = min_gap
        self.stop = stop
        self.requested = asyncio.Event()
        self.forced = 0
        self._last = -float("inf")

    def request(self) -> None:
        self.requested.set()

    async def run(self) -> None:
        while not self.stop.is_set():
            await _first_of((self.requested, self.stop), seconds=3600.0)
            if self.stop.is_set():
                return
            if not self.requested.is_set():
                continue
            gap = self._last + self.min_gap - time.monotonic()
            if gap > 0:
                # Wait out the gap; more requests in the meantime merge into this one.
                await _first_of((self.stop,), seconds=gap)
                if self.stop.is_set():
                    return
            self.requested.clear()
            self._last = time.monotonic()
            self.forced += 1
            await self.action()


async def wake_and_wait(loops: Iterable[MarketLoop], stop: asyncio.Event) -> None:
    """Refresh every market now and wait until each leading loop finished that cycle (or
    stop); a follower forwards the request to the leader and is not waited for."""
    targets = [(loop, loop.cycles + (0 if loop.idle.is_set() else 1) + 1) for loop in loops]
    targets = [(loop, target) for loop, target in targets if loop.request_refresh()]
    for loop, target in targets:
        while loop.cycles < target and not stop.is_set() and not loop.finished:
            await _first_of((loop.cycle_done, stop), seconds=3600.0)
            loop.cycle_done.clear()
