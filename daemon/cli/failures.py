"""How a command reports a Redis failure: one line on stderr, and the exit code that follows
from :func:`daemon.redis.errors.classify` (69 unavailable, 78 refused credentials, 65 data)."""

from __future__ import annotations

import sys


def redis_failure(exc: BaseException, context: str = "") -> int:
    """Print ``symbold: [context: ]redis <what>: <message>`` (secrets masked) and return the
    exit code for `exc`, a Redis or connection error."""
    from daemon import exitcodes
    from daemon.redis.errors import ProblemKind, classify

    what = {
        ProblemKind.CONFIGURATION: "auth",
        ProblemKind.UNAVAILABLE: "unreachable",
        ProblemKind.DATA: "data error",
    }
    problem = classify(exc)
    prefix = f"{context}: " if context else ""
    print(f"symbold: {prefix}redis {what[problem.kind]}: {problem.message}", file=sys.stderr)
    return exitcodes.for_problem(problem.kind)
