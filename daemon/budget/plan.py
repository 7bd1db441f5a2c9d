"""The limit table, validated request plans, the scripts' arguments and reply decoding.

Nothing here does I/O. A :class:`Plan` carries its EVALSHA command already encoded in the
Redis protocol (RESP), so the hot path sends bytes built once per kind of request.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec

from daemon.budget.errors import BudgetValueError
from daemon.budget.keys import BudgetKeys, check_account
from daemon.budget.limits import (
    DEFAULT_LIMITS,
    PRIORITIES,
    Caps,
    HeaderUsage,
    Limit,
    caps_for,
    clamp_ban,
    find_header,
    merge_limits,
    parse_retry_after,
)
from daemon.budget.options import JITTER_MAX_S, JITTER_SHARE, BudgetOptions, Headers
from daemon.budget.results import WindowUsage
from daemon.budget.script import ACQUIRE, BAN, OBSERVE, USAGE


class Charge(msgspec.Struct, frozen=True):
    key: str
    caps: Caps
    cost: int


class LimitTable(msgspec.Struct, frozen=True):
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


class Plan(msgspec.Struct, frozen=True):
    """One validated kind of request (weight, priority, orders, account) under one limit
    table: its charges and the ACQUIRE arguments for the common case (no local spends to
    hand back), built once and reused by every later acquire of the same kind."""

    charges: list[Charge]
    args: tuple[Any, ...]
    packed: bytes
    """``EVALSHA`` with `args`, encoded once (see :func:`pack_command`)."""


PLAN_CACHE_MAX: Final = 256


def make_plan(
    table: LimitTable, weight: int, priority: str, orders: int, account: str | None
) -> Plan:
    """Check the request (BudgetValueError) and build its charges and script arguments."""
    check_request(table, weight, priority, orders, account)
    charges = table.charges(weight, orders, account)
    args = acquire_args(table.keys, charges, priority)
    return Plan(charges, args, pack_command("EVALSHA", *args))


def pack_command(*parts: str | int | float) -> bytes:
    """One command in the Redis protocol (an array of bulk strings), each part encoded as
    redis-py encodes it (str as UTF-8, int and float by ``repr``)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        raw = part.encode() if isinstance(part, str) else repr(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def ban_seconds(
    status: int, headers_or_retry_after: Headers | float | str | None, fallback: float
) -> float:
    """How long a 429/418 stops every caller: Retry-After (a header among `headers`, or the
    value itself), else `fallback`; at most 3 days. BudgetValueError for another status."""
    if status not in (429, 418):
        raise BudgetValueError(f"report_limited is for 429/418 answers, got status {status!r}")
    if headers_or_retry_after is None or isinstance(headers_or_retry_after, int | float | str):
        retry = parse_retry_after(headers_or_retry_after)
    else:
        retry = parse_retry_after(find_header(headers_or_retry_after, "Retry-After"))
    return clamp_ban(retry if retry is not None else fallback)


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


class PlanCache:
    """Plans by (weight, priority, orders, account) under one limit table: a budget makes a
    new cache when its table changes. A plan for another table is built and not kept."""

    __slots__ = ("_plans", "table")

    def __init__(self, table: LimitTable) -> None:
        self.table = table
        self._plans: dict[tuple[int, str, int, str | None], Plan] = {}

    def get(
        self, table: LimitTable, weight: int, priority: str, orders: int, account: str | None
    ) -> Plan:
        # type(...) is int: True == 1 would otherwise hit the plan of weight 1 unchecked.
        if table is not self.table or type(weight) is not int or type(orders) is not int:
            return make_plan(table, weight, priority, orders, account)
        key = (weight, priority, orders, account)
        plan = self._plans.get(key)
        if plan is None:
            plan = make_plan(table, weight, priority, orders, account)
            if len(self._plans) >= PLAN_CACHE_MAX:
                self._plans.clear()
            self._plans[key] = plan
        return plan
