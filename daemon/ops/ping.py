"""``symbold ping``: can we reach Redis, what is it, and how far away is it."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster

from daemon.config.redis_url import format_address
from daemon.redaction import scrub_text
from daemon.redis.clients import ConnectionConfig
from daemon.redis.errors import RECOVERABLE, Problem, ProblemKind, classify
from daemon.redis.patches import AsyncSentinelRedis


@dataclass(frozen=True, slots=True)
class PingReport:
    """What one ping run found. `error_kind` is None on success.

    `role` is what a person reads: the server's replication role for standalone, "cluster
    <state>: N primaries, M replicas" for a cluster, "master at HOST:PORT (sentinel service
    NAME)" for sentinel. The structured fields say the same for machines.
    """

    redacted_url: str
    source: str
    version: str | None = None
    role: str | None = None
    server: str | None = None
    latencies_ms: tuple[float, ...] = field(default=())
    # "auth" when the problem is one of configuration, else "unreachable" (kept for --json).
    error_kind: str | None = None
    error: str | None = None
    # The classified problem (daemon.redis.errors); the exit code follows from its kind.
    problem: Problem | None = None
    mode: str = "standalone"
    # cluster: CLUSTER INFO cluster_state, and every node as "host:port primary|replica"
    cluster_state: str | None = None
    nodes: tuple[str, ...] = ()
    # sentinel: the primary the sentinels named
    primary: str | None = None

    @property
    def min_ms(self) -> float | None:
        return min(self.latencies_ms) if self.latencies_ms else None

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.latencies_ms) if self.latencies_ms else None


def describe_error(exc: BaseException, config: ConnectionConfig, problem: Problem) -> str:
    """One line for a person. redis-py's "no master" message embeds the repr of every
    sentinel client; say what it means instead."""
    if problem.reason in ("no_master", "sentinel_auth"):
        service = config.target.service_name
        tried = len(config.target.nodes)
        if problem.kind is ProblemKind.CONFIGURATION:
            return (
                f"MasterNotFoundError: the sentinels refused our credentials ({tried} tried; "
                "their own password goes in the URL's sentinel_password parameter)"
            )
        return (
            f"MasterNotFoundError: none of the {tried} sentinels named a healthy primary "
            f"for service {service!r}"
        )
    return problem.message


async def ping(config: ConnectionConfig, count: int = 5) -> PingReport:
    """PING `count` times after INFO; never raises for Redis errors.

    Cluster: INFO from one node, CLUSTER INFO and the node list, and each PING goes to every
    primary (so it also says that all of them answer). Sentinel: the sentinels are asked for
    the primary, then INFO and PINGs go to it.
    """
    base = PingReport(redacted_url=config.url.redacted, source=config.url.source, mode=config.mode)
    client = config.make_async(decode=True)
    extra: dict[str, Any] = {}
    try:
        if isinstance(client, RedisCluster):
            info, role, extra = await _cluster_facts(client)
            ping_kwargs: dict[str, Any] = {"target_nodes": RedisCluster.PRIMARIES}
        else:
            info = await client.info("server")
            repl = await client.info("replication")
            role = str(repl["role"]) if repl.get("role") is not None else None
            ping_kwargs = {}
            if isinstance(client, AsyncSentinelRedis):
                host, port = await client.connection_pool.get_master_address()  # type: ignore[attr-defined]
                extra["primary"] = format_address(str(host), int(port))
                service = config.target.service_name
                role = f"{role} at {extra['primary']} (sentinel service {service})"
        latencies: list[float] = []
        for _ in range(count):
            start = time.perf_counter()
            await client.ping(**ping_kwargs)
            latencies.append((time.perf_counter() - start) * 1000.0)
    except RECOVERABLE as exc:
        problem = classify(exc)
        return PingReport(
            redacted_url=base.redacted_url,
            source=base.source,
            mode=base.mode,
            error_kind="auth" if problem.kind is ProblemKind.CONFIGURATION else "unreachable",
            error=scrub_text(describe_error(exc, config, problem)),
            problem=problem,
        )
    finally:
        await client.aclose()
    version = info.get("valkey_version") or info.get("redis_version")
    server = "valkey" if "valkey_version" in info else "redis"
    return PingReport(
        redacted_url=base.redacted_url,
        source=base.source,
        version=str(version) if version is not None else None,
        role=role,
        server=server,
        latencies_ms=tuple(latencies),
        mode=base.mode,
        **extra,
    )


async def _cluster_facts(client: RedisCluster) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """INFO server of one node, a one-line role, and the cluster fields of the report, all as
    that node sees them (CLUSTER NODES lists replicas and failed nodes; the client's own
    table holds only the primaries it routes to)."""
    await client.initialize()
    node = client.get_default_node()
    info: dict[str, Any] = await client.info("server", target_nodes=node)
    cluster: dict[str, Any] = await client.cluster_info(target_nodes=node)
    state = str(cluster.get("cluster_state", "unknown"))
    table: dict[str, dict[str, Any]] = await client.cluster_nodes()
    counts = {"primary": 0, "replica": 0, "failed": 0}
    nodes: list[str] = []
    for address, fields in sorted(table.items()):
        flags = set(str(fields.get("flags", "")).split(","))
        kind = "primary" if "master" in flags else "replica"
        if flags & {"fail", "fail?"}:
            kind = f"{kind} (failing)"
            counts["failed"] += 1
        else:
            counts["primary" if "master" in flags else "replica"] += 1
        nodes.append(f"{address.split('@', 1)[0]} {kind}")
    role = f"cluster {state}: {counts['primary']} primaries, {counts['replica']} replicas"
    if counts["failed"]:
        role += f", {counts['failed']} failing"
    return info, role, {"cluster_state": state, "nodes": tuple(nodes)}
