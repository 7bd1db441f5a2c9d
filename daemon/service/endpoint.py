"""The health endpoint's place in the service: start it, and move or stop it on a reload."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from daemon.config.settings import HealthSettings, Settings
from daemon.logs import get_logger
from daemon.ops.health import BASE_RESERVE, HealthServer, connection_cap, nofile_limit
from daemon.ops.metrics import Telemetry
from daemon.service.observe import Reporter


def reserved_descriptors(settings: Settings, budgets: int) -> int:
    """Descriptors kept for the daemon's own work (pure): the interpreter and logs, the Redis
    pools (the service's client, the heartbeat and credential checks, one per budget) and two
    connections per upstream host."""
    hosts = sum(len(m.base_urls) for m in settings.markets.enabled().values())
    return BASE_RESERVE + settings.redis.max_connections * (2 + budgets) + 2 * hosts


class HealthEndpoint:
    """Owns the :class:`HealthServer` while ``[health] enabled`` is true."""

    def __init__(
        self,
        reporter: Reporter,
        telemetry: Telemetry,
        settings: Callable[[], Settings],
        budgets: Callable[[], int],
    ) -> None:
        self.reporter = reporter
        self.telemetry = telemetry
        self.settings = settings
        self.budgets = budgets
        self.server: HealthServer | None = None
        self.port: int | None = None
        self.log = get_logger("symbold.health")

    async def start(self, health: HealthSettings) -> None:
        """Listen on `health`'s address (raises OSError when it cannot be bound)."""
        reserved = reserved_descriptors(self.settings(), self.budgets())
        server = HealthServer(
            host=health.host,
            port=health.port,
            verdicts=self.reporter.freshness,
            metrics=self.telemetry.render_async,
            max_connections=connection_cap(nofile_limit(), reserved),
        )
        self.port = await server.start()
        self.server = server
        self.log.info(
            "health.listening",
            host=health.host,
            port=self.port,
            max_connections=server.max_connections,
        )

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
            self.port = None

    async def apply(self, old: HealthSettings, new: HealthSettings) -> None:
        """Start, stop or move the endpoint for a reloaded [health] (`max_age` needs nothing:
        every request reads it). A new address that cannot be bound is logged at error and the
        old one is served again."""
        moved = (old.host, old.port) != (new.host, new.port)
        if self.server is not None and (not new.enabled or moved):
            await self.stop()
            self.log.info("health.stopped", host=old.host, port=old.port)
        if new.enabled and self.server is None:
            try:
                await self.start(new)
            except OSError as exc:
                self.log.error("health.bind_failed", host=new.host, port=new.port, error=str(exc))
                if old.enabled and moved:
                    with contextlib.suppress(OSError):
                        await self.start(old)
