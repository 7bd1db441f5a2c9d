"""A fake Binance that enforces request-weight windows the way Binance documents them.

A real aiohttp server on loopback, run in a thread of the test process with its own loop
(so tests and child processes reach it over real sockets). Rules:

- fixed windows of ``interval_ms`` on this machine's clock (the same clock the local
  redis-server's TIME reads), announced in exchangeInfo as REQUEST_WEIGHT with ``limit``
  (MINUTE when ``interval_ms`` is whole minutes, else SECOND);
- every response carries ``X-MBX-USED-WEIGHT-<n><u>`` (and ``X-MBX-ORDER-COUNT-<n><u>``),
  ``u`` being ``M`` or ``S`` as Binance writes them (``1M``, ``2S``), and a ``Date`` header;
- a request whose weight would pass the limit gets 429 with ``Retry-After`` (seconds to the
  window end, rounded up) and is not counted;
- a request that arrives while a 429's Retry-After is still running is a strike; after
  ``strikes_to_ban`` strikes the IP is banned: 418 with Retry-After, ``ban_base`` seconds the
  first time, doubling after each ban up to ``ban_max``;
- ``force_next(status, retry_after, client=...)``: the next request (from that client, named
  by the ``X-Client`` header) gets that status.

Weights: ``GET /fake/weight?w=N`` weighs N; the spot paths the budget's table knows weigh
what Binance publishes (exchangeInfo 20, futures exchangeInfo 1 serving the spot sample,
depth by limit, klines 2, ticker/price 2/4,
order 1 + one order). Everything served is recorded in ``log`` (time, client, path,
status, weight).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

FUTURES_INFO = ("/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo")
SAMPLE = Path(__file__).resolve().parents[2] / "daemon" / "samples" / "spot-sample.json"


@dataclass(frozen=True, slots=True)
class Served:
    t_ms: int
    client: str
    path: str
    status: int
    weight: int


def _depth(limit: int) -> int:
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


class LimitedBinance:
    def __init__(
        self,
        *,
        limit: int = 200,
        interval_ms: int = 2000,
        order_limit: int = 50,
        strikes_to_ban: int = 2,
        ban_base: float = 2.0,
        ban_max: float = 30.0,
    ) -> None:
        self.limit = limit
        self.interval_ms = interval_ms
        self.order_limit = order_limit
        self.strikes_to_ban = strikes_to_ban
        self.ban_base = ban_base
        self.ban_max = ban_max
        self.lock = threading.Lock()
        self.windows: dict[int, int] = defaultdict(int)  # window start -> weight served
        self.orders: dict[int, int] = defaultdict(int)
        self.log: list[Served] = []
        self.backoff_until = 0.0
        self.strikes = 0
        self.bans = 0
        self.ban_until = 0.0
        self.forced: list[tuple[int, int, str | None]] = []
        # Called (in the server's thread) after a request arrived and before it is answered:
        # lets a test change the world between a client's check and Binance's answer.
        self.before_answer: Callable[[], None] | None = None
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- what tests read ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def suffix(self) -> str:
        """The header suffix Binance would use: ``1M`` for a minute, else seconds (``2S``)."""
        n, unit = self._interval()
        return f"{n}{unit[0]}"

    def _interval(self) -> tuple[int, str]:
        if self.interval_ms % 60_000 == 0:
            return self.interval_ms // 60_000, "MINUTE"
        return self.interval_ms // 1000, "SECOND"

    def count(self, status: int) -> int:
        with self.lock:
            return sum(1 for s in self.log if s.status == status)

    def served(self) -> list[Served]:
        with self.lock:
            return list(self.log)

    def window_weights(self) -> dict[int, int]:
        with self.lock:
            return dict(self.windows)

    def rate_limits(self) -> list[dict[str, Any]]:
        n, unit = self._interval()
        return [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": unit,
                "intervalNum": n,
                "limit": self.limit,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": unit,
                "intervalNum": n,
                "limit": self.order_limit,
            },
        ]

    def force_next(self, status: int, retry_after: int, client: str | None = None) -> None:
        with self.lock:
            self.forced.append((status, retry_after, client))

    # -- serving --------------------------------------------------------------------------------

    def _weight(self, request: web.Request) -> tuple[int, int]:
        path, q = request.path, request.query
        if path == "/fake/weight":
            return int(q.get("w", "1")), 0
        if path == "/api/v3/exchangeInfo":
            return 20, 0
        if path in FUTURES_INFO:
            return 1, 0
        if path == "/api/v3/depth":
            return _depth(int(q.get("limit", "100"))), 0
        if path in ("/api/v3/ticker/price", "/api/v3/ticker/bookTicker"):
            return (2 if "symbol" in q else 4), 0
        if path == "/api/v3/order" and request.method == "POST":
            return 1, 1
        if path == "/api/v3/klines":
            return 2, 0
        return 1, 0

    def _decide(self, request: web.Request) -> tuple[int, int, dict[str, str], int]:
        """(status, weight counted, headers, retry_after) under the lock."""
        now = time.time()
        now_ms = int(now * 1000)
        start = now_ms - now_ms % self.interval_ms
        client = request.headers.get("X-Client", "")
        weight, orders = self._weight(request)
        headers: dict[str, str] = {}
        status, counted, retry = 200, 0, 0
        forced = next((f for f in self.forced if f[2] is None or f[2] == client), None)
        if forced is not None:
            self.forced.remove(forced)
            status, retry = forced[0], forced[1]
            if status == 418:
                self.ban_until = max(self.ban_until, now + retry)
        elif now < self.ban_until:
            status, retry = 418, math.ceil(self.ban_until - now)
        elif (
            self.windows[start] + weight > self.limit
            or self.orders[start] + orders > self.order_limit
        ):
            if now < self.backoff_until:
                self.strikes += 1
            self.backoff_until = (start + self.interval_ms) / 1000
            retry = max(1, math.ceil(self.backoff_until - now))
            status = 429
            if self.strikes >= self.strikes_to_ban:
                length = min(self.ban_max, self.ban_base * 2**self.bans)
                self.bans += 1
                self.strikes = 0
                self.ban_until = now + length
                status, retry = 418, math.ceil(length)
        else:
            if now < self.backoff_until:
                self.strikes += 1  # ignored a 429 but was lucky to fit: still a strike
            counted = weight
            self.windows[start] += weight
            self.orders[start] += orders
        headers[f"X-MBX-USED-WEIGHT-{self.suffix}"] = str(self.windows[start])
        headers[f"X-MBX-ORDER-COUNT-{self.suffix}"] = str(self.orders[start])
        if retry:
            headers["Retry-After"] = str(retry)
        self.log.append(Served(now_ms, client, request.path, status, counted))
        return status, counted, headers, retry

    async def _handle(self, request: web.Request) -> web.Response:
        if self.before_answer is not None:
            self.before_answer()
        with self.lock:
            status, _, headers, _ = self._decide(request)
        if status != 200:
            body = json.dumps({"code": -1003, "msg": "Too many requests; rate limited."})
            return web.Response(
                status=status, text=body, headers=headers, content_type="application/json"
            )
        if request.path == "/api/v3/exchangeInfo" or request.path in FUTURES_INFO:
            data = json.loads(SAMPLE.read_bytes())
            data["rateLimits"] = self.rate_limits()
            data["serverTime"] = int(time.time() * 1000)
            return web.json_response(data, headers=headers)
        if request.path == "/api/v3/depth":
            book = {"lastUpdateId": 1, "bids": [["100.0", "1.0"]], "asks": [["101.0", "2.0"]]}
            return web.json_response(book, headers=headers)
        return web.json_response({"ok": True}, headers=headers)

    # -- lifetime -----------------------------------------------------------------------------

    def start(self) -> LimitedBinance:
        ready = threading.Event()
        errors: list[BaseException] = []

        async def serve() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            assert self._runner is not None
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="limited-binance", daemon=True)
        self._thread.start()
        if not ready.wait(10) or errors:
            raise RuntimeError(f"limited Binance did not start: {errors}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> LimitedBinance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
