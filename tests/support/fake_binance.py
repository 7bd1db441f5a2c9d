"""A local fake of Binance's exchangeInfo endpoints, for tests and benchmarks.

It is a real aiohttp.web server on loopback, so clients see real sockets, real HTTP framing,
real gzip and real connection resets. It never talks to Binance.

Usage::

    async with FakeBinance() as fake:              # 127.0.0.1, port 0 (a free port)
        fake.set_payload(SPOT, body_bytes)       # what GET {fake.url}{SPOT} returns
        fake.fail(SPOT, Fault.status(500), Fault.truncated())  # next 2 requests fail, then normal
        fake.set_mode(SPOT, Fault.slow(2.0))     # sticky: every request until set_mode(SPOT, None)
        ...
        fake.requests[SPOT]                      # how many requests that path got
        fake.last_request[SPOT].headers, .query  # what the last one sent
        await fake.wait_for_requests(SPOT, 2)    # wait (no sleeps) until 2 requests arrived

Paths served: ``SPOT`` (/api/v3/exchangeInfo), ``USDM`` (/fapi/v1/exchangeInfo), ``COINM``
(/dapi/v1/exchangeInfo), plus any other path given a payload with ``set_payload``; anything else
is a 404. A known path with no payload set serves ``small_exchange_info()``.

Normal replies: 200, ``application/json``, the payload bytes; gzip-compressed
(``Content-Encoding: gzip``) when ``fake.gzip`` is ``"auto"`` (default) and the client's
Accept-Encoding names gzip, always when it is ``"always"``, never when ``"never"``.
Every reply that has headers carries ``X-MBX-USED-WEIGHT-1M: fake.used_weight`` (set it to
``None`` to leave the header out).

Faults (``Fault.<name>(...)``); a queued fault (``fail``) is used before the sticky one
(``set_mode``); with neither, the reply is normal:

- ``status(code, body=...)``: that status with a Binance-style JSON error body.
- ``html_502()``: 502 with an HTML body, as a load balancer sends it.
- ``rate_limited(retry_after=None)``: 429, ``Retry-After`` header only if retry_after is given
  (an int, or a raw string such as an HTTP-date or garbage).
- ``banned(retry_after=None)``: 418; the body says "IP banned until <ms>" like Binance does
  (``retry_after`` seconds from now, 120 s when None).
- ``forbidden()``: 403 (WAF block, HTML). ``unavailable_for_legal()``: 451 (restricted location).
- ``reset(mid_body=False)``: abort the TCP connection with an RST, before any response, or after the
  headers and part of the body when ``mid_body``. Note: aiohttp's client silently retries a GET
  once on the same host when the connection drops before a response, so to make such a client
  see a reset, queue two or use ``set_mode``.
- ``slow(seconds)``: wait that long before the headers, then reply normally.
- ``stall_body()``: headers (full Content-Length) and part of the body, then hang until the fake
  is closed.
- ``truncated()``: full Content-Length declared, half the body sent, then the connection closed.
- ``corrupt_gzip()``: ``Content-Encoding: gzip`` with a gzip header followed by garbage.
- ``gzip_bomb(n_bytes)``: a small valid gzip body that expands to ``n_bytes`` zero bytes; built in
  1 MiB steps (never held whole in memory) and cached per size.
- ``invalid_json()``: 200 with a body that is not JSON (a cut-off object).
- ``wrong_shape(kind="no_symbols")``: 200 with valid JSON of the wrong shape: ``"list"`` (a JSON
  array), ``"no_symbols"`` (an object without ``symbols``), ``"symbols_not_list"``.
- ``empty_symbols()``: 200 with a well-formed exchangeInfo whose ``symbols`` is empty.
- ``custom(body, status=200, headers=None)``: exactly that.

Faults that hang (``slow``, ``stall_body``) end when the fake is closed, so closing never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal, Self

from aiohttp import web
from multidict import CIMultiDict, MultiDict

from tests.support.tcp_proxy import abort_with_rst

SPOT = "/api/v3/exchangeInfo"
USDM = "/fapi/v1/exchangeInfo"
COINM = "/dapi/v1/exchangeInfo"
PATHS = (SPOT, USDM, COINM)

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"

GzipMode = Literal["auto", "always", "never"]


def small_exchange_info(symbols: tuple[str, ...] = ("BTCUSDT", "ETHBTC")) -> bytes:
    """A small but well-formed spot exchangeInfo body with the given symbols (all TRADING)."""
    rows = []
    for sym in symbols:
        base, quote = (sym[:-4], sym[-4:]) if sym.endswith("USDT") else (sym[:-3], sym[-3:])
        rows.append(
            {
                "symbol": sym,
                "status": "TRADING",
                "baseAsset": base,
                "baseAssetPrecision": 8,
                "quoteAsset": quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"],
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": "0.01000000",
                        "maxPrice": "1000000.00000000",
                        "tickSize": "0.01000000",
                    },
                    {
                        "filterType": "LOT_SIZE",
                        "minQty": "0.00001000",
                        "maxQty": "9000.00000000",
                        "stepSize": "0.00001000",
                    },
                ],
                "permissions": [],
                "permissionSets": [["SPOT"]],
            }
        )
    doc = {
        "timezone": "UTC",
        "serverTime": 1_700_000_000_000,
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            }
        ],
        "exchangeFilters": [],
        "symbols": rows,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@functools.lru_cache(maxsize=4)
def gzip_bomb_bytes(n_bytes: int) -> bytes:
    """A gzip stream of ``n_bytes`` zero bytes, compressed 1 MiB at a time.

    Only the compressed output (about n_bytes / 1000) is ever held; the zeros are one reused
    1 MiB block.
    """
    block = bytes(1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = []
    left = n_bytes
    while left > 0:
        step = min(left, len(block))
        out.append(comp.compress(block[:step] if step < len(block) else block))
        left -= step
    out.append(comp.flush())
    return b"".join(out)


@dataclass(frozen=True)
class Fault:
    """One fault to serve; build it with the class methods, not the constructor."""

    kind: str
    code: int = 200
    retry_after: int | str | None = None
    seconds: float = 0.0
    n_bytes: int = 0
    body: bytes = b""
    mid_body: bool = False
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def status(cls, code: int, body: bytes | None = None) -> Fault:
        if body is None:
            body = json.dumps({"code": -1000, "msg": f"fake error {code}"}).encode()
        return cls("status", code=code, body=body)

    @classmethod
    def html_502(cls) -> Fault:
        body = (
            b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
        )
        return cls("html", code=502, body=body)

    @classmethod
    def rate_limited(cls, retry_after: int | str | None = None) -> Fault:
        body = (
            b'{"code":-1003,"msg":"Too much request weight used; current limit is 6000 '
            b"request weight per 1 MINUTE. Please use WebSocket Streams for live updates "
            b'to avoid polling the API."}'
        )
        return cls("status", code=429, retry_after=retry_after, body=body)

    @classmethod
    def banned(cls, retry_after: int | None = None) -> Fault:
        # The body is built when served, so "banned until" is relative to that moment.
        return cls("banned", code=418, retry_after=retry_after)

    @classmethod
    def forbidden(cls) -> Fault:
        body = (
            b"<!DOCTYPE HTML PUBLIC><HTML><HEAD><TITLE>ERROR: The request could not be "
            b"satisfied</TITLE></HEAD><BODY><H1>403 ERROR</H1></BODY></HTML>"
        )
        return cls("html", code=403, body=body)

    @classmethod
    def unavailable_for_legal(cls) -> Fault:
        body = (
            b'{"code":0,"msg":"Service unavailable from a restricted location according to '
            b"'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer "
            b'service if you believe you received this message in error."}'
        )
        return cls("status", code=451, body=body)

    @classmethod
    def reset(cls, *, mid_body: bool = False) -> Fault:
        return cls("reset", mid_body=mid_body)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", seconds=seconds)

    @classmethod
    def stall_body(cls) -> Fault:
        return cls("stall_body")

    @classmethod
    def truncated(cls) -> Fault:
        return cls("truncated")

    @classmethod
    def corrupt_gzip(cls) -> Fault:
        # A valid 10-byte gzip header, then bytes that are no valid deflate block.
        body = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\xff" * 64
        return cls("custom", body=body, headers=(("Content-Encoding", "gzip"),))

    @classmethod
    def gzip_bomb(cls, n_bytes: int) -> Fault:
        return cls("gzip_bomb", n_bytes=n_bytes)

    @classmethod
    def invalid_json(cls) -> Fault:
        return cls("custom", body=b'{"timezone":"UTC","serverTime":1700000000000,"symbols":[{"sym')

    @classmethod
    def wrong_shape(
        cls, kind: Literal["list", "no_symbols", "symbols_not_list"] = "no_symbols"
    ) -> Fault:
        bodies = {
            "list": b'[{"symbol":"BTCUSDT","status":"TRADING"}]',
            "no_symbols": b'{"timezone":"UTC","serverTime":1700000000000,"rateLimits":[]}',
            "symbols_not_list": b'{"timezone":"UTC","serverTime":1700000000000,"symbols":{}}',
        }
        return cls("custom", body=bodies[kind])

    @classmethod
    def empty_symbols(cls) -> Fault:
        body = (
            b'{"timezone":"UTC","serverTime":1700000000000,"rateLimits":[],'
            b'"exchangeFilters":[],"symbols":[]}'
        )
        return cls("custom", body=body)

    @classmethod
    def custom(cls, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Fault:
        return cls("custom", code=status, body=body, headers=tuple((headers or {}).items()))


@dataclass(frozen=True)
class SeenRequest:
    """What a request sent: method, path, query string and headers (copies)."""

    method: str
    path: str
    query: MultiDict[str]
    headers: CIMultiDict[str]


@dataclass
class _PathState:
    payload: bytes | None = None
    gzipped: bytes | None = None  # cache of gzip(payload)
    queue: deque[Fault] = field(default_factory=deque)
    sticky: Fault | None = None


class FakeBinance:
    """The fake server; see the module docstring. Use it as an async context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.gzip: GzipMode = "auto"
        self.used_weight: int | None = 20
        self.requests: Counter[str] = Counter()
        self.last_request: dict[str, SeenRequest] = {}
        self._paths: dict[str, _PathState] = {p: _PathState() for p in PATHS}
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._arrived = asyncio.Condition()

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        # A short shutdown timeout: hung fault handlers are released via _closing anyway.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- configuration -------------------------------------------------------------------------

    def set_payload(self, path: str, data: bytes) -> None:
        """Serve ``data`` for GET ``path`` from now on."""
        state = self._paths.setdefault(path, _PathState())
        state.payload = data
        state.gzipped = None

    def fail(self, path: str, *faults: Fault) -> None:
        """Queue faults: the next ``len(faults)`` requests to ``path`` get them, in order."""
        self._paths.setdefault(path, _PathState()).queue.extend(faults)

    def set_mode(self, path: str, fault: Fault | None) -> None:
        """Sticky fault for every request to ``path`` (after the queue); None = back to normal."""
        self._paths.setdefault(path, _PathState()).sticky = fault

    async def wait_for_requests(self, path: str, n: int) -> None:
        """Return once ``path`` has received at least ``n`` requests (wrap it in a timeout)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: self.requests[path] >= n)

    # -- serving -------------------------------------------------------------------------------

    def _base_headers(self) -> dict[str, str]:
        if self.used_weight is None:
            return {}
        return {WEIGHT_HEADER: str(self.used_weight)}

    def _body_for(self, request: web.Request, state: _PathState) -> tuple[bytes, dict[str, str]]:
        payload = state.payload if state.payload is not None else small_exchange_info()
        accepts = "gzip" in request.headers.get("Accept-Encoding", "").lower()
        if self.gzip == "always" or (self.gzip == "auto" and accepts):
            if state.gzipped is None:
                state.gzipped = gzip.compress(payload, compresslevel=6, mtime=0)
            return state.gzipped, {"Content-Encoding": "gzip"}
        return payload, {}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests[path] += 1
        self.last_request[path] = SeenRequest(
            request.method, path, MultiDict(request.query), CIMultiDict(request.headers)
        )
        async with self._arrived:
            self._arrived.notify_all()

        state = self._paths.get(path)
        if state is None:
            return web.Response(status=404, headers=self._base_headers(), text="not found")
        fault = state.queue.popleft() if state.queue else state.sticky
        if fault is None:
            return self._normal(request, state)
        return await self._serve_fault(request, state, fault)

    def _normal(self, request: web.Request, state: _PathState) -> web.Response:
        body, extra = self._body_for(request, state)
        headers = {**self._base_headers(), **extra}
        return web.Response(body=body, headers=headers, content_type="application/json")

    async def _serve_fault(
        self, request: web.Request, state: _PathState, fault: Fault
    ) -> web.StreamResponse:
        headers = self._base_headers()
        kind = fault.kind
        if kind == "status":
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            return web.Response(
                status=fault.code, body=fault.body, headers=headers, content_type="application/json"
            )
        if kind == "html":
            return web.Response(
                status=fault.code, body=fault.body, headers=headers, content_type="text/html"
            )
        if kind == "banned":
            wait = 120.0 if fault.retry_after is None else float(fault.retry_after)
            until_ms = int((time.time() + wait) * 1000)
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            body = (
                '{"code":-1003,"msg":"Way too much request weight used; IP banned until '
                f'{until_ms}. Please use WebSocket Streams for live updates to avoid bans."}}'
            )
            return web.Response(
                status=418, text=body, headers=headers, content_type="application/json"
            )
        if kind == "custom":
            headers.update(fault.headers)
            resp: web.StreamResponse = web.Response(
                status=fault.code, body=fault.body, headers=headers
            )
            if "content-type" not in {name.lower() for name in headers}:
                resp.content_type = "application/json"
            return resp
        if kind == "slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.seconds)
            if self._closing.is_set():
                _abort(request)
                return web.Response()
            return self._normal(request, state)
        if kind == "reset":
            if fault.mid_body:
                await self._send_part(request, state, headers)
            _abort(request)
            return web.Response()  # never sent: the connection is gone
        if kind == "stall_body":
            resp = await self._send_part(request, state, headers)
            await self._closing.wait()
            _abort(request)
            return resp
        if kind == "truncated":
            resp = await self._send_part(request, state, headers)
            if request.transport is not None:
                request.transport.close()  # FIN after the buffered part is flushed
            return resp
        if kind == "gzip_bomb":
            bomb = gzip_bomb_bytes(fault.n_bytes)
            headers["Content-Encoding"] = "gzip"
            resp = web.StreamResponse(headers=headers)
            resp.content_type = "application/json"
            resp.content_length = len(bomb)
            await resp.prepare(request)
            view = memoryview(bomb)
            try:
                for i in range(0, len(view), 64 * 1024):
                    await resp.write(view[i : i + 64 * 1024])
            except ConnectionError:
                pass  # the client gave up reading, which is what a capped client does
            return resp
        raise AssertionError(f"unknown fault kind {kind!r}")

    async def _send_part(
        self, request: web.Request, state: _PathState, headers: dict[str, str]
    ) -> web.StreamResponse:
        """Send headers declaring the full body, and the first half of the body."""
        body, extra = self._body_for(request, state)
        resp = web.StreamResponse(headers={**headers, **extra})
        resp.content_type = "application/json"
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: max(1, len(body) // 2)])
        return resp


def _abort(request: web.Request) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), dropping anything unsent."""
    abort_with_rst(request.transport)
