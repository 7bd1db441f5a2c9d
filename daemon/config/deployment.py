"""Where a client connects: a parsed :class:`~daemon.config.redis_url.RedisURL` combined with
``[redis] mode``, ``sentinels`` and ``service_name``. Pure: no I/O, no logging."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from daemon.config.redis_url import (
    DEFAULT_PORT,
    DEFAULT_SENTINEL_PORT,
    Mode,
    RedisURL,
    format_address,
    parse_address,
)
from daemon.config.settings import ConfigError


class Deployment(msgspec.Struct, frozen=True):
    """Where the client connects: the URL combined with ``[redis] mode``, ``sentinels`` and
    ``service_name`` (see :func:`deployment`). Credentials, db and TLS stay on the URL."""

    mode: Mode
    # standalone: the one server (empty for unix://); cluster: startup nodes; sentinel: the
    # sentinels.
    nodes: tuple[tuple[str, int], ...]
    service_name: str | None = None

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"mode": self.mode}
        if self.mode != "standalone":
            out["nodes"] = [format_address(host, port) for host, port in self.nodes]
        if self.service_name:
            out["service_name"] = self.service_name
        return out


def deployment(
    url: RedisURL, mode: Mode, sentinels: Sequence[str], service_name: str
) -> Deployment:
    """Combine the URL with ``[redis] mode``, ``sentinels`` and ``service_name``.

    - A ``redis+cluster://`` or sentinel URL decides the mode; ``mode`` must then be
      "standalone" (the default) or the same.
    - ``mode = "cluster"`` with a ``redis://``/``rediss://`` URL: its host:port is the startup
      node (redis-py discovers the rest).
    - ``mode = "sentinel"`` with a ``redis://`` URL: the sentinels are ``sentinels`` (the URL
      gives only the primary's credentials and db), or, if that is empty, the URL's host:port
      (as kombu does with a single sentinel).
    - The service name: from the URL, else ``service_name``; both given and different is an
      error, none at all too.
    Raises ConfigError, naming the URL's source and the setting.
    """
    where = f"redis URL from {url.source}"
    if url.mode != "standalone" and mode not in ("standalone", url.mode):
        raise ConfigError(
            f"redis.mode is {mode!r} but the {where} is a {url.scheme}:// ({url.mode}) URL"
        )
    effective: Mode = url.mode if url.mode != "standalone" else mode
    if effective != "standalone" and url.scheme == "unix":
        raise ConfigError(f"redis.mode = {effective!r} needs a host:port URL, not unix://")
    if effective != "sentinel" and sentinels:
        raise ConfigError(f"redis.sentinels is set but the mode is {effective!r}, not sentinel")
    if effective != "sentinel" and service_name:
        raise ConfigError(f"redis.service_name is set but the mode is {effective!r}, not sentinel")
    if effective == "standalone":
        nodes: tuple[tuple[str, int], ...] = ()
        if url.scheme != "unix":
            nodes = ((url.host, url.port or DEFAULT_PORT),)
        return Deployment("standalone", nodes)
    if effective == "cluster":
        if url.db != 0:
            raise ConfigError(f"{where}: a Redis Cluster has only database 0, not {url.db}")
        nodes = url.nodes or ((url.host, url.port or DEFAULT_PORT),)
        return Deployment("cluster", nodes)
    if url.tls:
        raise ConfigError(f"{where}: TLS (rediss://) is not supported with sentinels yet")
    if url.mode == "sentinel":
        if sentinels:
            raise ConfigError(f"redis.sentinels is set but the {where} names the sentinels already")
        nodes = url.nodes
    elif sentinels:
        nodes = tuple(
            parse_address(text, DEFAULT_SENTINEL_PORT, "redis.sentinels") for text in sentinels
        )
    else:
        nodes = ((url.host, url.port or DEFAULT_SENTINEL_PORT),)
    if url.service_name and service_name and url.service_name != service_name:
        raise ConfigError(
            f"redis.service_name is {service_name!r} but the {where} names {url.service_name!r}"
        )
    name = url.service_name or service_name
    if not name:
        raise ConfigError(
            f"redis: sentinel mode needs the primary's service name: set redis.service_name "
            f"(Celery's master_name) or add ?master_name=NAME to the {where}"
        )
    return Deployment("sentinel", nodes, name)
