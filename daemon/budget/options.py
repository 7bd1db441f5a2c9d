"""The [budget] options of one market, and the figures the budget's policies use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal

import msgspec
import redis

from daemon.budget.errors import BudgetValueError
from daemon.budget.limits import Limit, caps_for
from daemon.config.redis_target import resolve_redis_url
from daemon.config.settings import BudgetSettings, Loaded, Settings, load_settings
from daemon.redis.clients import ConnectionConfig

# Windows this short or shorter are written off when their counters may be missing spends
# (the Lua ACQUIRE has the same figure, iv <= 60000); longer ones (RAW_REQUESTS 5M,
# ORDERS 1D) are restored by observe().
BLOCK_MAX_MS: Final = 60_000
# Waiters wake at the window start plus up to this share of the interval (at most JITTER_MAX_S),
# so that processes blocked on one window do not all call at the same instant.
JITTER_SHARE: Final = 0.05
JITTER_MAX_S: Final = 0.5
# ban_until written when a 429/418 carries no usable Retry-After (seconds).
DEFAULT_BAN_FALLBACK: Final = 120.0
OFFSET_TTL_MS: Final = 86_400_000
# A clock offset larger than this is not stored (see record_server_time).
MAX_OFFSET_MS: Final = 86_400_000
# After a failed call, Redis is not tried again for this long (local decisions meanwhile), so
# an outage does not cost every acquire a connect timeout.
REDIS_RETRY_S: Final = 0.5
# Errors that mean "Redis cannot be used now" (the on_redis_down policy applies). Any other
# Redis error (a script bug, a wrong password) propagates: it is not an outage.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,  # maxmemory reached with noeviction: writes refused
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    OSError,
)

RedisDownPolicy = Literal["local", "fail_closed"]
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


class BudgetOptions(msgspec.Struct, frozen=True):
    """The [budget] settings resolved for one market (per-market overrides applied)."""

    safety_share: float = 0.9
    reserve_share: float = 0.1
    on_redis_down: RedisDownPolicy = "local"
    expected_processes: int = 8
    default_weight: int = 10
    max_wait: float = 60.0
    limits_refresh: float = 30.0
    limits: tuple[Limit, ...] = ()
    ban_fallback: float = DEFAULT_BAN_FALLBACK

    def __post_init__(self) -> None:
        caps_for(Limit("REQUEST_WEIGHT", "MINUTE", 1, 10**6), self.safety_share, self.reserve_share)
        if self.on_redis_down not in ("local", "fail_closed"):
            raise BudgetValueError(
                f"on_redis_down must be local or fail_closed: {self.on_redis_down!r}"
            )
        for name in ("expected_processes", "default_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BudgetValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("max_wait", "limits_refresh", "ban_fallback"):
            if not getattr(self, name) > 0:
                raise BudgetValueError(f"{name} must be > 0, got {getattr(self, name)!r}")

    @classmethod
    def from_settings(cls, settings: Settings, market: str) -> BudgetOptions:
        b: BudgetSettings = settings.budget
        over = getattr(b, market, None)
        configured = b.limits
        safety, reserve, processes = b.safety_share, b.reserve_share, b.expected_processes
        if over is not None:
            safety = over.safety_share if over.safety_share is not None else safety
            reserve = over.reserve_share if over.reserve_share is not None else reserve
            processes = over.expected_processes or processes
            configured = over.limits if over.limits is not None else configured
        return cls(
            safety_share=safety,
            reserve_share=reserve,
            on_redis_down=b.on_redis_down,
            expected_processes=processes,
            default_weight=b.default_weight,
            max_wait=b.max_wait,
            limits_refresh=b.limits_refresh,
            limits=tuple(
                Limit(lim.rate_limit_type, lim.interval, lim.interval_num, lim.limit)
                for lim in configured
            ),
            ban_fallback=settings.upstream.ban_fallback,
        )


def connection_for(loaded: Loaded | None) -> tuple[Loaded, ConnectionConfig]:
    """The settings (read now when not given) and the Redis connection the daemon uses."""
    if loaded is None:
        loaded = load_settings()
    url = resolve_redis_url(loaded.settings.redis.url, loaded.redis_url_origin, loaded.environ)
    return loaded, ConnectionConfig(url=url, settings=loaded.settings.redis)
