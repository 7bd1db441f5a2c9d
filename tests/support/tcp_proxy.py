"""An asyncio TCP proxy on loopback, put between a client under test and a real server.

It forwards bytes both ways and can, at any moment, change how it does so:

- ``"pass"`` (default): forward as received (optionally ``delay`` seconds before each chunk,
  in each direction, and chunks cut to ``chunk_size`` bytes so a large write is slowed too);
- ``"blackhole"``: accept connections and read whatever arrives, but forward nothing and
  answer nothing (a server that hangs, a firewall that drops, a dead NAT entry);
- ``"reset"``: abort every existing connection with a TCP RST, and RST every new one at once.

``cut_once_after(n)`` lets ``n`` more bytes go client -> server (on any connection), then
resets (RST both sides) the connection that carries the next byte, once; ``cuts`` counts
that; ``cut_once_on(pattern)`` does the same to the connection about to carry ``pattern``
(e.g. one Redis command). :meth:`reset_all` resets the current connections without changing
the mode.
Counters: ``connections`` (accepted), ``active``, ``bytes_up`` (client -> server) and
``bytes_down``; :meth:`wait_for` waits on any condition over them without sleeping.

Usage::

    async with TcpProxy("127.0.0.1", redis_port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        ...
        proxy.mode = "blackhole"
        await proxy.wait_for(lambda: proxy.bytes_up > 1000)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Self

Mode = Literal["pass", "blackhole", "reset"]


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client side, the server side and their pump tasks."""

    client_w: asyncio.StreamWriter
    server_w: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: bool = False


def abort_with_rst(transport: asyncio.WriteTransport | None) -> None:
    """Close `transport`'s connection with a TCP RST (SO_LINGER 0) instead of a FIN, dropping
    anything unsent; nothing happens without a transport."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _rst(writer: asyncio.StreamWriter | None) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
    abort_with_rst(writer.transport if writer is not None else None)


class TcpProxy:
    """Listens on ``host:port`` (port 0: a free one) and forwards to ``target``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        chunk_size: int = 64 * 1024,
    ) -> None:
        if host not in ("127.0.0.1", "::1") or target_host not in ("127.0.0.1", "::1"):
            raise ValueError("the test proxy only listens on and connects to loopback")
        self.target = (target_host, target_port)
        self.host = host
        self.port = port
        self.chunk_size = chunk_size
        self.mode: Mode = "pass"
        self.delay = 0.0
        self.connections = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.cuts = 0
        self._cut_budget: int | None = None
        self._cut_pattern: bytes | None = None
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._drop(link, rst=False)
        tasks = [t for link in list(self._links) for t in link.tasks]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- controls ----------------------------------------------------------------------------

    @property
    def active(self) -> int:
        return len(self._links)

    def url(self, db: int = 0, password: str | None = None) -> str:
        auth = f":{password}@" if password else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{auth}{host}:{self.port}/{db}"

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "reset":
            self.reset_all()

    def cut_once_after(self, n_bytes: int | None) -> None:
        """Forward ``n_bytes`` more client -> server, then RST the connection carrying the
        next byte (once). None disarms."""
        self._cut_budget = n_bytes

    def cut_once_on(self, pattern: bytes | None) -> None:
        """RST the next connection whose client -> server chunk contains ``pattern``, before
        that chunk is forwarded (once). None disarms."""
        self._cut_pattern = pattern

    def reset_all(self) -> int:
        """RST every current connection (both sides); returns how many."""
        links = list(self._links)
        for link in links:
            self._drop(link, rst=True)
        return len(links)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checked whenever a counter moves."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    # -- internals ---------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _drop(self, link: _Link, *, rst: bool) -> None:
        if link.closed:
            return
        link.closed = True
        for writer in (link.client_w, link.server_w):
            if writer is None:
                continue
            if rst:
                _rst(writer)
            else:
                writer.close()
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        link = _Link(client_w=client_w)
        me = asyncio.current_task()
        if me is not None:
            link.tasks.append(me)
        self._links.add(link)
        await self._notify()
        try:
            if self.mode == "reset" or self._closing.is_set():
                self._drop(link, rst=True)
                return
            if self.mode == "blackhole":
                await self._swallow(client_r)
                return
            try:
                server_r, server_w = await asyncio.open_connection(*self.target)
            except OSError:
                self._drop(link, rst=True)
                return
            link.server_w = server_w
            if link.closed:  # reset while we were connecting
                _rst(server_w)
                return
            down = asyncio.create_task(self._pump(link, server_r, client_w, up=False))
            link.tasks.append(down)
            await self._pump(link, client_r, server_w, up=True)
            await asyncio.gather(down, return_exceptions=True)
        except asyncio.CancelledError:
            pass
        finally:
            self._drop(link, rst=False)
            self._links.discard(link)
            for writer in (client_w, link.server_w):
                if writer is not None:
                    with contextlib.suppress(OSError, ConnectionError, asyncio.CancelledError):
                        await writer.wait_closed()
            await self._notify()

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        """Blackhole: read and discard until the peer closes (or the proxy does)."""
        while not self._closing.is_set():
            data = await reader.read(self.chunk_size)
            if not data:
                return
            self.bytes_up += len(data)
            await self._notify()

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        up: bool,
    ) -> None:
        try:
            while not link.closed:
                data = await reader.read(self.chunk_size)
                if not data:
                    break
                if self.mode == "blackhole":
                    # Existing connections go silent too: swallow, answer nothing.
                    if up:
                        self.bytes_up += len(data)
                        await self._notify()
                    continue
                if self.delay > 0:
                    await asyncio.sleep(self.delay)
                if up and self._cut_pattern is not None and self._cut_pattern in data:
                    self._cut_pattern = None
                    self.cuts += 1
                    self._drop(link, rst=True)
                    await self._notify()
                    return
                if up and self._cut_budget is not None and len(data) > self._cut_budget:
                    keep, self._cut_budget = self._cut_budget, None
                    if keep > 0:
                        writer.write(data[:keep])
                        self.bytes_up += keep
                        with contextlib.suppress(ConnectionError):
                            await writer.drain()
                    self.cuts += 1
                    self._drop(link, rst=True)
                    await self._notify()
                    return
                if up and self._cut_budget is not None:
                    self._cut_budget -= len(data)
                writer.write(data)
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                await writer.drain()
                await self._notify()
        except (ConnectionError, OSError):
            pass
        finally:
            if not link.closed:
                # One side finished: pass the half-close on as a full close.
                self._drop(link, rst=False)
