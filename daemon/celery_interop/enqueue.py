"""Sending legacy Celery tasks by name, without ever blocking the event loop.

Celery has no asyncio client and ``send_task`` can block for as long as the broker hangs, so
every send runs in one worker thread with a bound: at most ``max_pending`` sends wait at once
(more are dropped and counted), and each is abandoned after ``send_timeout``. The broker
connection has its own socket timeouts and a short publish retry, so a hung broker frees the
thread too. A broker outage is logged and counted; it never stops refreshes.

Celery is an optional extra (``symbold[celery]``); it is imported only when a sender is built.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.config.settings import CelerySettings
from daemon.logs import get_logger, scrub_text

log = get_logger("symbold.enqueue")


class CeleryMissing(RuntimeError):
    """The celery extra is not installed."""


@dataclass
class SendStats:
    """Counts since start, for status lines and metrics."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0


def make_app(broker_url: str, settings: CelerySettings) -> Any:
    """A Celery app that only sends (no result backend), with bounded broker timeouts."""
    try:
        from celery import Celery
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise CeleryMissing("Celery is not installed: pip install 'symbold[celery]'") from err
    timeout = settings.send_timeout
    app = Celery("symbold", broker=broker_url, set_as_current=False)
    app.conf.update(
        broker_connection_timeout=timeout,
        broker_connection_retry=False,
        broker_connection_retry_on_startup=False,
        # redis-py socket timeouts inside kombu: a paused broker cannot hang a send (celery #4296)
        broker_transport_options={
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "max_retries": 1,
        },
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        task_default_queue=settings.queue,
    )
    return app


class TaskSender:
    """Sends tasks by name from a dedicated thread; `send` is awaited without blocking."""

    def __init__(self, broker_url: str, settings: CelerySettings) -> None:
        self.settings = settings
        self.broker_url = broker_url
        self.stats = SendStats()
        self._app: Any = None
        self._app_lock = threading.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="symbold-celery"
        )
        self._pending = 0

    def _get_app(self) -> Any:
        with self._app_lock:
            if self._app is None:
                self._app = make_app(self.broker_url, self.settings)
            return self._app

    def send_blocking(
        self, name: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
    ) -> str:
        """Send one task now, in the calling thread. Returns its id; raises on failure."""
        result = self._get_app().send_task(
            name, args=list(args), kwargs=dict(kwargs or {}), queue=self.settings.queue
        )
        return str(result.id)

    async def send(
        self, name: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
    ) -> bool:
        """Send off the loop, within the bounds. True when the broker took it."""
        if self._pending >= self.settings.max_pending:
            self.stats.dropped += 1
            log.warning("enqueue.dropped", task=name, pending=self._pending)
            return False
        self._pending += 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self.send_blocking, name, args, kwargs)
        try:
            task_id = await asyncio.wait_for(
                asyncio.shield(future), timeout=self.settings.send_timeout * 3
            )
        except Exception as exc:  # noqa: BLE001 - any broker failure is logged and counted
            self.stats.failed += 1
            log.warning(
                "enqueue.failed", task=name, error=scrub_text(f"{type(exc).__name__}: {exc}")
            )
            future.add_done_callback(self._release)
            return False
        self._release(future)
        self.stats.sent += 1
        log.info("enqueue.sent", task=name, task_id=task_id)
        return True

    def _release(self, _: object) -> None:
        self._pending -= 1

    def close(self) -> None:
        """Stop the thread without waiting for a hung send."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._app_lock:
            app, self._app = self._app, None
        if app is not None:
            app.close()
