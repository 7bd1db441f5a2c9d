"""What one refresh cycle did (:class:`CycleResult`), and the fetcher's view of a market's
settings. Pure data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from daemon.config.settings import MarketSettings, UpstreamSettings
from daemon.redis.errors import ProblemKind
from daemon.snapshot import diff as snapshot_diff
from daemon.upstream.fetch import SourceConfig

__all__ = ["CycleResult", "Outcome", "source_config"]


class Outcome(StrEnum):
    """What one cycle did: exactly one of these."""

    ACCEPTED = "accepted"  # a new snapshot was written
    UNCHANGED = "unchanged"  # the reply matched what Redis holds; the snapshot is current
    REJECTED = "rejected"  # a guard held the reply back (malformed, empty, shrunk)
    FAILED = "error"  # upstream or Redis failed; `problem` is set when it was Redis
    SKIPPED = "skipped"  # not attempted: a rate-limit ban (`wait`) or a cycle already running
    FENCED = "fenced"  # another daemon holds the market's lease; Redis refused our write


@dataclass(frozen=True, slots=True)
class CycleResult:
    """What one cycle did: `outcome`, plus for a Redis failure the :class:`ProblemKind`.

    `accepted` and `unchanged` both mean the snapshot is current (`ok`).
    """

    market: str
    outcome: Outcome
    reason: str = ""
    version: str | None = None
    count: int = 0
    listed: int = 0
    duration_ms: float = 0.0
    # Seconds until a rate-limit ban ends (the scheduler waits at least that long).
    wait: float | None = None
    # A failed cycle: whether trying again soon may help (403/451 upstream say no).
    retryable: bool = True
    # A failed cycle caused by Redis: what kind of problem (daemon.redis.errors).
    problem: ProblemKind | None = None
    # What changed, when an accepted snapshot replaced a different one.
    diff: snapshot_diff.SnapshotDiff | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.ACCEPTED, Outcome.UNCHANGED)

    @property
    def redis_down(self) -> bool:
        """The cycle failed because of Redis (of any problem kind)."""
        return self.problem is not None

    @property
    def permanent(self) -> bool:
        """A failure that retrying soon will not fix."""
        return not self.retryable

    @property
    def fenced(self) -> bool:
        return self.outcome is Outcome.FENCED


def source_config(market: MarketSettings, upstream: UpstreamSettings) -> SourceConfig:
    """The fetcher's view of a market's settings."""
    return SourceConfig(
        base_urls=tuple(market.base_urls),
        path=market.path,
        timeout_total=upstream.timeout_total,
        timeout_connect=upstream.timeout_connect,
        timeout_read=upstream.timeout_read,
        max_body_bytes=upstream.max_body_bytes,
        user_agent=upstream.user_agent,
    )
