"""``symbold ping``: can we reach Redis, what is it, and how far away is it."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import redis
import redis.asyncio

from daemon.connections import ConnectionConfig
from daemon.logs import scrub_text


@dataclass(frozen=True, slots=True)
class PingReport:
    """What one ping run found. `error_kind` is None on success."""

    redacted_url: str
    source: str
    version: str | None = None
    role: str | None = None
    server: str | None = None
    latencies_ms: tuple[float, ...] = field(default=())
    error_kind: str | None = None  # "unreachable" | "auth"
    error: str | None = None

    @property
    def min_ms(self) -> float | None:
        return min(self.latencies_ms) if self.latencies_ms else None

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.latencies_ms) if self.latencies_ms else None


AUTH_ERRORS = (redis.AuthenticationError, redis.exceptions.AuthenticationWrongNumberOfArgsError)


def classify(exc: BaseException) -> str:
    """'auth' for credential problems (a config error), 'unreachable' for everything else."""
    if isinstance(exc, AUTH_ERRORS):
        return "auth"
    if isinstance(exc, redis.ResponseError):
        text = str(exc)
        if text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            return "auth"
    return "unreachable"


async def ping(config: ConnectionConfig, count: int = 5) -> PingReport:
    """PING `count` times on one connection after INFO; never raises for Redis errors."""
    base = PingReport(redacted_url=config.url.redacted, source=config.url.source)
    client = config.make_async(decode=True)
    try:
        info = await client.info("server")
        repl = await client.info("replication")
        latencies: list[float] = []
        for _ in range(count):
            start = time.perf_counter()
            await client.ping()
            latencies.append((time.perf_counter() - start) * 1000.0)
    except (redis.RedisError, OSError) as exc:
        return PingReport(
            redacted_url=base.redacted_url,
            source=base.source,
            error_kind=classify(exc),
            error=scrub_text(f"{type(exc).__name__}: {exc}"),
        )
    finally:
        await client.aclose()
    version = info.get("valkey_version") or info.get("redis_version")
    server = "valkey" if "valkey_version" in info else "redis"
    return PingReport(
        redacted_url=base.redacted_url,
        source=base.source,
        version=str(version) if version is not None else None,
        role=str(repl.get("role")) if repl.get("role") is not None else None,
        server=server,
        latencies_ms=tuple(latencies),
    )
