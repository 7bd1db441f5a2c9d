"""Request weights of Binance REST endpoints, for the HTTP helpers (no I/O).

Figures are Binance's published IP weights at the time of writing (spot ``/api/v3``, USD-M
``/fapi/v1``, COIN-M ``/dapi/v1``); Binance changes them now and then, so a caller can
replace or add entries (``EndpointWeights(extra=...)``). A path not in the table is charged
``default_weight`` and logged once at warning. Calls that place orders also count toward the
ORDERS limits (``Cost.orders``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("symbold.budget")

Query = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Cost:
    weight: int
    orders: int = 0


def _int(query: Query, name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except (TypeError, ValueError):
        return default


def _spot_depth(q: Query) -> Cost:
    limit = _int(q, "limit", 100)
    return Cost(5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250)


def _futures_depth(q: Query) -> Cost:
    limit = _int(q, "limit", 500)
    return Cost(2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20)


def _futures_klines(q: Query) -> Cost:
    limit = _int(q, "limit", 500)
    return Cost(1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10)


def _by_symbol(one: int, every: int) -> Callable[[Query], Cost]:
    def cost(q: Query) -> Cost:
        return Cost(one if "symbol" in q else every)

    return cost


Rule = Cost | Callable[[Query], Cost]

# (method, path) -> weight or a function of the query string.
ENDPOINT_WEIGHTS: Final[dict[tuple[str, str], Rule]] = {
    # spot market data
    ("GET", "/api/v3/ping"): Cost(1),
    ("GET", "/api/v3/time"): Cost(1),
    ("GET", "/api/v3/exchangeInfo"): Cost(20),
    ("GET", "/api/v3/depth"): _spot_depth,
    ("GET", "/api/v3/trades"): Cost(25),
    ("GET", "/api/v3/historicalTrades"): Cost(25),
    ("GET", "/api/v3/aggTrades"): Cost(4),
    ("GET", "/api/v3/klines"): Cost(2),
    ("GET", "/api/v3/uiKlines"): Cost(2),
    ("GET", "/api/v3/avgPrice"): Cost(2),
    ("GET", "/api/v3/ticker/24hr"): _by_symbol(2, 80),
    ("GET", "/api/v3/ticker/price"): _by_symbol(2, 4),
    ("GET", "/api/v3/ticker/bookTicker"): _by_symbol(2, 4),
    # spot trading and account
    ("POST", "/api/v3/order"): Cost(1, orders=1),
    ("POST", "/api/v3/order/test"): Cost(1),
    ("POST", "/api/v3/order/cancelReplace"): Cost(1, orders=1),
    ("POST", "/api/v3/orderList/oco"): Cost(1, orders=2),
    ("DELETE", "/api/v3/order"): Cost(1),
    ("GET", "/api/v3/order"): Cost(4),
    ("GET", "/api/v3/openOrders"): _by_symbol(6, 80),
    ("DELETE", "/api/v3/openOrders"): Cost(1),
    ("GET", "/api/v3/account"): Cost(20),
    ("GET", "/api/v3/myTrades"): Cost(20),
    # USD-M futures
    ("GET", "/fapi/v1/ping"): Cost(1),
    ("GET", "/fapi/v1/time"): Cost(1),
    ("GET", "/fapi/v1/exchangeInfo"): Cost(1),
    ("GET", "/fapi/v1/depth"): _futures_depth,
    ("GET", "/fapi/v1/klines"): _futures_klines,
    ("GET", "/fapi/v1/ticker/price"): _by_symbol(1, 2),
    ("POST", "/fapi/v1/order"): Cost(1, orders=1),
    # COIN-M futures
    ("GET", "/dapi/v1/ping"): Cost(1),
    ("GET", "/dapi/v1/time"): Cost(1),
    ("GET", "/dapi/v1/exchangeInfo"): Cost(1),
    ("GET", "/dapi/v1/depth"): _futures_depth,
    ("GET", "/dapi/v1/klines"): _futures_klines,
    ("POST", "/dapi/v1/order"): Cost(1, orders=1),
}


class EndpointWeights:
    """What one request costs: ``cost(method, path, query)``. Thread-safe."""

    def __init__(
        self, default_weight: int = 10, extra: Mapping[tuple[str, str], Rule] | None = None
    ) -> None:
        if isinstance(default_weight, bool) or not isinstance(default_weight, int):
            raise TypeError(f"default_weight must be an int, got {default_weight!r}")
        if default_weight < 1:
            raise ValueError(f"default_weight must be >= 1, got {default_weight!r}")
        self.default_weight = default_weight
        self.table: dict[tuple[str, str], Rule] = dict(ENDPOINT_WEIGHTS)
        for (method, path), rule in (extra or {}).items():
            self.table[(method.upper(), path)] = rule
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def cost(self, method: str, path: str, query: Query | None = None) -> Cost:
        key = (method.upper(), path.rstrip("/") or "/")
        rule = self.table.get(key)
        if rule is None:
            with self._lock:
                first = key not in self._warned
                self._warned.add(key)
            if first:
                log.warning(
                    "budget: no weight known for %s %s; charging the default %d",
                    key[0],
                    key[1],
                    self.default_weight,
                )
            return Cost(self.default_weight)
        return rule if isinstance(rule, Cost) else rule(query or {})
