"""Every Redis key name symbold reads or writes, in one place.

Defaults are ``<prefix>:{<market>}:<name>``; the braces are a Redis Cluster hash tag so all of
one market's keys live in one slot and a snapshot can be written in one MULTI. Each name can be
replaced whole per market (``[markets.spot.keys]``), so a deployment can keep legacy key names.
Key names never contain a symbol: symbols are hash fields, not key parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.config.settings import KeyOverrides, MarketName, Settings

KEY_NAMES = (
    "symbols",
    "last_good",
    "refreshed_at",
    "by_symbol",
    "meta",
    "metrics",
    "changes",
    "events",
    "ban_until",
    "daemon",
    "leader",
    "refresh_request",
)

# Fields of the metrics hash; exact counters (see snapshot writer for why they are idempotent).
METRIC_FIELDS = ("refresh_success", "refresh_error", "refresh_rejected", "fallback_used")


@dataclass(frozen=True, slots=True)
class MarketKeys:
    """The key names of one market. `events` is a pub/sub channel name, not a key."""

    market: str
    symbols: str
    last_good: str
    refreshed_at: str
    by_symbol: str
    meta: str
    metrics: str
    changes: str
    events: str
    ban_until: str
    # Heartbeat of the daemon that refreshes this market (expires when it stops beating).
    daemon: str
    # Lease naming the daemon that leads this market among replicas.
    leader: str
    # Set by a follower's SIGHUP; the leader takes it and refreshes.
    refresh_request: str

    def all_keys(self) -> tuple[str, ...]:
        """Every real key (not the channel), for cleanup and cluster-slot checks."""
        return (
            self.symbols,
            self.last_good,
            self.refreshed_at,
            self.by_symbol,
            self.meta,
            self.metrics,
            self.changes,
            self.ban_until,
            self.daemon,
            self.leader,
            self.refresh_request,
        )


def market_keys(
    market: str, prefix: str = "symbold", overrides: KeyOverrides | None = None
) -> MarketKeys:
    """Key names for `market`, defaults derived from `prefix`, replaced by `overrides`."""
    names: dict[str, str] = {}
    for name in KEY_NAMES:
        override = getattr(overrides, name) if overrides is not None else None
        names[name] = override or f"{prefix}:{{{market}}}:{name}"
    return MarketKeys(market=market, **names)


def keys_for(settings: Settings, market: MarketName) -> MarketKeys:
    """Key names for `market` under these settings."""
    return market_keys(market, settings.redis.key_prefix, settings.markets.get(market).keys)
