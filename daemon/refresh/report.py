"""How a cycle reports trouble it cannot fix itself: Redis failures by kind, held rows."""

from __future__ import annotations

import time

from structlog.stdlib import BoundLogger

from daemon.contract.meta import HeldRow
from daemon.redis.errors import ProblemKind, classify
from daemon.refresh.result import CycleResult, Outcome

__all__ = ["log_held", "redis_failed"]

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
