"""The freshness rule shared by ``/healthz`` and ``symbold status --check``: pure, no I/O and
no heavy imports, so the CLI can use it without loading the HTTP server or Prometheus."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Freshness:
    """Whether a market's served snapshot is young enough; `reason` says why not."""

    market: str
    fresh: bool
    age: float | None
    reason: str


def judge_freshness(
    market: str, refreshed_at: float | None, max_age: float, now: float
) -> Freshness:
    """Pure rule used by /healthz and `symbold status --check`."""
    if refreshed_at is None:
        return Freshness(market, False, None, f"{market}: no snapshot yet")
    age = max(0.0, now - refreshed_at)
    if age > max_age:
        return Freshness(
            market, False, age, f"{market}: snapshot {age:.0f} s old (max {max_age:.0f} s)"
        )
    return Freshness(market, True, age, "")
