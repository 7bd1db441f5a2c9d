"""Configuration resolved once: settings, the Redis target and its client configuration.

:func:`load_config` is the one entry point. The CLI, the daemon (and its SIGHUP reload), the
Celery app and tasks, the legacy ``daemon.redis_client`` and the readers call it (or take the
:class:`Config` it returns) instead of loading settings and resolving the URL themselves.

Order: settings from defaults, the TOML file, the environment, then CLI overrides
(:func:`~daemon.config.settings.load_settings`); the Redis URL from those settings (file,
``SYMBOLD_REDIS_URL``, flag, or the systemd credential), else ``REDIS_URL``, else
``CELERY_BROKER_URL``, else the default; then the URL combined with ``[redis] mode`` into a
:class:`~daemon.redis.clients.ConnectionConfig`, so a conflict is a :class:`ConfigError` here,
for every command, not a surprise at connect time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.config.redis_url import RedisURL, resolve_redis_url
from daemon.config.settings import ConfigError, Loaded, Settings, load_settings
from daemon.redaction import candidate_secrets

if TYPE_CHECKING:
    from daemon.redis.clients import ConnectionConfig


@dataclass(frozen=True, slots=True)
class Config:
    """Everything resolved from one load; frozen. `url.source` says where the URL came from
    (``file ...``, ``$SYMBOLD_REDIS_URL``, ``command line``, ``credential NAME``,
    ``$REDIS_URL``, ``$CELERY_BROKER_URL`` or ``default``)."""

    settings: Settings
    url: RedisURL
    connection: ConnectionConfig
    config_path: Path | None
    # The environment and overrides it was built from, so reload() repeats the same layers.
    environ: Mapping[str, str] = field(repr=False)
    overrides: Mapping[str, Any] = field(default_factory=dict, repr=False)
    redis_url_origin: str | None = None

    @property
    def url_source(self) -> str:
        return self.url.source

    @property
    def loaded(self) -> Loaded:
        """The older :class:`Loaded` view, for callers not yet moved to Config."""
        return Loaded(self.settings, self.config_path, self.environ, self.redis_url_origin)

    def reload(self) -> Config:
        """Load again: the file again, the environment and overrides as they were."""
        return load_config(self.config_path, environ=self.environ, overrides=self.overrides)

    def secrets(self) -> tuple[str, ...]:
        """Literals a log scrubber should mask (the Redis URL's passwords)."""
        return self.url.secrets()


def load_config(
    config_path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    use_default_path: bool = True,
) -> Config:
    """Load settings and resolve the Redis target, once. Raises :class:`ConfigError` (its
    message never holds a secret; its ``secrets`` attribute lists what in the rejected URL
    could be one, for a caller that goes on logging)."""
    loaded = load_settings(
        config_path, environ=environ, overrides=overrides, use_default_path=use_default_path
    )
    return config_from_loaded(loaded, overrides=overrides)


def config_from_loaded(loaded: Loaded, *, overrides: Mapping[str, Any] | None = None) -> Config:
    """Resolve the Redis target of settings loaded already (see :func:`load_config`)."""
    from daemon.redis.clients import ConnectionConfig

    try:
        url = resolve_redis_url(loaded.settings.redis.url, loaded.redis_url_origin, loaded.environ)
        connection = ConnectionConfig(url=url, settings=loaded.settings.redis)
    except ConfigError as err:
        raw = [loaded.settings.redis.url]
        raw += [loaded.environ.get(name, "") for name in ("REDIS_URL", "CELERY_BROKER_URL")]
        err.secrets = tuple(s for text in raw for s in candidate_secrets(text))
        raise
    return Config(
        settings=loaded.settings,
        url=url,
        connection=connection,
        config_path=loaded.config_path,
        environ=loaded.environ,
        overrides=dict(overrides or {}),
        redis_url_origin=loaded.redis_url_origin,
    )
