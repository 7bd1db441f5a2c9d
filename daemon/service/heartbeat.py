"""The daemon's heartbeat in Redis, which `symbold status` shows as "daemon: pid ... on ...".

One key per market this daemon leads, rewritten every few seconds with a TTL of about three
periods, so it vanishes on its own when the daemon dies and is deleted on a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable

import msgspec
import redis.asyncio

from daemon.logs import get_logger, scrub_text
from daemon.redis.clients import ConnectionConfig
from daemon.redis.errors import RECOVERABLE
from daemon.refresh.scheduler import MarketLoop


class Heartbeat:
    """Writes ``{pid, host, started_at, next_refresh_at, cycles}`` for each leading market."""

    def __init__(
        self,
        client: Callable[[], redis.asyncio.Redis | None],
        loops: Callable[[], list[MarketLoop]],
        interval: Callable[[], float],
    ) -> None:
        """`client`, `loops` and `interval` are read on every beat (a reload replaces them)."""
        self.client = client
        self.loops = loops
        self.interval = interval
        # Every key ever written, so a clean stop can delete them all.
        self.keys: set[str] = set()
        self.log = get_logger("symbold.service")

    async def run(self, stop: asyncio.Event) -> None:
        """Beat until `stop` is set; Redis errors are logged at debug and the beat goes on."""
        host = socket.gethostname()
        started = time.time()
        while not stop.is_set():
            interval = self.interval()
            client = self.client()
            if client is not None:
                try:
                    await self._beat(client, host, started, interval)
                except RECOVERABLE as exc:
                    self.log.debug(
                        "redis.unavailable", error=scrub_text(str(exc)), during="heartbeat"
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    async def _beat(
        self, client: redis.asyncio.Redis, host: str, started: float, interval: float
    ) -> None:
        pipe = client.pipeline(transaction=False)
        for lp in self.loops():
            if not lp.leading:
                continue  # the leader's heartbeat is the one status shows
            key = lp.refresher.store.keys.daemon
            self.keys.add(key)
            beat = {
                "pid": os.getpid(),
                "host": host,
                "started_at": round(started, 3),
                "next_refresh_at": round(lp.next_at, 3),
                "cycles": lp.cycles,
            }
            pipe.set(key, msgspec.json.encode(beat), ex=int(interval * 3) + 1)
        await pipe.execute()

    async def clear(self, connection: ConnectionConfig) -> None:
        """Delete every heartbeat written, so `status` does not show a daemon that is gone."""
        if not self.keys:
            return
        client = connection.make_async(decode=False)
        with contextlib.suppress(*RECOVERABLE):
            await client.delete(*self.keys)
        await client.aclose()
