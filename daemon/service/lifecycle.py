"""The service object: startup -> run -> shutdown, and the signals that steer it.

Signal handlers only set events:
- SIGHUP: reload and refresh. Re-read the config file (a bad one is logged and the running
  settings kept), rebuild the market loops if the settings changed, refresh every market, then
  tell systemd READY=1 again. A burst of SIGHUPs coalesces, with ``min_refresh_gap`` between runs.
- SIGTERM/SIGINT: stop. Loops finish the cycle they are in, bounded by ``shutdown_timeout``,
  after which the cycle is abandoned (a snapshot transaction commits whole or not at all, so
  abandoning it loses nothing); exit 0. A second SIGTERM/SIGINT stops at once (exit 1).

Under systemd (``NOTIFY_SOCKET``) it sends READY=1 once every market's snapshot is fresh
(published by this daemon, or found fresh in Redis: a follower is ready when the leader's
snapshot is), or after ``service.start_timeout`` with a "degraded" STATUS, so `systemctl start`
returning means the data is there. STATUS= is re-sent whenever its text changes (checked every
second, so the age it shows keeps moving); WATCHDOG=1 while the event loop and every market loop
are alive; RELOADING=1/READY=1 around a reload; STOPPING=1. The service keeps running whatever
Redis or Binance do. What a reload applies live is in :mod:`daemon.service.reload`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
import redis
import redis.asyncio

from daemon import exitcodes
from daemon.allocator import trim_heap
from daemon.budget import AsyncWeightBudget, BudgetError
from daemon.config.loader import Config
from daemon.config.redis_target import RedisURL
from daemon.config.settings import ConfigError, Settings
from daemon.contract.keys import keys_for
from daemon.logs import configure_logging, get_logger, scrub_text
from daemon.ops.freshness import Freshness
from daemon.ops.notify import Notifier, Watchdog, watchdog_interval
from daemon.redis.clients import ConnectionConfig, check_one_slot
from daemon.redis.errors import RECOVERABLE, ProblemKind, classify
from daemon.refresh.cycle import CycleResult, MarketRefresher, source_config
from daemon.refresh.scheduler import ForcedRefresh, MarketLoop, wake_and_wait
from daemon.service.endpoint import HealthEndpoint
from daemon.service.heartbeat import Heartbeat
from daemon.service.observe import Reporter
from daemon.service.reload import changed_keys, needs_loops, restart_pending
from daemon.service.tasks import drain, liveness, task_name
from daemon.snapshot.lease import Lease
from daemon.upstream.fetch import make_session

if TYPE_CHECKING:
    from daemon.celery_interop.enqueue import TaskSender

    # Imported when [health] or [celery] is enabled, not before: an idle daemon without them
    # does not carry prometheus-client or Celery (see tests/ops/test_idle_imports.py).
    from daemon.ops.metrics import Telemetry
    from daemon.service.celery_events import CeleryEvents

# Loads the configuration again (SIGHUP); raises ConfigError when the new one is bad.
Reloader = Callable[[], Config]


class Service:
    """Owns the Redis client, the HTTP session, one loop per market, and the signals."""

    def __init__(
        self,
        settings: Settings,
        url: RedisURL,
        *,
        reload: Reloader | None = None,
        notifier: Notifier | None = None,
        on_cycle: Callable[[CycleResult], None] | None = None,
    ) -> None:
        """`settings` and `url` as resolved by :func:`daemon.config.load_config` (see also
        :meth:`from_config`); `reload` loads them again on SIGHUP."""
        self.settings = settings
        self.url = url
        # Built once per configuration (and again on a reload that changes it).
        self.connection = ConnectionConfig(url=url, settings=settings.redis)
        self.reloader = reload
        self.notifier = notifier or Notifier()
        self.on_cycle = on_cycle
        self.should_exit = asyncio.Event()
        self.force_exit = asyncio.Event()
        self.started = asyncio.Event()
        # The Prometheus registry, built when the health endpoint first needs it; until then
        # only each market's outcome counts are kept, to seed it.
        self.telemetry: Telemetry | None = None
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.loops: list[MarketLoop] = []
        self.forced = ForcedRefresh(
            self._reload_and_refresh,
            min_gap=settings.scheduler.min_refresh_gap,
            stop=self.should_exit,
        )
        self.reloads = 0
        # One shared weight budget per enabled market (rebuilt with the loops); another part of
        # the daemon draws on it for its own fetches, /metrics and `status` read it.
        self.budgets: dict[str, AsyncWeightBudget] = {}
        # The settings the service started with: restart-only keys are judged against them.
        self._started_settings = settings
        self.reporter = Reporter(self.notifier, lambda: self.loops, lambda: self.settings)
        self.health = HealthEndpoint(
            self.reporter, self._telemetry, lambda: self.settings, lambda: len(self.budgets)
        )
        self.log = get_logger("symbold.service")
        self._loops_stop = asyncio.Event()
        self._loop_tasks: list[asyncio.Task[None]] = []
        self._client: redis.asyncio.Redis | None = None
        self._session: aiohttp.ClientSession | None = None
        self.celery: CeleryEvents | None = None
        self.heartbeat = Heartbeat(
            lambda: self._client,
            lambda: self.loops,
            lambda: max(1.0, min(10.0, self.settings.scheduler.check_interval)),
        )

    # -- signals (handlers only set events) ------------------------------------------------

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        reload: Reloader | None = None,
        notifier: Notifier | None = None,
        on_cycle: Callable[[CycleResult], None] | None = None,
    ) -> Service:
        """The service of a loaded :class:`Config` (its ConnectionConfig is reused)."""
        service = cls(
            config.settings, config.url, reload=reload, notifier=notifier, on_cycle=on_cycle
        )
        service.connection = config.connection
        return service

    def request_refresh(self) -> None:
        self.forced.request()

    def request_stop(self) -> None:
        if self.should_exit.is_set():
            self.force_exit.set()
        self.should_exit.set()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGHUP, self.request_refresh)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)

    def _remove_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, install_signals: bool = True) -> int:
        """Run until asked to stop. Returns the process exit code."""
        loop = asyncio.get_running_loop()
        if install_signals:
            self._install_signals(loop)
        try:
            await self._startup()
            return await self._main_loop()
        finally:
            await self._shutdown()
            if install_signals:
                self._remove_signals(loop)

    async def _startup(self) -> None:
        s = self.settings
        if not s.markets.enabled():
            raise ConfigError("markets: no market is enabled; set markets.<name>.enabled = true")
        self.log.info(
            "service.starting",
            pid=os.getpid(),
            markets=list(s.markets.enabled()),
            **{f"redis_{k}": v for k, v in self.url.describe().items()},
        )
        connection = self.connection
        if connection.mode == "cluster":
            # One MULTI per snapshot: every key of a market must live in one slot.
            for name in s.markets.enabled():
                keys = keys_for(s, name)
                check_one_slot(f"markets.{name}.keys", (*keys.all_keys(), keys.events))
        if s.celery.enabled and connection.mode != "standalone" and not s.celery.broker_url:
            raise ConfigError(
                "celery.broker_url: set it explicitly with redis.mode = "
                f"{connection.mode!r}; Celery cannot use symbold's {connection.mode} URL"
            )
        await self._check_credentials()
        if s.celery.enabled:
            from daemon.celery_interop.enqueue import TaskSender
            from daemon.service.celery_events import CeleryEvents

            # The legacy broker is the same Redis unless told otherwise (CELERY_BROKER_URL).
            sender = TaskSender(s.celery.broker_url or self.url.url, s.celery)
            self.celery = CeleryEvents(sender, lambda: self.settings.celery)
        await self._start_loops()
        if s.health.enabled:
            await self.health.start(s.health)

    async def _start_loops(self) -> None:
        """Build the client, session and one loop per enabled market from self.settings."""
        s = self.settings
        markets = s.markets.enabled()
        self._client = self.connection.make_async(decode=False)
        # One session for every market: fetch passes each market's own timeouts per request.
        self._session = make_session(source_config(next(iter(markets.values())), s.upstream))
        previous = {lp.refresher.name: lp.refresher for lp in self.loops}
        self.loops = []
        self._loops_stop = asyncio.Event()
        self.budgets = {}
        for name in markets:
            try:
                self.budgets[name] = AsyncWeightBudget(self.connection, s, market=name)
            except (BudgetError, ConfigError) as exc:
                self.log.warning("budget.unavailable", market=name, error=str(exc))
        for name in markets:
            budget = self.budgets.get(name) if s.budget.own_fetches else None
            refresher = MarketRefresher.for_market(
                s, name, client=self._client, session=self._session, budget=budget
            )
            old = previous.get(name)
            if old is not None and old.store.keys == refresher.store.keys:
                # Keep the snapshot held in memory across a reload: it is still the newest.
                refresher.held = old.held
                refresher.ban_until = old.ban_until
            lease = None
            if s.lease.enabled:
                lease = Lease(self._client, refresher.store.keys.leader, ttl=s.lease.ttl)
                # Lead at once when nobody does (the usual single daemon); else follow.
                with contextlib.suppress(*RECOVERABLE):
                    await lease.try_acquire()
            self.loops.append(
                MarketLoop(
                    refresher,
                    upstream=s.upstream,
                    scheduler=s.scheduler,
                    stop=self._loops_stop,
                    on_cycle=self._cycle_done,
                    lease=lease,
                )
            )
        if self.telemetry is not None:
            self.telemetry.track(self.loops, self.budgets)
        self._loop_tasks = [asyncio.create_task(lp.run(), name=task_name(lp)) for lp in self.loops]

    async def _check_credentials(self) -> None:
        """A wrong password is a configuration error (exit 78); an unreachable Redis is not."""
        client = self.connection.make_async()
        try:
            await client.ping()
        except RECOVERABLE as exc:
            problem = classify(exc)
            if problem.kind is ProblemKind.CONFIGURATION:
                raise ConfigError(
                    f"redis: authentication failed for {self.url.redacted} "
                    f"(from {self.url.source}): {problem.message}"
                ) from None
            self.log.warning("redis.unavailable", error=scrub_text(str(exc)), during="startup")
        finally:
            await client.aclose()

    async def _stop_loops(self) -> bool:
        """Stop the market loops within the shutdown bound; True if a second signal forced it."""
        self._loops_stop.set()
        forced = await drain(
            self._loop_tasks, self.force_exit, self.settings.scheduler.shutdown_timeout
        )
        self._loop_tasks = []
        for budget in self.budgets.values():
            with contextlib.suppress(*RECOVERABLE):
                await budget.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        return forced

    async def _main_loop(self) -> int:
        helpers = [
            asyncio.create_task(self.forced.run(), name="forced-refresh"),
            asyncio.create_task(self.heartbeat.run(self.should_exit), name="heartbeat"),
            asyncio.create_task(self.reporter.tick(self.should_exit), name="status"),
        ]
        interval = watchdog_interval()
        if interval is not None:
            dog = Watchdog(
                self.notifier,
                interval,
                lambda: liveness(self.loops, self._loop_tasks, self.settings),
            )
            helpers.append(asyncio.create_task(dog.run(self.should_exit), name="watchdog"))
        self.started.set()
        self.log.info("service.started", markets=[lp.refresher.name for lp in self.loops])
        self.reporter.publish()
        timeout = self.settings.service.start_timeout
        verdicts = await self.reporter.await_fresh(timeout, self.should_exit)
        self.reporter.send_ready()
        stale = [v.reason for v in verdicts if not v.fresh]
        if stale:
            self.log.warning("service.ready", degraded=True, reasons=stale)
        else:
            self.log.info("service.ready", degraded=False)

        crashed: list[str] = []
        while not self.should_exit.is_set():
            watched = [*self._loop_tasks, *helpers]
            stop_waiter = asyncio.create_task(self.should_exit.wait())
            # The timeout re-reads the task list, which a reload replaces.
            done, _ = await asyncio.wait(
                [stop_waiter, *watched], timeout=1.0, return_when=asyncio.FIRST_COMPLETED
            )
            stop_waiter.cancel()
            for task in done:
                if task is stop_waiter or task.cancelled() or task.exception() is None:
                    continue
                crashed.append(task.get_name())
                self.log.error(
                    "service.task_crashed",
                    task=task.get_name(),
                    error=scrub_text(repr(task.exception())),
                )
            if crashed:
                break

        self.should_exit.set()
        self.notifier.stopping(status="stopping")
        self.log.info("service.stopping")
        forced = await self._stop_loops()
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if crashed or forced:
            return exitcodes.FAILURE
        return exitcodes.OK

    async def _shutdown(self) -> None:
        if self._loop_tasks:
            await self._stop_loops()
        if self.celery is not None:
            await self.celery.close()
            self.celery = None
        await self.health.stop()
        await self.heartbeat.clear(self.connection)
        self.notifier.close()
        self.log.info("service.stopped")

    # -- reload ----------------------------------------------------------------------------

    async def _reload_and_refresh(self) -> None:
        self.notifier.reloading()
        self.reloads += 1
        if self.reloader is not None:
            try:
                fresh = self.reloader()
            except ConfigError as err:
                self.log.error("config.reload_failed", error=scrub_text(str(err)), kept="old")
            else:
                await self._apply(fresh.settings, fresh.url, fresh.connection)
        self.log.info("refresh.forced", markets=[lp.refresher.name for lp in self.loops])
        await wake_and_wait(self.loops, self.should_exit)
        self.notifier.ready(status=self.status_line())

    async def _apply(
        self, settings: Settings, url: RedisURL, connection: ConnectionConfig | None = None
    ) -> None:
        if settings == self.settings and url.url == self.url.url:
            self.log.info("config.reloaded", changed=False)
            return
        if not settings.markets.enabled():
            self.log.error("config.reload_failed", error="no market is enabled", kept="old")
            return
        changed = changed_keys(self.settings, settings)
        if url.url != self.url.url:
            changed.add("redis.url")
        self.log.info("config.reloaded", changed=True, keys=sorted(changed))
        rebuild = needs_loops(changed)
        if rebuild:
            await self._stop_loops()
        old = self.settings
        self.settings = settings
        self.url = url
        self.connection = connection or ConnectionConfig(url=url, settings=settings.redis)
        self.forced.min_gap = settings.scheduler.min_refresh_gap
        configure_logging(settings.log.level, settings.log.format, secrets=url.secrets())
        if rebuild:
            await self._start_loops()
        await self.health.apply(old.health, settings.health)
        self.reporter.restart_needed = restart_pending(self._started_settings, settings)
        if self.reporter.restart_needed:
            self.log.warning("config.restart_needed", keys=self.reporter.restart_needed)

    # -- observing -------------------------------------------------------------------------

    def _cycle_done(self, result: CycleResult) -> None:
        self.outcomes[result.market, result.outcome] += 1
        if self.telemetry is not None:
            self.telemetry.observe(result)
        self.reporter.cycled.set()
        self.reporter.publish()
        if self.celery is not None:
            self.celery.enqueue_for(result, self.loops)
        if result.outcome == "accepted":
            # A new snapshot replaced the old one: hand the freed heap back to the OS.
            trim_heap()
        if self.on_cycle is not None:
            self.on_cycle(result)

    def _telemetry(self) -> Telemetry:
        """The Prometheus registry, built on first use and seeded with the outcome counts."""
        if self.telemetry is None:
            from daemon.ops.metrics import Telemetry

            self.telemetry = Telemetry()
            self.telemetry.track(self.loops, self.budgets)
            self.telemetry.seed(self.outcomes)
        return self.telemetry

    @property
    def sender(self) -> TaskSender | None:
        """The Celery sender while ``[celery] enabled`` (None otherwise)."""
        return self.celery.sender if self.celery is not None else None

    def freshness(self, now: float | None = None) -> list[Freshness]:
        """Each market's verdict by the one rule (see :class:`Reporter`)."""
        return self.reporter.freshness(now)

    def status_line(self, now: float | None = None) -> str:
        """One line for `systemctl status`, e.g. "spot: 2292 symbols, 41 s old, fresh"."""
        return self.reporter.status_line(now)

    @property
    def health_port(self) -> int | None:
        """The port /healthz listens on (None when the endpoint is off)."""
        return self.health.port
