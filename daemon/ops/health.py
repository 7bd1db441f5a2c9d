"""The optional HTTP endpoint: ``GET /healthz`` and ``GET /metrics``, built to survive abuse.

What a caller may rely on:

- ``/healthz`` answers 200 ``ok: spot 41 s`` while every enabled market is fresh and 503
  ``stale: <reasons>`` otherwise, by the one rule in :mod:`daemon.ops.freshness`;
  ``/metrics`` is Prometheus text format; anything else is 404, a method other than GET/HEAD
  405. Every response closes its connection (no keep-alive).
- A client has ``header_timeout`` seconds *in total* to send its request head (at most
  ``MAX_HEAD`` bytes) and ``write_timeout`` seconds to take the response; then it is cut off.
  So a slow or half-open client (Slowloris) holds a descriptor for a bounded time only.
- At most ``max_connections`` connections are served at once; a connection beyond that is
  closed as soon as it is accepted, so the endpoint can never take the descriptors the daemon
  needs for Redis and Binance (see :func:`connection_cap`).

It is a small HTTP/1.x responder on :func:`asyncio.start_server`, not a web framework: two
fixed GET paths need no more, and every limit above is in plain sight.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from collections.abc import Awaitable, Callable

from daemon.ops.freshness import Freshness

MAX_HEAD = 8192
HEADER_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
# Health connections served at once, at most (monitoring needs a handful).
DEFAULT_MAX_CONNECTIONS = 64
# Descriptors kept free beyond the daemon's own Redis pools and upstream connections: the
# interpreter, logs, the notify socket, DNS, the listening socket itself.
BASE_RESERVE = 64
CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


def connection_cap(nofile: int, reserved: int, wanted: int = DEFAULT_MAX_CONNECTIONS) -> int:
    """How many health connections may be open at once: `wanted`, but never more than the
    descriptors left under the `nofile` limit after `reserved` (at least 1). Pure."""
    return max(1, min(wanted, nofile - reserved))


def nofile_limit() -> int:
    """This process's soft limit on open descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def open_descriptors() -> int:
    """Descriptors open now (0 when /proc is not there)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def healthz_body(verdicts: list[Freshness]) -> tuple[int, str]:
    """(status code, body) of /healthz for these verdicts. Pure."""
    stale = [v.reason for v in verdicts if not v.fresh]
    if stale:
        return 503, "stale: " + "; ".join(stale) + "\n"
    ages = ", ".join(f"{v.market} {v.age:.0f} s" for v in verdicts if v.age is not None)
    return 200, f"ok: {ages}\n"


class HealthServer:
    """Serves /healthz and /metrics on host:port with the limits described above."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        verdicts: Callable[[], list[Freshness]],
        metrics: Callable[[], Awaitable[bytes]],
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> None:
        self.host = host
        self.port = port
        self.verdicts = verdicts
        self.metrics = metrics
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.write_timeout = write_timeout
        self.active = 0
        self.refused = 0
        self.timed_out = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        """Start listening; returns the bound port (useful with port 0). Raises OSError when
        the address cannot be bound."""
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self.port, limit=MAX_HEAD, backlog=128
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5.0)
        self._server = None

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.active >= self.max_connections:
            # Refused early: the descriptor goes back at once.
            self.refused += 1
            writer.transport.abort()
            return
        self.active += 1
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except TimeoutError:
            self.timed_out += 1
        finally:
            self.active -= 1
            self._writers.discard(writer)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(self.header_timeout):
            head = await reader.readuntil(b"\r\n\r\n")
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            status, body, ctype = 400, b"bad request\n", "text/plain; charset=utf-8"
        else:
            method, target = parts[0], parts[1].split("?", 1)[0]
            status, body, ctype = await self._route(method, target)
            if method == "HEAD":
                body = b"" if status != 405 else body
        headers = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        )
        if status == 405:
            headers += "Allow: GET, HEAD\r\n"
        writer.write(headers.encode() + b"\r\n" + body)
        async with asyncio.timeout(self.write_timeout):
            await writer.drain()

    async def _route(self, method: str, target: str) -> tuple[int, bytes, str]:
        if target not in ("/healthz", "/metrics"):
            return 404, b"not found\n", "text/plain; charset=utf-8"
        if method not in ("GET", "HEAD"):
            return 405, b"method not allowed\n", "text/plain; charset=utf-8"
        if target == "/healthz":
            status, text = healthz_body(self.verdicts())
            return status, text.encode(), "text/plain; charset=utf-8"
        return 200, await self.metrics(), CONTENT_TYPE_METRICS
