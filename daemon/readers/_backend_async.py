"""What the asyncio reader does differently from the blocking one, by hand.

:mod:`daemon.readers._async` is the source the blocking reader is generated from; the few
things that truly differ between a task and a thread live here and in
:mod:`daemon.readers._backend_sync`, with the same names (minus ``Async``) and the same
methods (``aclose`` -> ``close``), so that the mechanical translation is correct:

- :class:`AsyncClients`: the reader's client, bound to the event loop of first use;
- :class:`AsyncSignal`: wakes ``wait_until`` callers when the subscriber changes state;
- :class:`AsyncSubscriber`: the task that keeps the events subscription;
- :func:`fork_safe`: nothing to do for a task (an event loop does not survive a fork).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection
from typing import Any

import redis
import redis.asyncio

from daemon.readers._core import (
    ChannelSilentError,
    ReaderClosedError,
    subscriber_config,
)
from daemon.readers._near_cache import NearCache, backoff, subscriber_failed
from daemon.redis.clients import ConnectionConfig

_monotonic = time.monotonic


class AsyncClients:
    """The reader's bytes client, created in the running loop on first use.

    Refuses to serve another loop than that one (a client's connections belong to one loop).
    """

    def __init__(self, config: ConnectionConfig) -> None:
        self._config = config
        self._client: redis.asyncio.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def get(self) -> redis.asyncio.Redis:
        client = self._client
        loop = asyncio.get_running_loop()
        if client is not None and loop is self._loop:
            return client
        if self._closed:
            raise ReaderClosedError("this AsyncSymbolReader is closed")
        if self._loop is not None and loop is not self._loop:
            raise RuntimeError(
                "this AsyncSymbolReader is bound to another event loop; use one reader per loop"
            )
        self._loop = loop
        client = self._client = self._config.make_async(decode=False)
        return client

    async def aclose(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class AsyncSignal:
    """Wakes every coroutine waiting in :meth:`wait_for` (all in the reader's loop)."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_for(self, check: Callable[[], bool]) -> None:
        """Wait until `check()` holds (re-checked on every :meth:`notify`); bound the wait
        with ``asyncio.timeout``."""
        loop = asyncio.get_running_loop()
        while not check():
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                await fut
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)


class AsyncSubscriber:
    """The task that keeps the events subscription and feeds the near-cache.

    Holds no reference to the reader, so a reader dropped without ``aclose()`` is still
    collected (a finalizer then calls :meth:`cancel`).
    """

    def __init__(
        self,
        near: NearCache,
        config: ConnectionConfig,
        channels: dict[bytes, str],
        signal: AsyncSignal,
        secrets: Collection[str] = (),
    ) -> None:
        self.near = near
        self.config = subscriber_config(config)
        self.channels = channels
        self.signal = signal
        self.secrets = tuple(secrets)
        self.task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = self.loop.create_task(self._run(), name="symbold-reader-events")

    def cancel(self) -> None:
        """Ask the task to stop; callable from any thread (a finalizer may run anywhere)."""
        task, loop = self.task, self.loop
        if task is None or loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            loop.call_soon_threadsafe(task.cancel)

    async def stop(self) -> None:
        """Cancel the task and wait for it to end (in the reader's loop)."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    async def _run(self) -> None:
        options = self.near.options
        client: redis.asyncio.Redis | None = None
        delay = options.retry_min
        try:
            while True:
                try:
                    if client is None:
                        client = self.config.make_async(decode=False)
                    await self._listen(client)
                except Exception as exc:  # noqa: BLE001 - nothing may end the subscription
                    delay = subscriber_failed(
                        self.near, self.signal.notify, exc, self.secrets, delay
                    )
                await asyncio.sleep(delay)
                delay = backoff(delay, options)
        finally:
            self.near.lost()
            self.signal.notify()
            if client is not None:
                await client.aclose()

    async def _listen(self, client: redis.asyncio.Redis) -> None:
        near, options = self.near, self.near.options
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(*self.channels)
            pending = set(self.channels)
            now = _monotonic()
            last_heard, next_ping = now, now + options.ping_interval
            while True:
                wake = min(next_ping, last_heard + options.silence_limit)
                message: dict[str, Any] | None = await pubsub.get_message(
                    timeout=max(0.0, wake - now)
                )
                now = _monotonic()
                if message is not None:
                    last_heard = now
                    if near.on_message(message, self.channels, pending, now):
                        self.signal.notify()
                if now >= next_ping:
                    await pubsub.ping()
                    next_ping = now + options.ping_interval
                if now - last_heard > options.silence_limit:
                    raise ChannelSilentError(
                        f"no reply on the events connection for {options.silence_limit} s"
                    )
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]


def fork_safe(reader: Any) -> None:
    """Nothing to do: an asyncio reader's loop, task and sockets do not survive a fork."""
