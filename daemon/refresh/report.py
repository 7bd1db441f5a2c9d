"""How a cycle reports trouble it cannot fix itself: Redis failures by kind, held rows."""

from __future__ import annotations

import time

from structlog.stdlib import BoundLogger

from daemon.contract.meta import HeldRow, SnapshotMeta
from daemon.redis.errors import ProblemKind, classify
from daemon.refresh.result import CycleResult, Outcome
from daemon.snapshot.diff import SnapshotDiff
from daemon.snapshot.listing import SnapshotBlobs
from daemon.snapshot.normalize import Normalized

__all__ = [
    "WEIGHT_WARN_SHARE",
    "log_dropped",
    "log_held",
    "log_written",
    "redis_failed",
    "warn_if_weight_high",
]

# Log when the used request weight passes this share of the announced limit.
WEIGHT_WARN_SHARE = 0.8

# Held rows named in one log line (all of them are in meta's held_rows).
_HELD_LOGGED = 20


def redis_failed(log: BoundLogger, market: str, exc: BaseException, started: float) -> CycleResult:
    """Log a Redis failure by its kind and say so as a failed cycle."""
    problem = classify(exc)
    if problem.kind is ProblemKind.CONFIGURATION:
        # Wrong password or an ACL refusal: a person has to act, retrying cannot fix it.
        log.error(
            "redis.auth_failed",
            error=problem.message,
            reason=problem.reason,
            action="fix the Redis credentials or ACL",
        )
    elif problem.reason in ("readonly", "oom"):
        # Reachable, but refusing writes (a replica after failover, maxmemory noeviction).
        log.error("redis.write_refused", error=problem.message)
    elif problem.kind is ProblemKind.DATA:
        log.error("redis.bad_data", error=problem.message, reason=problem.reason)
    else:
        log.warning("redis.unavailable", error=problem.message)
    return CycleResult(
        market,
        Outcome.FAILED,
        reason=f"redis: {problem.message}",
        problem=problem.kind,
        duration_ms=(time.perf_counter() - started) * 1000.0,
    )


def log_held(log: BoundLogger, held: tuple[HeldRow, ...], confirmed: tuple[HeldRow, ...]) -> None:
    """Log the rows held back this cycle and the suspicious ones now confirmed."""
    if held:
        log.warning(
            "refresh.rows_held",
            held=len(held),
            rows=[f"{row.symbol}: {row.reason} ({row.seen} seen)" for row in held][:_HELD_LOGGED],
            action="serving the previous row for each",
        )
    if confirmed:
        log.error(
            "refresh.rows_confirmed",
            confirmed=len(confirmed),
            rows=[f"{row.symbol}: {row.reason}" for row in confirmed][:_HELD_LOGGED],
        )


def warn_if_weight_high(log: BoundLogger, used: int | None, limit: int | None) -> None:
    """Warn when Binance's used-weight figure passes :data:`WEIGHT_WARN_SHARE` of the limit."""
    if limit is None or used is None:
        return
    if used > WEIGHT_WARN_SHARE * limit:
        log.warning("upstream.weight_high", used_weight=used, limit=limit)


def log_dropped(log: BoundLogger, norm: Normalized) -> None:
    """Warn about rows normalization dropped, refused or found twice (nothing when none)."""
    if norm.dropped or norm.refused or norm.duplicates:
        log.warning(
            "normalize.rows_dropped",
            dropped=norm.dropped,
            refused=len(norm.refused),
            refused_names=list(norm.refused[:10]),
            duplicates=norm.duplicates,
        )


def log_written(
    log: BoundLogger,
    blobs: SnapshotBlobs | SnapshotMeta,
    diff: SnapshotDiff | None,
    duration_ms: float,
    source: str,
    *,
    unchanged: bool,
) -> None:
    """``refresh.ok`` (with the diff's counts) or ``refresh.unchanged`` after a commit."""
    fields: dict[str, object] = {
        "count": blobs.count,
        "listed": blobs.listed,
        "version": blobs.version,
        "duration_ms": round(duration_ms, 1),
        "source": source,
    }
    if diff is not None:
        fields |= {
            "added": len(diff.added),
            "removed": len(diff.removed),
            "status_changed": len(diff.status_changed),
            "filters_changed": len(diff.filters_changed),
        }
    log.info("refresh.ok" if not unchanged else "refresh.unchanged", **fields)
