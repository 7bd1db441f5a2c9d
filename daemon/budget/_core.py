"""What the sync and async budgets share: options, the limit table, argument building, reply
decoding, the local fallback limiter and the counters. Nothing here does I/O."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from daemon.budget.errors import BudgetValueError
from daemon.budget.keys import BudgetKeys, check_account
from daemon.budget.limits import (
    DEFAULT_LIMITS,
    PRIORITIES,
    Caps,
    HeaderUsage,
    Limit,
    caps_for,
    merge_limits,
    window_end,
    window_start,
)
from daemon.budget.script import ACQUIRE, BAN, OBSERVE, USAGE
from daemon.config.settings import BudgetSettings, Settings

log = logging.getLogger("symbold.budget")

# Windows this short or shorter are written off when their counters may be missing spends
# (the Lua ACQUIRE has the same figure, iv <= 60000); longer ones (RAW_REQUESTS 5M,
# ORDERS 1D) are restored by observe().
BLOCK_MAX_MS: Final = 60_000
# Waiters wake at the window start plus up to this share of the interval (at most JITTER_MAX_S),
# so that processes blocked on one window do not all call at the same instant.
JITTER_SHARE: Final = 0.05
JITTER_MAX_S: Final = 0.5
# ban_until written when a 429/418 carries no usable Retry-After (seconds).
DEFAULT_BAN_FALLBACK: Final = 120.0
OFFSET_TTL_MS: Final = 86_400_000
MAX_OFFSET_MS: Final = 86_400_000

RedisDownPolicy = Literal["local", "fail_closed"]


@dataclass(frozen=True, slots=True)
class BudgetOptions:
    """The [budget] settings resolved for one market (per-market overrides applied)."""

    safety_share: float = 0.9
    reserve_share: float = 0.1
    on_redis_down: RedisDownPolicy = "local"
    expected_processes: int = 8
    default_weight: int = 10
    max_wait: float = 60.0
    limits_refresh: float = 30.0
    limits: tuple[Limit, ...] = ()
    ban_fallback: float = DEFAULT_BAN_FALLBACK

    def __post_init__(self) -> None:
        caps_for(Limit("REQUEST_WEIGHT", "MINUTE", 1, 10**6), self.safety_share, self.reserve_share)
        if self.on_redis_down not in ("local", "fail_closed"):
            raise BudgetValueError(
                f"on_redis_down must be local or fail_closed: {self.on_redis_down!r}"
            )
        for name in ("expected_processes", "default_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BudgetValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("max_wait", "limits_refresh", "ban_fallback"):
            if not getattr(self, name) > 0:
                raise BudgetValueError(f"{name} must be > 0, got {getattr(self, name)!r}")

    @classmethod
    def from_settings(cls, settings: Settings, market: str) -> BudgetOptions:
        b: BudgetSettings = settings.budget
        over = getattr(b, market, None)
        configured = b.limits
        safety, reserve, processes = b.safety_share, b.reserve_share, b.expected_processes
        if over is not None:
            safety = over.safety_share if over.safety_share is not None else safety
            reserve = over.reserve_share if over.reserve_share is not None else reserve
            processes = over.expected_processes or processes
            configured = over.limits if over.limits is not None else configured
        return cls(
            safety_share=safety,
            reserve_share=reserve,
            on_redis_down=b.on_redis_down,
            expected_processes=processes,
            default_weight=b.default_weight,
            max_wait=b.max_wait,
            limits_refresh=b.limits_refresh,
            limits=tuple(
                Limit(lim.rate_limit_type, lim.interval, lim.interval_num, lim.limit)
                for lim in configured
            ),
            ban_fallback=settings.upstream.ban_fallback,
        )


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, slots=True)
class Grant:
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


@dataclass(frozen=True, slots=True)
class BanReport:
    """What ``record_ban`` did: the deadline in force (epoch s, Binance clock), Binance's
    time when it was stored, and whether Redis holds it (False: Redis was unreachable and
    only this process knows it)."""

    until: float
    now: float
    stored: bool


@dataclass(frozen=True, slots=True)
class WindowUsage:
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


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """What ``usage()`` returns: each window's figures, the ban deadline
    (epoch s, None when not banned) and where the limits came from."""

    market: str
    now: float
    ban_until: float | None
    windows: list[WindowUsage]
    source: str


@dataclass(frozen=True, slots=True)
class BudgetStats:
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
        self._values: dict[str, int] = dict.fromkeys(BudgetStats.__dataclass_fields__, 0)

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


# ---------------------------------------------------------------------------------------------
# the limit table and script arguments


@dataclass(frozen=True, slots=True)
class Charge:
    key: str
    caps: Caps
    cost: int


@dataclass(frozen=True, slots=True)
class LimitTable:
    """The limits in force and their caps, with the key of each (ORDERS keys per account)."""

    keys: BudgetKeys
    caps: tuple[Caps, ...]
    source: str
    """``published``, ``configured`` or ``default``: where the base limits came from."""

    @classmethod
    def build(
        cls, keys: BudgetKeys, options: BudgetOptions, published: Sequence[Limit]
    ) -> LimitTable:
        if published:
            base, source = tuple(published), "published"
        elif options.limits:
            base, source = (), "configured"
        else:
            base, source = DEFAULT_LIMITS.get(keys.market, ()), "default"
        limits = merge_limits(base, options.limits)
        if not any(lim.kind == "REQUEST_WEIGHT" for lim in limits):
            raise BudgetValueError(
                f"no REQUEST_WEIGHT limit known for market {keys.market!r}: configure one"
            )
        caps = tuple(caps_for(lim, options.safety_share, options.reserve_share) for lim in limits)
        return cls(keys, caps, source)

    def charges(self, weight: int, orders: int, account: str | None) -> list[Charge]:
        out: list[Charge] = []
        for caps in self.caps:
            kind = caps.limit.kind
            if kind == "REQUEST_WEIGHT":
                out.append(Charge(self.keys.limit_key(caps.limit), caps, weight))
            elif kind == "RAW_REQUESTS":
                out.append(Charge(self.keys.limit_key(caps.limit), caps, 1))
            elif orders > 0:
                out.append(Charge(self.keys.limit_key(caps.limit, account), caps, orders))
        return out

    def tracked(self, account: str | None) -> list[tuple[Caps, str, str | None]]:
        """Every (caps, key, account) usage() reports: ORDERS only with an account."""
        out: list[tuple[Caps, str, str | None]] = []
        for caps in self.caps:
            if caps.limit.kind != "ORDERS":
                out.append((caps, self.keys.limit_key(caps.limit), None))
            elif account is not None:
                out.append((caps, self.keys.limit_key(caps.limit, account), account))
        return out

    def observed(
        self, figures: Iterable[HeaderUsage], account: str | None
    ) -> list[tuple[str, int, int]]:
        """(key, interval_ms, value) for each header figure that matches a tracked limit."""
        out: list[tuple[str, int, int]] = []
        for fig in figures:
            for caps in self.caps:
                lim = caps.limit
                if lim.kind != fig.kind or lim.suffix != fig.suffix:
                    continue
                if lim.kind == "ORDERS":
                    if account is None:
                        continue
                    out.append((self.keys.limit_key(lim, account), lim.interval_ms, fig.value))
                else:
                    out.append((self.keys.limit_key(lim), lim.interval_ms, fig.value))
        return out


def check_request(
    table: LimitTable, weight: int, priority: str, orders: int, account: str | None
) -> None:
    """Raise BudgetValueError (naming the value) for input no window could ever satisfy."""
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise BudgetValueError(f"weight must be an int >= 1, got {weight!r}")
    if priority not in PRIORITIES:
        raise BudgetValueError(f"unknown priority {priority!r} (expected one of {PRIORITIES})")
    if isinstance(orders, bool) or not isinstance(orders, int) or orders < 0:
        raise BudgetValueError(f"orders must be an int >= 0, got {orders!r}")
    if orders > 0:
        if account is None:
            raise BudgetValueError("orders > 0 needs an account (argument or budget default)")
        check_account(account)
    for caps in table.caps:
        lim = caps.limit
        cost = weight if lim.kind == "REQUEST_WEIGHT" else orders if lim.kind == "ORDERS" else 1
        cap = caps.for_priority(priority)
        if cost > cap:
            raise BudgetValueError(
                f"{'weight' if lim.kind != 'ORDERS' else 'orders'} {cost} exceeds the whole "
                f"{lim.label} budget of {cap} for priority {priority!r} (limit {lim.limit})"
            )


@dataclass(frozen=True, slots=True)
class Plan:
    """One validated kind of request (weight, priority, orders, account) under one limit
    table: its charges and the ACQUIRE arguments for the common case (no local spends to
    hand back), built once and reused by every later acquire of the same kind."""

    charges: list[Charge]
    args: tuple[Any, ...]


PLAN_CACHE_MAX: Final = 256


def make_plan(
    table: LimitTable, weight: int, priority: str, orders: int, account: str | None
) -> Plan:
    """Check the request (BudgetValueError) and build its charges and script arguments."""
    check_request(table, weight, priority, orders, account)
    charges = table.charges(weight, orders, account)
    return Plan(charges, acquire_args(table.keys, charges, priority))


def acquire_args(
    keys_: BudgetKeys,
    charges: Sequence[Charge],
    priority: str,
    poison: bool = False,
    extra: Mapping[str, int] | None = None,
) -> tuple[Any, ...]:
    """EVALSHA arguments of ACQUIRE. Without `poison` (no local spends to hand back) each
    limit takes four arguments; with it, five (its local spends last)."""
    keys = [c.key for c in charges]
    argv: list[Any] = ["1" if poison else "0"]
    for c in charges:
        argv += [c.caps.limit.interval_ms, c.caps.for_priority(priority), c.cost, c.caps.high]
        if poison:
            argv.append((extra or {}).get(c.key, 0))
    fixed = (keys_.ban_until, keys_.time_offset, keys_.lost)
    return (ACQUIRE.sha, 3 + len(keys), *fixed, *keys, *argv)


def observe_args(
    keys: BudgetKeys, observed: Sequence[tuple[str, int, int]], grant_ms: int | None
) -> tuple[Any, ...]:
    argv: list[Any] = ["" if grant_ms is None else grant_ms]
    for _, iv, value in observed:
        argv += [iv, value]
    return (OBSERVE.sha, 1 + len(observed), keys.time_offset, *(k for k, _, _ in observed), *argv)


def ban_args(keys: BudgetKeys, seconds: float) -> tuple[Any, ...]:
    return (BAN.sha, 2, keys.ban_until, keys.time_offset, repr(float(seconds)))


def usage_args(
    keys: BudgetKeys, tracked: Sequence[tuple[Caps, str, str | None]]
) -> tuple[Any, ...]:
    return (
        USAGE.sha,
        2 + len(tracked),
        keys.time_offset,
        keys.ban_until,
        *(key for _, key, _ in tracked),
        *(caps.limit.interval_ms for caps, _, _ in tracked),
    )


def usage_from(
    reply: Sequence[Any], tracked: Sequence[tuple[Caps, str, str | None]]
) -> list[WindowUsage]:
    out: list[WindowUsage] = []
    for i, (caps, _, account) in enumerate(tracked):
        start, used = int(reply[2 + 2 * i]), int(reply[3 + 2 * i])
        lim = caps.limit
        out.append(
            WindowUsage(
                kind=lim.kind,
                interval=lim.suffix,
                limit=lim.limit,
                cap_high=caps.high,
                cap_normal=caps.normal,
                used=used,
                window_start=start / 1000.0,
                reset_at=(start + lim.interval_ms) / 1000.0,
                account=account,
            )
        )
    return out


def ban_text(value: bytes | str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.decode() if isinstance(value, bytes) else value)
    except ValueError:
        return None


def jitter_seconds(interval_ms: int) -> float:
    return random.uniform(0.0, min(JITTER_MAX_S, interval_ms / 1000.0 * JITTER_SHARE))


# ---------------------------------------------------------------------------------------------
# the local fallback


@dataclass
class _LocalWindow:
    start: int = -1
    used: int = 0  # counted against the local share (written-off windows count in full)
    spent: int = 0  # actually granted here


@dataclass
class LocalLimiter:
    """Per-process limits used while Redis cannot be reached (policy ``local``).

    Each limit allows cap / expected_processes per window. Time is Binance's as last seen
    through Redis, carried forward on this process's monotonic clock (the wall clock only
    when Redis was never reached). The window in which the outage began is treated as spent
    (its shared count is unknown; allowing a fresh share would risk a burst), and the spends
    made here are handed back to Redis when it returns (see :meth:`handback`).
    """

    expected_processes: int
    anchor: tuple[int, float] | None = None
    outage_ms: int | None = None
    windows: dict[str, _LocalWindow] = field(default_factory=dict)
    last_local_ms: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note_server_time(self, now_ms: int) -> None:
        self.anchor = (now_ms, time.monotonic())

    def now_ms(self) -> int:
        anchor = self.anchor
        if anchor is None:
            return int(time.time() * 1000)  # never reached Redis: no better clock
        return anchor[0] + int((time.monotonic() - anchor[1]) * 1000)

    @property
    def active(self) -> bool:
        return self.outage_ms is not None

    def try_acquire(self, charges: Sequence[Charge], priority: str) -> tuple[bool, int, int]:
        """(granted, now_ms, reset_ms): charge every limit's local share, or none."""
        with self.lock:
            now = self.now_ms()
            if self.outage_ms is None:
                self.outage_ms = now
            worst = 0
            states: list[tuple[_LocalWindow, int, int]] = []
            for c in charges:
                iv = c.caps.limit.interval_ms
                start = window_start(now, iv)
                share = c.caps.for_priority(priority) // self.expected_processes
                win = self.windows.setdefault(c.key, _LocalWindow())
                if win.start != start:
                    win.start, win.used, win.spent = start, 0, 0
                    if self.outage_ms >= start:
                        win.used = share  # the outage began in this window
                states.append((win, c.cost, share))
                if win.used + c.cost > share:
                    worst = max(worst, window_end(now, iv))
            if worst:
                return False, now, worst
            for win, cost, _ in states:
                win.used += cost
                win.spent += cost
            self.last_local_ms = now
            return True, now, 0

    def handback(self, charges: Sequence[Charge]) -> tuple[bool, dict[str, int]]:
        """What to tell Redis on the first call after an outage: poison (spends were made
        locally in the current window) and the local spends per key of the current windows."""
        with self.lock:
            if self.outage_ms is None:
                return False, {}
            now = self.now_ms()
            extra: dict[str, int] = {}
            poison = False
            for c in charges:
                iv = c.caps.limit.interval_ms
                win = self.windows.get(c.key)
                if win is not None and win.start == window_start(now, iv) and win.spent > 0:
                    extra[c.key] = win.spent
                    poison = True
            return poison, extra

    def recovered(self) -> None:
        with self.lock:
            self.outage_ms = None
            self.windows.clear()
