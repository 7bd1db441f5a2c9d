"""A datagram socket standing in for systemd's NOTIFY_SOCKET, recording what the daemon sends."""

from __future__ import annotations

import asyncio
import socket
import time


class NotifySocket:
    """A datagram socket bound where the daemon's NOTIFY_SOCKET points."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path if not path.startswith("@") else "\0" + path[1:])
        self.sock.setblocking(False)
        self.env_value = path
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            async with self._changed:
                self.messages.append((time.monotonic(), fields))
                self._changed.notify_all()

    def having(self, key: str, value: str | None = None) -> list[dict[str, str]]:
        return [m for _, m in self.messages if key in m and (value is None or m[key] == value)]

    async def wait_for(self, key: str, value: str | None = None, n: int = 1) -> dict[str, str]:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.having(key, value)) >= n)
        return self.having(key, value)[n - 1]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sock.close()
