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
import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable

import aiohttp
import msgspec
import redis
import redis.asyncio

from daemon import exitcodes
from daemon.budget import AsyncWeightBudget, BudgetError
from daemon.celery_interop.enqueue import TaskSender
from daemon.config.loader import Config
from daemon.config.redis_target import RedisURL
from daemon.config.settings import ConfigError, Settings
from daemon.contract.keys import keys_for
from daemon.logs import configure_logging, get_logger, scrub_text
from daemon.ops.freshness import Freshness
from daemon.ops.metrics import Telemetry
from daemon.ops.notify import Notifier, Watchdog, watchdog_interval
from daemon.redis.clients import ConnectionConfig, check_one_slot
from daemon.redis.errors import RECOVERABLE, ProblemKind, classify
from daemon.refresh.cycle import CycleResult, MarketRefresher, source_config
from daemon.refresh.scheduler import ForcedRefresh, MarketLoop, wake_and_wait
from daemon.service.endpoint import HealthEndpoint
from daemon.service.observe import Reporter
from daemon.service.reload import changed_keys, needs_loops, restart_pending
from daemon.snapshot.lease import Lease
from daemon.upstream.fetch import make_session

# A market loop that shows no sign of life for this long (beyond its longest legitimate
# cycle) is taken as wedged and the watchdog stops pinging.
_WEDGE_MARGIN = 30.0

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
        self.telemetry = Telemetry()
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
            self.reporter, self.telemetry, lambda: self.settings, lambda: len(self.budgets)
        )
        self.log = get_logger("symbold.service")
        self._loops_stop = asyncio.Event()
        self._loop_tasks: list[asyncio.Task[None]] = []
        self._client: redis.asyncio.Redis | None = None
        self._session: aiohttp.ClientSession | None = None
        self.sender: TaskSender | None = None
        self._beat_keys: set[str] = set()
        self._sends: set[asyncio.Task[bool]] = set()

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
            # The legacy broker is the same Redis unless told otherwise (CELERY_BROKER_URL).
            self.sender = TaskSender(s.celery.broker_url or self.url.url, s.celery)
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
        self.telemetry.track(self.loops, self.budgets)
        self._loop_tasks = [
            asyncio.create_task(lp.run(), name=f"market-{lp.refresher.name}") for lp in self.loops
        ]

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
        forced = await self._drain(self._loop_tasks)
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
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self.reporter.tick(self.should_exit), name="status"),
        ]
        interval = watchdog_interval()
        if interval is not None:
            dog = Watchdog(self.notifier, interval, self._liveness)
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

    async def _drain(self, tasks: list[asyncio.Task[None]]) -> bool:
        """Let running cycles finish within the bound, then cancel what is left.

        Returns True if a second stop request cut the grace period short.
        """
        pending = {t for t in tasks if not t.done()}
        if not pending:
            return False
        force = asyncio.create_task(self.force_exit.wait())
        deadline = time.monotonic() + self.settings.scheduler.shutdown_timeout
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
            self.log.warning(
                "service.abandoning", tasks=sorted(t.get_name() for t in pending), forced=forced
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        return forced

    async def _shutdown(self) -> None:
        if self._loop_tasks:
            await self._stop_loops()
        for send in list(self._sends):
            send.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        if self.sender is not None:
            self.sender.close()
            self.sender = None
        await self.health.stop()
        if self._beat_keys:
            # Say we are gone, so `symbold status` does not show a stale heartbeat.
            client = self.connection.make_async(decode=False)
            with contextlib.suppress(*RECOVERABLE):
                await client.delete(*self._beat_keys)
            await client.aclose()
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
        self.telemetry.observe(result)
        self.reporter.cycled.set()
        self.reporter.publish()
        self._enqueue_for(result)
        if self.on_cycle is not None:
            self.on_cycle(result)

    def _enqueue_for(self, result: CycleResult) -> None:
        """Hand the legacy Celery tasks their events, without waiting for the broker."""
        if self.sender is None:
            return
        celery = self.settings.celery
        if celery.on_change and result.diff is not None and not result.diff.is_empty:
            kwargs: dict[str, object] = {
                "market": result.market,
                "version": result.version,
                **result.diff.to_builtins(),
            }
            self._spawn_send(celery.on_change, kwargs)
        elif celery.on_failure and result.outcome in ("error", "rejected"):
            loop = next((lp for lp in self.loops if lp.refresher.name == result.market), None)
            held = loop.refresher.held if loop is not None else None
            stale_age = round(time.time() - held.meta.fetched_at, 1) if held else None
            kwargs = {"market": result.market, "error": result.reason, "stale_age": stale_age}
            self._spawn_send(celery.on_failure, kwargs)

    def _spawn_send(self, task: str, kwargs: dict[str, object]) -> None:
        assert self.sender is not None
        send = asyncio.create_task(self.sender.send(task, kwargs=kwargs), name=f"send-{task}")
        self._sends.add(send)
        send.add_done_callback(self._sends.discard)

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

    def _liveness(self) -> str | None:
        """None while the service works; else why the watchdog should stop pinging."""
        now = time.monotonic()
        for lp in self.loops:
            task = next(
                (t for t in self._loop_tasks if t.get_name() == f"market-{lp.refresher.name}"), None
            )
            if task is not None and task.done():
                return f"market loop {lp.refresher.name} ended"
            source = lp.refresher.source
            longest = (
                len(source.base_urls) * source.timeout_total
                + 3 * self.settings.redis.socket_timeout
            )
            limit = max(longest, self.settings.scheduler.check_interval) + _WEDGE_MARGIN
            if now - lp.beat > limit:
                return f"market loop {lp.refresher.name} silent for {now - lp.beat:.0f} s"
        return None

    async def _heartbeat(self) -> None:
        """Tell `symbold status` a daemon runs, and when each market refreshes next."""
        host = socket.gethostname()
        started = time.time()
        interval = max(1.0, min(10.0, self.settings.scheduler.check_interval))
        while not self.should_exit.is_set():
            client = self._client
            if client is not None:
                try:
                    pipe = client.pipeline(transaction=False)
                    for lp in self.loops:
                        if not lp.leading:
                            continue  # the leader's heartbeat is the one status shows
                        self._beat_keys.add(lp.refresher.store.keys.daemon)
                        beat = {
                            "pid": os.getpid(),
                            "host": host,
                            "started_at": round(started, 3),
                            "next_refresh_at": round(lp.next_at, 3),
                            "cycles": lp.cycles,
                        }
                        pipe.set(
                            lp.refresher.store.keys.daemon,
                            msgspec.json.encode(beat),
                            ex=int(interval * 3) + 1,
                        )
                    await pipe.execute()
                except RECOVERABLE as exc:
                    self.log.debug(
                        "redis.unavailable", error=scrub_text(str(exc)), during="heartbeat"
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.should_exit.wait(), timeout=interval)
