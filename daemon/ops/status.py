"""``symbold status``: what Redis says about each market, read-only.

Reading is one pipelined round trip per market (plus one budget script when the market's
weight-budget keys exist); formatting and the freshness verdict are pure functions so they can
be tested without Redis. Fresh or stale is decided by :func:`daemon.ops.freshness.judge` only;
``serving_fallback`` (meta's ``stale`` flag) is shown beside it, never instead of it.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import msgspec
import redis.asyncio

from daemon.budget.errors import BudgetError
from daemon.budget.results import BudgetUsage
from daemon.config.settings import Settings
from daemon.contract.keys import METRIC_FIELDS, MarketKeys
from daemon.contract.meta import MetaFields, decode_timestamp
from daemon.ops.freshness import Freshness, duration, judge
from daemon.redis.clients import ConnectionConfig
from daemon.redis.errors import RECOVERABLE


class BudgetWindow(msgspec.Struct, frozen=True):
    """One window of the market's shared weight budget, as `status` shows it."""

    limit: str  # "REQUEST_WEIGHT 1M"
    used: int
    cap: int  # Binance's published figure for the window
    reset_at: float


class MarketStatus(msgspec.Struct, frozen=True):
    """One market's state as stored; `age` is seconds since the last accepted snapshot.

    `serving_fallback` is meta's ``stale`` flag: the last refresh attempt failed or was held
    back, or the cache was republished from memory or ``last_good``. It is not the freshness
    verdict (see :mod:`daemon.ops.freshness`)."""

    market: str
    refreshed_at: float | None
    age: float | None
    count: int | None
    listed: int | None
    serving_fallback: bool
    version: str | None
    source: str | None
    last_error: str | None
    ttl: int | None
    counters: dict[str, int] = msgspec.field(default_factory=dict)
    ban_until: float | None = None
    daemon: dict[str, Any] | None = None
    # Lease holder among replicas ("host:pid:id"), when leases are on and someone leads.
    leader: str | None = None
    # The shared weight budget's current windows; empty when its keys do not exist.
    budget: list[BudgetWindow] = msgspec.field(default_factory=list)

    def to_builtins(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        if self.age is not None:
            out["age"] = round(self.age, 1)
        return out


async def read_status(client: redis.asyncio.Redis, keys: MarketKeys) -> MarketStatus:
    """Read one market's keys (raises redis errors)."""
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.refreshed_at)
    pipe.hgetall(keys.meta)
    pipe.hgetall(keys.metrics)
    pipe.ttl(keys.symbols)
    pipe.get(keys.ban_until)
    pipe.get(keys.daemon)
    pipe.get(keys.leader)
    (
        refreshed_raw,
        meta_raw,
        metrics_raw,
        ttl,
        ban_raw,
        daemon_raw,
        leader_raw,
    ) = await pipe.execute()
    meta = MetaFields.from_hash(meta_raw)
    refreshed_at = decode_timestamp(refreshed_raw)
    daemon: dict[str, Any] | None = None
    if daemon_raw:
        try:
            decoded = msgspec.json.decode(daemon_raw)
            daemon = decoded if isinstance(decoded, dict) else None
        except msgspec.DecodeError:
            daemon = None
    counters = {name: 0 for name in METRIC_FIELDS}
    counters.update({k.decode(): int(v) for k, v in metrics_raw.items()})
    return MarketStatus(
        market=keys.market,
        refreshed_at=refreshed_at,
        age=(time.time() - refreshed_at) if refreshed_at is not None else None,
        count=meta.count,
        listed=meta.listed,
        serving_fallback=meta.stale,
        version=meta.version,
        source=meta.source or None,
        last_error=meta.last_error or None,
        ttl=ttl if isinstance(ttl, int) and ttl >= 0 else None,
        counters=counters,
        ban_until=decode_timestamp(ban_raw),
        daemon=daemon,
        leader=leader_raw.decode(errors="replace") if leader_raw else None,
    )


def budget_windows(usage: BudgetUsage) -> list[BudgetWindow]:
    """The windows of a budget usage reading, in the shape `status` prints."""
    return [
        BudgetWindow(
            limit=f"{w.kind} {w.interval}" + (f" {w.account}" if w.account else ""),
            used=w.used,
            cap=w.limit,
            reset_at=w.reset_at,
        )
        for w in usage.windows
    ]


async def read_budget(
    client: redis.asyncio.Redis, connection: ConnectionConfig, settings: Settings, keys: MarketKeys
) -> list[BudgetWindow]:
    """The market's budget windows when any of its counter keys exists, else []."""
    from daemon.budget.keys import budget_keys
    from daemon.budget.options import BudgetOptions
    from daemon.budget.plan import LimitTable

    # The key names come from the settings alone; the budget client itself (and its script
    # machinery) is only built where a process has counted something.
    table = LimitTable.build(
        budget_keys(keys, settings.redis.key_prefix),
        BudgetOptions.from_settings(settings, keys.market),
        (),
    )
    counters = [key for _, key, _ in table.tracked(None)]
    if not counters or not await client.exists(*counters):
        return []
    from daemon.budget import AsyncWeightBudget

    budget = AsyncWeightBudget(connection, settings, market=keys.market)
    try:
        with contextlib.suppress(BudgetError, *RECOVERABLE):
            return budget_windows(await budget.usage())
        return []
    finally:
        await budget.aclose()


def verdicts(statuses: list[MarketStatus], max_age: float, now: float) -> list[Freshness]:
    """The freshness verdict of each market (the one rule)."""
    return [judge(st.market, st.refreshed_at, max_age, now) for st in statuses]


def status_json(statuses: list[MarketStatus], max_age: float, now: float) -> dict[str, Any]:
    """`status --json`: each market's stored state plus the verdict (`fresh`, `stale` =
    not fresh, `stale_reason`, `max_age`)."""
    out: dict[str, Any] = {}
    for st, v in zip(statuses, verdicts(statuses, max_age, now), strict=True):
        out[st.market] = st.to_builtins() | {
            "fresh": v.fresh,
            "stale": not v.fresh,
            "stale_reason": v.reason or None,
            "max_age": max_age,
        }
    return out


def format_status(statuses: list[MarketStatus], max_age: float, now: float | None = None) -> str:
    """Human-readable lines, one block per market."""
    now = time.time() if now is None else now
    lines: list[str] = []
    for st, v in zip(statuses, verdicts(statuses, max_age, now), strict=True):
        if st.refreshed_at is None:
            lines.append(f"{st.market}: no snapshot yet, {v.word}")
        else:
            lines.append(
                f"{st.market}: {st.listed} listed of {st.count} symbols, "
                f"{duration(now - st.refreshed_at)} old, {v.word}"
                + ("" if v.fresh else f" (max {duration(max_age)})")
                + f", version {st.version}"
            )
        if st.serving_fallback:
            lines.append("  serving a fallback: the last refresh failed or was held back")
        if st.ttl is not None:
            lines.append(f"  cache expires in {duration(st.ttl)}")
        elif st.refreshed_at is not None:
            lines.append("  cache key missing (last_good still holds the list)")
        counters = ", ".join(f"{k} {v}" for k, v in st.counters.items())
        lines.append(f"  counters: {counters}")
        if st.last_error:
            lines.append(f"  last error: {st.last_error}")
        if st.ban_until is not None and st.ban_until > now:
            lines.append(f"  rate-limit ban for {duration(st.ban_until - now)} more")
        if st.budget:
            used = ", ".join(f"{w.limit} {w.used}/{w.cap}" for w in st.budget)
            lines.append(f"  weight budget: {used}")
        if st.daemon:
            nxt = st.daemon.get("next_refresh_at")
            when = f", next refresh in {duration(float(nxt) - now)}" if nxt else ""
            lines.append(f"  daemon: pid {st.daemon.get('pid')} on {st.daemon.get('host')}{when}")
        else:
            lines.append("  daemon: not running")
        if st.leader:
            lines.append(f"  leader: {st.leader}")
    return "\n".join(lines)
