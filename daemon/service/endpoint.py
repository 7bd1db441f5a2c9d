"""The health endpoint's place in the service: start it, and move or stop it on a reload.

The server (:mod:`daemon.ops.health`) and the metrics registry (prometheus-client) are imported
when the endpoint first starts, so a daemon with ``[health] enabled = false`` loads neither.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from daemon.config.settings import HealthSettings, Settings
from daemon.logs import get_logger
from daemon.service.observe import Reporter

if TYPE_CHECKING:
    from daemon.ops.health import HealthServer
    from daemon.ops.metrics import Telemetry


def reserved_descriptors(settings: Settings, budgets: int) -> int:
    """Descriptors kept for the daemon's own work (pure): the interpreter and logs, the Redis
    pools (the service's client, the heartbeat and credential checks, one per budget) and two
    connections per upstream host."""
    from daemon.ops.health import BASE_RESERVE

    hosts = sum(len(m.base_urls) for m in settings.markets.enabled().values())
    return BASE_RESERVE + settings.redis.max_connections * (2 + budgets) + 2 * hosts


class HealthEndpoint:
    """Owns the :class:`HealthServer` while ``[health] enabled`` is true."""

    def __init__(
        self,
        reporter: Reporter,
        telemetry: Callable[[], Telemetry],
        settings: Callable[[], Settings],
        budgets: Callable[[], int],
    ) -> None:
        self.reporter = reporter
        # Builds the registry on first call (the service's, seeded with what it counted).
        self.telemetry = telemetry
        self.settings = settings
        self.budgets = budgets
        self.server: HealthServer | None = None
        self.port: int | None = None
        self.log = get_logger("symbold.health")

    async def start(self, health: HealthSettings) -> None:
        """Listen on `health`'s address (raises OSError when it cannot be bound)."""
        from daemon.ops.health import HealthServer, connection_cap, nofile_limit

        reserved = reserved_descriptors(self.settings(), self.budgets())
        server = HealthServer(
            host=health.host,
            port=health.port,
            verdicts=self.reporter.freshness,
            metrics=self.telemetry().render_async,
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
