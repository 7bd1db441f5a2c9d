"""A datagram socket standing in for systemd's NOTIFY_SOCKET: it records, in order and with
their arrival time, the sd_notify messages a daemon sends."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable


class NotifySocket:
    """A datagram socket bound where the daemon's NOTIFY_SOCKET points.

    `path` is a file path or an abstract name starting with ``@``; without one, a unique
    abstract name is used (a tmp_path can be longer than sun_path allows). `env_value` (the
    same as `path`) is what to put in the daemon's NOTIFY_SOCKET.
    """

    def __init__(self, path: str | None = None) -> None:
        path = path or f"@symbold-test-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + path[1:] if path.startswith("@") else path)
        self.sock.setblocking(False)
        self.path = path
        self.env_value = path
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> NotifySocket:
        """Start recording (needs a running event loop)."""
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 65536)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            async with self._changed:
                self.messages.append((time.monotonic(), fields))
                self._changed.notify_all()

    def having(self, key: str, value: str | None = None) -> list[dict[str, str]]:
        """The messages that carry `key` (with `value`, when given), oldest first."""
        return [m for _, m in self.messages if key in m and (value is None or m[key] == value)]

    def count(self, key: str, value: str | None = None) -> int:
        return len(self.having(key, value))

    def times(self, key: str, value: str | None = None) -> list[float]:
        """Monotonic arrival times of the messages `having` returns."""
        return [t for t, m in self.messages if key in m and (value is None or m[key] == value)]

    def cycles(self) -> int:
        """Finished cycles: STATUS lines sent on their own (not with READY/STOPPING)."""
        return sum(1 for _, m in self.messages if set(m) == {"STATUS"})

    async def wait_for(self, key: str, value: str | None = None, n: int = 1) -> dict[str, str]:
        """Wait for the `n`th message `having(key, value)` and return it; wrap in a timeout."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.having(key, value)) >= n)
        return self.having(key, value)[n - 1]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds, re-checked at every message; wrap in a timeout."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sock.close()
