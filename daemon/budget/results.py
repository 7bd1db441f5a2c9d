"""What the budget hands back (grants, reports, usage, counters); no I/O."""

from __future__ import annotations

import threading
from typing import Any, Final

import msgspec

from daemon.budget.limits import Limit

# Counters in ``budget:stats``, added to by every process (``shared_stats``).
SHARED_COUNTERS: Final = ("waits", "denials", "bans_reported")


class Grant(msgspec.Struct, frozen=True):
    """An acquire that succeeded. ``at`` is when it was charged (epoch s, Binance clock);
    pass the grant to ``observe`` so Binance's figures land in the right window."""

    weight: int
    orders: int
    priority: str
    at_ms: int
    account: str | None = None
    local: bool = False
    """True when granted by the per-process fallback (Redis was unreachable)."""

    @property
    def at(self) -> float:
        return self.at_ms / 1000.0


class BanReport(msgspec.Struct, frozen=True):
    """What ``record_ban`` did: the deadline in force (epoch s, Binance clock), Binance's
    time when it was stored, and whether Redis holds it (False: Redis was unreachable and
    only this process knows it)."""

    until: float
    now: float
    stored: bool


class WindowUsage(msgspec.Struct, frozen=True):
    """One limit's current window: ``used`` of ``limit`` (Binance's figure); callers with
    priority normal may use up to ``cap_normal``, high up to ``cap_high``."""

    kind: str
    interval: str
    limit: int
    cap_high: int
    cap_normal: int
    used: int
    window_start: float
    reset_at: float
    account: str | None = None


class BudgetUsage(msgspec.Struct, frozen=True):
    """What ``usage()`` returns: each window's figures, the ban deadline
    (epoch s, None when not banned) and where the limits came from."""

    market: str
    now: float
    ban_until: float | None
    windows: list[WindowUsage]
    source: str


class BudgetStats(msgspec.Struct, frozen=True):
    """Counters of one budget object since it was made (never reset)."""

    acquired: int = 0
    weight: int = 0
    waits: int = 0
    denials: int = 0
    bans: int = 0
    bans_reported: int = 0
    local_grants: int = 0
    redis_errors: int = 0
    resets_seen: int = 0
    observed_raises: int = 0


class Counters:
    """Thread-safe counters behind :class:`BudgetStats`."""

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(BudgetStats.__struct_fields__, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def granted(self, weight: int, local: bool) -> None:
        """One successful acquire (one lock round instead of three)."""
        with self._lock:
            values = self._values
            values["acquired"] += 1
            values["weight"] += weight
            if local:
                values["local_grants"] += 1

    def snapshot(self) -> BudgetStats:
        with self._lock:
            return BudgetStats(**self._values)


def shared_from(raw: Any) -> dict[str, int]:
    """``shared_stats`` from an HGETALL reply (a dict or a flat list; 0 for a counter not
    written yet)."""
    out = dict.fromkeys(SHARED_COUNTERS, 0)
    items = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
    for name, value in items:
        key = name.decode() if isinstance(name, bytes) else str(name)
        out[key] = int(value)
    return out


class Attempt(msgspec.Struct, frozen=True):
    """One try at charging: granted or not, Binance's time, when the blocking window resets
    (ms) and its limit, and whether the per-process fallback decided."""

    granted: bool
    now_ms: int
    reset_ms: int
    limit: Limit | None
    local: bool
