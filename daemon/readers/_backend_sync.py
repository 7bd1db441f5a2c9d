"""What the blocking reader does differently from the asyncio one, by hand.

The twin of :mod:`daemon.readers._backend_async` (same names without ``Async``, same
methods with ``close`` for ``aclose``): the generated :mod:`daemon.readers._sync` uses these.

- :class:`Clients`: the reader's client, shared by every thread, recreated after a fork;
- :class:`Signal`: wakes ``wait_until`` callers when the subscriber changes state;
- :class:`Subscriber`: the thread that keeps the events subscription;
- :func:`fork_safe`: a forked child forgets the parent's subscriber thread and cache.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Collection
from typing import Any, Protocol

import redis

from daemon.readers._core import (
    POLL_INTERVAL,
    ChannelSilentError,
    ReaderClosedError,
    log,
    subscriber_config,
)
from daemon.readers._near_cache import NearCache, backoff, subscriber_failed
from daemon.redis.clients import ConnectionConfig, SyncClient

_monotonic = time.monotonic


class Clients:
    """The reader's bytes client: created on first use, thread-safe, fork-safe."""

    def __init__(self, config: ConnectionConfig) -> None:
        self._holder = SyncClient(config, decode=False)
        self._closed = False

    def get(self) -> redis.Redis:
        if self._closed:
            raise ReaderClosedError("this SymbolReader is closed")
        return self._holder.get()

    def close(self) -> None:
        self._closed = True
        self._holder.close()


class Signal:
    """Wakes every thread waiting in :meth:`wait_for`."""

    def __init__(self) -> None:
        self._changed = threading.Condition()

    def notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, check: Callable[[], bool], timeout: float | None) -> bool:
        """Block until `check()` holds (re-checked on every :meth:`notify`); False once
        `timeout` seconds have passed without it (None: no limit)."""
        with self._changed:
            return self._changed.wait_for(check, timeout=timeout)


class Subscriber:
    """The thread that keeps the events subscription and feeds the near-cache.

    Holds no reference to the reader, so a reader dropped without ``close()`` is still
    collected (a finalizer then calls :meth:`cancel`).
    """

    def __init__(
        self,
        near: NearCache,
        config: ConnectionConfig,
        channels: dict[bytes, str],
        signal: Signal,
        secrets: Collection[str] = (),
    ) -> None:
        self.near = near
        self.config = subscriber_config(config)
        self.channels = channels
        self.signal = signal
        self.secrets = tuple(secrets)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="symbold-reader-events", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        """Ask the thread to stop (it notices within ``POLL_INTERVAL``); from any thread."""
        self.stop_event.set()

    def stop(self, timeout: float) -> None:
        """Ask the thread to stop and wait up to `timeout` s for it (a warning if it has not
        stopped by then: it is a daemon thread and ends with the process)."""
        self.stop_event.set()
        if self.thread.ident is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)
            if self.thread.is_alive():
                log.warning("reader.subscriber_stuck timeout_s=%s", timeout)

    def _run(self) -> None:
        options = self.near.options
        client: redis.Redis | None = None
        delay = options.retry_min
        try:
            while not self.stop_event.is_set():
                try:
                    # Built inside the retry loop: a cluster client connects when it is made,
                    # and a cluster down at that moment must not end the subscriber.
                    if client is None:
                        client = self.config.make_sync(decode=False)
                    self._listen(client)
                except Exception as exc:  # noqa: BLE001 - nothing may end the subscription
                    delay = subscriber_failed(
                        self.near, self.signal.notify, exc, self.secrets, delay
                    )
                if self.stop_event.wait(delay):
                    break
                delay = backoff(delay, options)
        finally:
            self.near.lost()
            self.signal.notify()
            if client is not None:
                client.close()

    def _listen(self, client: redis.Redis) -> None:
        near, options = self.near, self.near.options
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(*self.channels)
            pending = set(self.channels)
            now = _monotonic()
            last_heard, next_ping = now, now + options.ping_interval
            while not self.stop_event.is_set():
                # Short waits: the stop request is noticed within POLL_INTERVAL.
                message: dict[str, Any] | None = pubsub.get_message(timeout=POLL_INTERVAL)
                now = _monotonic()
                if message is not None:
                    last_heard = now
                    if near.on_message(message, self.channels, pending, now):
                        self.signal.notify()
                if now >= next_ping:
                    pubsub.ping()
                    next_ping = now + options.ping_interval
                if now - last_heard > options.silence_limit:
                    raise ChannelSilentError(
                        f"no reply on the events connection for {options.silence_limit} s"
                    )
        finally:
            pubsub.close()


class _ForkSafe(Protocol):
    def _after_fork(self) -> None: ...


_readers: weakref.WeakSet[Any] = weakref.WeakSet()


def fork_safe(reader: _ForkSafe) -> None:
    """Have `reader._after_fork()` run in a forked child: the parent's subscriber thread does
    not exist there, and its cached entries may be older than what the child can see."""
    _readers.add(reader)


def _reset_after_fork() -> None:
    for reader in list(_readers):
        reader._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
