"""Process exit codes (sysexits.h), shared by every command and the systemd unit: one table.

``symbold --help`` and the README print :data:`TABLE`; a Redis failure's code follows from
its :class:`~daemon.redis.errors.ProblemKind` through :func:`for_problem`. 78 is the unit's
``RestartPreventExitStatus``, so a bad configuration does not restart in a loop.
"""

from __future__ import annotations

OK = 0
FAILURE = 1
USAGE = 64  # EX_USAGE: bad arguments
DATAERR = 65  # EX_DATAERR: bad data: a wrong-type key in Redis, an invalid order, no such symbol
UNAVAILABLE = 69  # EX_UNAVAILABLE
TEMPFAIL = 75  # EX_TEMPFAIL
CONFIG = 78  # EX_CONFIG

TABLE: tuple[tuple[int, str], ...] = (
    (OK, "success, or a clean stop"),
    (FAILURE, "failure (also a forced stop: a second SIGTERM/SIGINT)"),
    (USAGE, "bad arguments or flags"),
    (
        DATAERR,
        "bad data: Redis holds a key of the wrong type (WRONGTYPE); `check`: the order is "
        "invalid or the symbol unknown",
    ),
    (UNAVAILABLE, "Redis unreachable or not serving (down, loading, read-only, out of memory)"),
    (TEMPFAIL, "refresh held back: a guard, a stored rate-limit ban, another leader; retry later"),
    (CONFIG, "configuration or authentication error (wrong password, ACL NOPERM, bad setting)"),
)

# ProblemKind values (daemon.redis.errors) -> exit code; plain strings keep this module free of
# imports, so the table can be read without redis-py.
_FOR_PROBLEM = {"configuration": CONFIG, "unavailable": UNAVAILABLE, "data": DATAERR}

# When several markets fail differently, the code that needs a person most wins.
_SEVERITY = (CONFIG, DATAERR, UNAVAILABLE, FAILURE, TEMPFAIL, OK)


def for_problem(kind: str) -> int:
    """The exit code for a :class:`~daemon.redis.errors.ProblemKind` (or its value)."""
    return _FOR_PROBLEM[str(kind)]


def worst(*codes: int) -> int:
    """The most severe of `codes` (OK when none), in the order 78, 65, 69, 1, 75, 0."""
    present = set(codes)
    for code in _SEVERITY:
        if code in present:
            return code
    return max(present, default=OK)


def help_text() -> str:
    """The table as ``symbold --help`` shows it."""
    return "\n".join(f"  {code:<3} {meaning}" for code, meaning in TABLE)
