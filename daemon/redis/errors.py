"""One classification of Redis errors, shared by ping, refresh, status, the CLI and readers.

:func:`classify` turns any exception a Redis call may raise into a :class:`Problem`: a kind
(what a caller does about it), a short stable reason (for logs and metrics) and a one-line
message with every secret masked. The exit code of a one-shot command follows from the kind
(:func:`daemon.exitcodes.for_problem`).

The kinds, and why each error is where it is:

- ``configuration`` (exit 78): retrying cannot help, a person must change a setting.
  Wrong or missing password (``WRONGPASS``, ``NOAUTH``, ``AuthenticationError``), an ACL that
  refuses a command or key (``NOPERM``), sentinels that refuse our credentials.
- ``unavailable`` (exit 69): the server is not (yet) able to serve us; it may recover on its
  own. Connection refused or reset, timeouts, a pool with no free connection, ``LOADING``,
  ``MASTERDOWN``, no primary known to the sentinels, ``CLUSTERDOWN``/``TRYAGAIN``/a cluster
  with no reachable node, ``READONLY`` (we reached a replica: a failover is under way), ``OOM``
  (maxmemory with noeviction: it clears when memory is freed, so a write may succeed later)
  and a reply that is not the Redis protocol.
- ``data`` (exit 65): the server answered, but what it holds or what we sent is wrong:
  ``WRONGTYPE``, ``DataError``, and any other error reply.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec
import redis
import redis.asyncio.sentinel
import redis.exceptions
import redis.sentinel
from redis.exceptions import RedisClusterException

from daemon.redaction import scrub_text

__all__ = ["RECOVERABLE", "Problem", "ProblemKind", "classify"]

RECOVERABLE: tuple[type[BaseException], ...] = (
    redis.RedisError,
    RedisClusterException,
    OSError,
)
"""What a Redis call may raise that a caller handles (classify it) rather than lets crash:
redis-py's own errors, the cluster client's, and socket errors that escape them."""


class ProblemKind(StrEnum):
    CONFIGURATION = "configuration"
    UNAVAILABLE = "unavailable"
    DATA = "data"


class Problem(msgspec.Struct, frozen=True):
    """What went wrong, in three forms: `kind` to act on, `reason` to count, `message` to show
    (``ExceptionName: text``, secrets masked)."""

    kind: ProblemKind
    reason: str
    message: str


# Two distinct classes: the sync and the asyncio Sentinel each define their own.
_NO_MASTER = (redis.sentinel.MasterNotFoundError, redis.asyncio.sentinel.MasterNotFoundError)
_AUTH = (
    redis.AuthenticationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
    redis.exceptions.AuthorizationError,
)
_AUTH_PREFIXES = ("NOAUTH", "WRONGPASS", "NOPERM")


def _reason(exc: BaseException) -> tuple[ProblemKind, str]:
    cfg, down, data = ProblemKind.CONFIGURATION, ProblemKind.UNAVAILABLE, ProblemKind.DATA
    if isinstance(exc, _AUTH):
        return cfg, "auth"
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return cfg, "noperm"
    if isinstance(exc, _NO_MASTER):
        # redis-py folds "every sentinel refused our credentials" into "no master".
        return (cfg, "sentinel_auth") if "AuthenticationError" in str(exc) else (down, "no_master")
    if isinstance(exc, redis.ReadOnlyError):
        return down, "readonly"
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return down, "oom"
    if isinstance(exc, redis.BusyLoadingError):
        return down, "loading"
    if isinstance(exc, redis.exceptions.MasterDownError):
        return down, "master_down"
    if isinstance(exc, (redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError)):
        return down, "cluster_down"
    if isinstance(exc, (redis.TimeoutError, TimeoutError)):
        return down, "timeout"
    if isinstance(exc, (redis.ConnectionError, OSError)):
        return down, "connection"
    if isinstance(exc, redis.exceptions.InvalidResponse):
        return down, "protocol"
    if isinstance(exc, redis.ResponseError):
        text = str(exc)
        if text.startswith(_AUTH_PREFIXES):
            return cfg, "noperm" if text.startswith("NOPERM") else "auth"
        if text.startswith("WRONGTYPE"):
            return data, "wrongtype"
        return data, "error_reply"
    if isinstance(exc, redis.DataError):
        return data, "bad_value"
    if isinstance(exc, RedisClusterException):
        return down, "cluster"
    return down, "redis"


def classify(exc: BaseException) -> Problem:
    """The :class:`Problem` behind `exc` (any exception; unknown ones count as unavailable)."""
    kind, reason = _reason(exc)
    return Problem(kind, reason, scrub_text(f"{type(exc).__name__}: {exc}"))
