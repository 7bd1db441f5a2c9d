"""``symbold status``: what Redis says about each market, read-only.

Reading is one pipelined round trip per market; formatting is a pure function so it can be
tested without Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio

from daemon.contract.keys import METRIC_FIELDS, MarketKeys
from daemon.contract.meta import MetaFields, decode_timestamp


@dataclass(frozen=True, slots=True)
class MarketStatus:
    """One market's state as stored; `age` is seconds since the last accepted snapshot."""

    market: str
    refreshed_at: float | None
    age: float | None
    count: int | None
    listed: int | None
    stale: bool
    version: str | None
    source: str | None
    last_error: str | None
    ttl: int | None
    counters: dict[str, int] = field(default_factory=dict)
    ban_until: float | None = None
    daemon: dict[str, Any] | None = None
    # Lease holder among replicas ("host:pid:id"), when leases are on and someone leads.
    leader: str | None = None

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
        stale=meta.stale,
        version=meta.version,
        source=meta.source or None,
        last_error=meta.last_error or None,
        ttl=ttl if isinstance(ttl, int) and ttl >= 0 else None,
        counters=counters,
        ban_until=decode_timestamp(ban_raw),
        daemon=daemon,
        leader=leader_raw.decode(errors="replace") if leader_raw else None,
    )


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def format_status(statuses: list[MarketStatus], now: float | None = None) -> str:
    """Human-readable lines, one block per market."""
    now = time.time() if now is None else now
    lines: list[str] = []
    for st in statuses:
        if st.refreshed_at is None:
            lines.append(f"{st.market}: no snapshot yet")
        else:
            state = "STALE" if st.stale else "fresh"
            lines.append(
                f"{st.market}: {st.listed} listed of {st.count} symbols, "
                f"{_duration(now - st.refreshed_at)} old, {state}, version {st.version}"
            )
        if st.ttl is not None:
            lines.append(f"  cache expires in {_duration(st.ttl)}")
        elif st.refreshed_at is not None:
            lines.append("  cache key missing (last_good still holds the list)")
        counters = ", ".join(f"{k} {v}" for k, v in st.counters.items())
        lines.append(f"  counters: {counters}")
        if st.last_error:
            lines.append(f"  last error: {st.last_error}")
        if st.ban_until is not None and st.ban_until > now:
            lines.append(f"  rate-limit ban for {_duration(st.ban_until - now)} more")
        if st.daemon:
            nxt = st.daemon.get("next_refresh_at")
            when = f", next refresh in {_duration(float(nxt) - now)}" if nxt else ""
            lines.append(f"  daemon: pid {st.daemon.get('pid')} on {st.daemon.get('host')}{when}")
        else:
            lines.append("  daemon: not running")
        if st.leader:
            lines.append(f"  leader: {st.leader}")
    return "\n".join(lines)
