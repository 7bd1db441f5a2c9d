"""The one-line systemd STATUS= text, built from what the service holds (pure).

Each market reads ``"<market>: <count> symbols, <age> old, <fresh|STALE>"``, with the same verdict
and words as ``symbold status`` and ``/healthz`` (:mod:`daemon.ops.freshness`), then
``(standby)`` on a follower and the last failure when the newest attempt did not succeed.
"""

from __future__ import annotations

from daemon.ops.freshness import Freshness, duration
from daemon.refresh.cycle import CycleResult


def market_text(
    verdict: Freshness, count: int | None, leading: bool, last: CycleResult | None
) -> str:
    """One market's part of the line (pure)."""
    name = verdict.market
    if verdict.age is None:
        text = f"{name}: no snapshot yet, {verdict.word}"
    elif count is None:
        # Fresh in Redis (another daemon's, or ours from before a restart), not held here.
        text = f"{name}: snapshot in Redis, {duration(verdict.age)} old, {verdict.word}"
    else:
        text = f"{name}: {count} symbols, {duration(verdict.age)} old, {verdict.word}"
        if not verdict.fresh:
            text += f" (max {duration(verdict.max_age)})"
    if not leading:
        text += " (standby)"
    if last is not None and not last.ok:
        reason = "redis unavailable" if last.redis_down else last.reason[:60]
        state = "serving fallback" if count is not None else "waiting"
        text += f", {state}: {last.outcome} ({reason})"
    return text


def status_line(
    parts: list[str], *, starting: bool, degraded: bool, restart_needed: list[str]
) -> str:
    """Join the markets' texts and the service-wide notes into one line (pure)."""
    line = "; ".join(parts)
    if starting:
        line = "starting, waiting for a fresh snapshot: " + line
    elif degraded:
        line = "degraded: " + line
    if restart_needed:
        line += "; restart needed for " + ", ".join(restart_needed)
    return line
