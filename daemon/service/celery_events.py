"""The legacy Celery tasks' part of the service: which cycle results become which task.

Sends go through :class:`TaskSender` off the event loop; the service never waits for the
broker, and a stop cancels whatever is still in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from daemon.config.settings import CelerySettings
from daemon.refresh.cycle import CycleResult
from daemon.refresh.scheduler import MarketLoop

if TYPE_CHECKING:
    from daemon.celery_interop.enqueue import TaskSender


class CeleryEvents:
    """Hands ``on_change`` the diff of a changed snapshot and ``on_failure`` a failed cycle."""

    def __init__(self, sender: TaskSender, celery: Callable[[], CelerySettings]) -> None:
        """`celery` is read for every result (a reload may change the task names)."""
        self.sender = sender
        self.celery = celery
        self._sends: set[asyncio.Task[bool]] = set()

    def enqueue_for(self, result: CycleResult, loops: list[MarketLoop]) -> None:
        """Start the send this result calls for, if any, and return at once."""
        celery = self.celery()
        if celery.on_change and result.diff is not None and not result.diff.is_empty:
            kwargs: dict[str, object] = {
                "market": result.market,
                "version": result.version,
                **result.diff.to_builtins(),
            }
            self._spawn(celery.on_change, kwargs)
        elif celery.on_failure and result.outcome in ("error", "rejected"):
            loop = next((lp for lp in loops if lp.refresher.name == result.market), None)
            held = loop.refresher.held if loop is not None else None
            stale_age = round(time.time() - held.meta.fetched_at, 1) if held else None
            kwargs = {"market": result.market, "error": result.reason, "stale_age": stale_age}
            self._spawn(celery.on_failure, kwargs)

    def _spawn(self, task: str, kwargs: dict[str, object]) -> None:
        send = asyncio.create_task(self.sender.send(task, kwargs=kwargs), name=f"send-{task}")
        self._sends.add(send)
        send.add_done_callback(self._sends.discard)

    async def close(self) -> None:
        """Cancel the sends in flight and close the sender."""
        for send in list(self._sends):
            send.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        self.sender.close()
