"""The service object: startup -> run -> shutdown, and the signals that steer it.

Signal handlers only set events. SIGHUP asks for a refresh of every market (coalesced).
SIGTERM/SIGINT ask for a stop: loops finish the cycle they are in, bounded by
``shutdown_timeout``, after which the cycle is abandoned (a snapshot transaction is either
committed whole or not at all, so abandoning it loses nothing), and the process exits 0. A
second SIGTERM/SIGINT stops at once (exit 1).

The service keeps running whatever Redis or Binance do: failures are logged, retried with
backoff, and the cache keeps being served from the last good snapshot.
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
from daemon.connections import ConnectionConfig
from daemon.keys import keys_for
from daemon.logs import get_logger, scrub_text
from daemon.redis_url import RedisURL
from daemon.refresh import CycleResult, MarketRefresher, source_config
from daemon.scheduler import ForcedRefresh, MarketLoop
from daemon.settings import ConfigError, Settings
from daemon.upstream import make_session


class Service:
    """Owns the Redis client, the HTTP session, one loop per market, and the signals."""

    def __init__(
        self,
        settings: Settings,
        url: RedisURL,
        *,
        on_cycle: Callable[[CycleResult], None] | None = None,
    ) -> None:
        self.settings = settings
        self.url = url
        self.on_cycle = on_cycle
        self.should_exit = asyncio.Event()
        self.force_exit = asyncio.Event()
        self.started = asyncio.Event()
        self.loops: list[MarketLoop] = []
        self.forced: ForcedRefresh | None = None
        self.log = get_logger("symbold.service")
        self._client: redis.asyncio.Redis | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- signals (handlers only set events) ------------------------------------------------

    def request_refresh(self) -> None:
        if self.forced is not None:
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
        markets = s.markets.enabled()
        self.log.info(
            "service.starting",
            pid=os.getpid(),
            markets=list(markets),
            **{f"redis_{k}": v for k, v in self.url.describe().items()},
        )
        if not markets:
            raise ConfigError("markets: no market is enabled; set markets.<name>.enabled = true")
        self._client = ConnectionConfig(url=self.url, settings=s.redis).make_async(decode=False)
        # One session for every market: fetch passes each market's own timeouts per request.
        self._session = make_session(source_config(next(iter(markets.values())), s.upstream))
        for name, market in markets.items():
            refresher = MarketRefresher(
                name,
                market,
                upstream=s.upstream,
                guards=s.guards,
                scheduler=s.scheduler,
                keys=keys_for(s, name),
                client=self._client,
                session=self._session,
            )
            self.loops.append(
                MarketLoop(
                    refresher,
                    upstream=s.upstream,
                    scheduler=s.scheduler,
                    stop=self.should_exit,
                    on_cycle=self._cycle_done,
                )
            )
        self.forced = ForcedRefresh(
            self.loops, min_gap=s.scheduler.min_refresh_gap, stop=self.should_exit
        )

    async def _main_loop(self) -> int:
        assert self.forced is not None
        tasks = [
            asyncio.create_task(lp.run(), name=f"market-{lp.refresher.name}") for lp in self.loops
        ]
        tasks.append(asyncio.create_task(self.forced.run(), name="forced-refresh"))
        tasks.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
        self.started.set()
        self.log.info("service.started", markets=[lp.refresher.name for lp in self.loops])
        stop_waiter = asyncio.create_task(self.should_exit.wait())
        done, _ = await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        crashed = [t for t in done if t is not stop_waiter and not t.cancelled() and t.exception()]
        for task in crashed:
            self.log.error(
                "service.task_crashed", task=task.get_name(), error=repr(task.exception())
            )
        self.should_exit.set()
        stop_waiter.cancel()
        self.log.info("service.stopping")
        code = await self._drain(tasks)
        return exitcodes.FAILURE if crashed else code

    async def _drain(self, tasks: list[asyncio.Task[None]]) -> int:
        """Let running cycles finish within the bound, then cancel what is left."""
        timeout = self.settings.scheduler.shutdown_timeout
        force = asyncio.create_task(self.force_exit.wait())
        pending = {t for t in tasks if not t.done()}
        forced = False
        if pending:
            done, _ = await asyncio.wait(
                [*pending, force], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            while pending and force not in done:
                pending = {t for t in pending if not t.done()}
                if not pending:
                    break
                remaining = timeout - 0.0
                done, _ = await asyncio.wait(
                    [*pending, force], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    break
            forced = force.done()
            pending = {t for t in tasks if not t.done()}
        force.cancel()
        if pending:
            self.log.warning(
                "service.abandoning", tasks=sorted(t.get_name() for t in pending), forced=forced
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        return exitcodes.FAILURE if forced else exitcodes.OK

    async def _shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._client is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                for lp in self.loops:
                    await self._client.delete(lp.refresher.store.keys.daemon)
            await self._client.aclose()
            self._client = None
        self.log.info("service.stopped")

    def _cycle_done(self, result: CycleResult) -> None:
        if self.on_cycle is not None:
            self.on_cycle(result)

    async def _heartbeat(self) -> None:
        """Tell `symbold status` a daemon runs, and when each market refreshes next."""
        host = socket.gethostname()
        started = time.time()
        interval = max(1.0, min(10.0, self.settings.scheduler.check_interval))
        while not self.should_exit.is_set():
            assert self._client is not None
            try:
                pipe = self._client.pipeline(transaction=False)
                for lp in self.loops:
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
            except (redis.RedisError, OSError) as exc:
                self.log.debug("redis.unavailable", error=scrub_text(str(exc)), during="heartbeat")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.should_exit.wait(), timeout=interval)
