"""Typed rate limits, window arithmetic and Binance's rate-limit headers (no I/O).

Binance publishes its limits in exchangeInfo's ``rateLimits`` (``rateLimitType``, ``interval``,
``intervalNum``, ``limit``) and reports usage in response headers named after the interval:
``X-MBX-USED-WEIGHT-1M``, ``X-MBX-ORDER-COUNT-10S``. Windows are fixed, not sliding: a
1-minute window starts on every whole minute of Binance's clock. For ``intervalNum > 1`` we
align windows to whole multiples of the interval since the Unix epoch (10 s windows start at
:00, :10, ...), which is what the published examples show.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, get_args

import msgspec

from daemon.budget.errors import BudgetValueError
from daemon.contract.ratelimits import MAX_BAN_SECONDS

LimitKind = Literal["REQUEST_WEIGHT", "RAW_REQUESTS", "ORDERS"]
Interval = Literal["SECOND", "MINUTE", "HOUR", "DAY"]
Priority = Literal["normal", "high"]

KINDS: Final[tuple[str, ...]] = get_args(LimitKind)
INTERVAL_MS: Final[dict[str, int]] = {
    "SECOND": 1_000,
    "MINUTE": 60_000,
    "HOUR": 3_600_000,
    "DAY": 86_400_000,
}
_LETTER: Final = {"SECOND": "S", "MINUTE": "M", "HOUR": "H", "DAY": "D"}
_INTERVAL_OF_LETTER: Final = {v: k for k, v in _LETTER.items()}
PRIORITIES: Final[tuple[str, ...]] = get_args(Priority)


class Limit(msgspec.Struct, frozen=True):
    """One limit: at most ``limit`` units per ``interval_num`` x ``interval``.

    Units are request weight (REQUEST_WEIGHT), requests (RAW_REQUESTS) or orders (ORDERS).
    Construction raises :class:`BudgetValueError` for a kind or interval Binance does not
    use, or a non-positive number.
    """

    kind: LimitKind
    interval: Interval
    interval_num: int
    limit: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BudgetValueError(f"unknown rate limit type {self.kind!r} (expected {KINDS})")
        if self.interval not in INTERVAL_MS:
            raise BudgetValueError(f"unknown interval {self.interval!r}")
        for name in ("interval_num", "limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BudgetValueError(f"{self.label}: {name} must be an int >= 1, got {value!r}")

    @property
    def suffix(self) -> str:
        """``1M``, ``10S``, ``1D``: how Binance's headers name this interval."""
        return f"{self.interval_num}{_LETTER[self.interval]}"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.interval_num}{_LETTER.get(self.interval, '?')}"

    @property
    def interval_ms(self) -> int:
        return INTERVAL_MS[self.interval] * self.interval_num

    @property
    def slot(self) -> tuple[str, str, int]:
        """What identifies a limit regardless of its number (to replace one by another)."""
        return (self.kind, self.interval, self.interval_num)


def window_start(now_ms: int, interval_ms: int) -> int:
    """Start of the window holding ``now_ms`` (both in ms; windows aligned to the epoch)."""
    return now_ms - now_ms % interval_ms


def window_end(now_ms: int, interval_ms: int) -> int:
    """First millisecond of the next window."""
    return window_start(now_ms, interval_ms) + interval_ms


class Caps(msgspec.Struct, frozen=True):
    """What the budget lets callers spend of one limit per window.

    ``high`` = floor(limit x safety_share); ``normal`` = floor(high x (1 - reserve_share)).
    The difference is the reserve only ``priority="high"`` may use.
    """

    limit: Limit
    high: int
    normal: int

    def for_priority(self, priority: str) -> int:
        return self.high if priority == "high" else self.normal


def check_share(name: str, value: float, *, allow_zero: bool, allow_one: bool) -> float:
    ok = (value >= 0 if allow_zero else value > 0) and (value <= 1 if allow_one else value < 1)
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
        raise BudgetValueError(f"{name} out of range: {value!r}")
    return float(value)


def caps_for(limit: Limit, safety_share: float, reserve_share: float) -> Caps:
    safety = check_share("safety_share", safety_share, allow_zero=False, allow_one=True)
    reserve = check_share("reserve_share", reserve_share, allow_zero=True, allow_one=False)
    high = math.floor(limit.limit * safety)
    if high < 1:
        raise BudgetValueError(
            f"{limit.label}: limit {limit.limit} x safety_share {safety} leaves nothing to spend"
        )
    return Caps(limit=limit, high=high, normal=math.floor(high * (1 - reserve)))


# ---------------------------------------------------------------------------------------------
# published and default limits


def _limit_from(obj: Any) -> Limit | None:
    if not isinstance(obj, dict):
        return None
    try:
        return Limit(
            kind=obj["rateLimitType"],
            interval=obj["interval"],
            interval_num=obj["intervalNum"],
            limit=obj["limit"],
        )
    except (KeyError, BudgetValueError):
        return None


def parse_rate_limits(raw: bytes | str | None) -> tuple[Limit, ...]:
    """The ``rate_limits`` field of a meta hash (Binance's ``rateLimits`` JSON array).

    Entries that are not usable limits (unknown type, zero, missing fields) are skipped: a
    new kind of limit from Binance must not break the budget. None or garbage gives ().
    """
    if raw is None:
        return ()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return ()
    if not isinstance(data, list):
        return ()
    return tuple(lim for lim in map(_limit_from, data) if lim is not None)


def rate_limits_json(limits: Iterable[Limit]) -> str:
    """Limits in Binance's shape (what the daemon writes to the meta field ``rate_limits``)."""
    return json.dumps(
        [
            {
                "rateLimitType": lim.kind,
                "interval": lim.interval,
                "intervalNum": lim.interval_num,
                "limit": lim.limit,
            }
            for lim in limits
        ],
        separators=(",", ":"),
    )


def merge_limits(published: Iterable[Limit], configured: Iterable[Limit]) -> tuple[Limit, ...]:
    """Published limits with configured ones replacing those of the same type and interval;
    configured limits Binance did not publish are added."""
    merged: dict[tuple[str, str, int], Limit] = {lim.slot: lim for lim in published}
    for lim in configured:
        merged[lim.slot] = lim
    return tuple(merged.values())


# Used when neither the meta hash nor the configuration has limits: Binance's published
# figures at the time of writing (spot /api/v3, USD-M /fapi/v1, COIN-M /dapi/v1).
DEFAULT_LIMITS: Final[dict[str, tuple[Limit, ...]]] = {
    "spot": (
        Limit("REQUEST_WEIGHT", "MINUTE", 1, 6000),
        Limit("RAW_REQUESTS", "MINUTE", 5, 61000),
        Limit("ORDERS", "SECOND", 10, 100),
        Limit("ORDERS", "DAY", 1, 200000),
    ),
    "usdm": (
        Limit("REQUEST_WEIGHT", "MINUTE", 1, 2400),
        Limit("ORDERS", "MINUTE", 1, 1200),
        Limit("ORDERS", "SECOND", 10, 300),
    ),
    "coinm": (
        Limit("REQUEST_WEIGHT", "MINUTE", 1, 2400),
        Limit("ORDERS", "MINUTE", 1, 1200),
    ),
}


# ---------------------------------------------------------------------------------------------
# headers

_USAGE_HEADER: Final = re.compile(r"^x-mbx-(used-weight|order-count)-(\d+)([smhd])$", re.IGNORECASE)


class HeaderUsage(msgspec.Struct, frozen=True):
    """One usage figure Binance reported: ``kind``'s count in the current ``suffix`` window."""

    kind: LimitKind
    suffix: str
    value: int


def _items(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> Iterable[tuple[str, str]]:
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def parse_usage_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> list[HeaderUsage]:
    """Every ``X-MBX-USED-WEIGHT-<n><unit>`` and ``X-MBX-ORDER-COUNT-<n><unit>`` header, any
    case. Values that are not non-negative integers are ignored."""
    out: list[HeaderUsage] = []
    for name, value in _items(headers):
        match = _USAGE_HEADER.match(name)
        if match is None:
            continue
        try:
            count = int(str(value).strip())
        except ValueError:
            continue
        if count < 0:
            continue
        kind: LimitKind = "REQUEST_WEIGHT" if match[1].lower() == "used-weight" else "ORDERS"
        out.append(HeaderUsage(kind, f"{int(match[2])}{match[3].upper()}", count))
    return out


def find_header(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    for key, value in _items(headers):
        if key.lower() == wanted:
            return value
    return None


def parse_retry_after(value: str | float | None) -> float | None:
    """Seconds from a ``Retry-After`` value; None when absent or not a number of seconds
    (Binance sends whole seconds; an HTTP-date would need the caller's clock, so it is not
    trusted)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        try:
            seconds = float(str(value).strip())
        except ValueError:
            return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def clamp_ban(seconds: float) -> float:
    """A ban length within (0, 3 days]: Binance never bans longer, so a bigger number is a bug
    or an attack on our availability."""
    return min(max(seconds, 0.001), MAX_BAN_SECONDS)
