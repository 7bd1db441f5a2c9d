"""Typed, frozen settings, loaded once and passed down.

Layers, each overriding the one before: built-in defaults, the TOML file, the environment, CLI
flags. Validation happens once, in :func:`load_settings`; anything wrong raises
:class:`ConfigError` naming the key (and the file or variable it came from), which the CLI turns
into exit code 78. Code below the CLI receives a :class:`Settings` and never reads the
environment itself.
"""

# No `from __future__ import annotations` here: msgspec reads these classes' annotations on
# the first load, and string annotations would each be evaluated then (~5 ms of every command).

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

DEFAULT_CONFIG_PATH = Path("/etc/symbold/config.toml")
DEFAULT_REDIS_URL = "redis://localhost:6379/0"

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
# Key names and the prefix become part of Redis key names; control characters or spaces there
# would only ever be a typo.
KeyName = Annotated[str, msgspec.Meta(pattern=r"^[^\s\x00-\x1f\x7f]+$", max_length=200)]

MarketName = Literal["spot", "usdm", "coinm"]
MARKETS: tuple[MarketName, ...] = ("spot", "usdm", "coinm")


class ConfigError(Exception):
    """A setting is missing, unknown, of the wrong type or out of range.

    The message names the key and where the value came from; it never contains a secret.
    `secrets` lists what in a rejected Redis URL could be a password (for the log scrubber).
    """

    secrets: tuple[str, ...] = ()


class _Frozen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class RedisSettings(_Frozen, frozen=True):
    # Empty means "not set here": the credential, REDIS_URL, CELERY_BROKER_URL, the default.
    url: str = ""
    # Name of a systemd credential (LoadCredential=) holding the URL, read from
    # $CREDENTIALS_DIRECTORY; used when no url is set in the file, SYMBOLD_REDIS_URL or a flag.
    credential: KeyName = "redis_url"
    # Absolute path of a file holding the URL, used when neither a url nor the credential is
    # there: how the operator's CLI finds the Redis of the service's credential.
    url_file: Annotated[str, msgspec.Meta(pattern=r"^(/.*)?$")] = ""
    key_prefix: KeyName = "symbold"
    client_name: KeyName = "symbold"
    connect_timeout: PositiveFloat = 5.0
    socket_timeout: PositiveFloat = 5.0
    health_check_interval: Annotated[int, msgspec.Meta(ge=0)] = 30
    max_connections: PositiveInt = 16
    pool_timeout: PositiveFloat = 5.0
    retry_attempts: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3
    retry_backoff_base: PositiveFloat = 0.05
    retry_backoff_cap: PositiveFloat = 2.0
    # standalone, cluster (Redis Cluster) or sentinel. A redis+cluster://, sentinel:// or
    # redis+sentinel:// URL sets the mode itself; this turns a redis:// URL into a cluster seed
    # or, with `sentinels`, a sentinel setup.
    mode: Literal["standalone", "cluster", "sentinel"] = "standalone"
    # Sentinel addresses ("host:port") for mode = "sentinel" with a redis:// URL, which then
    # gives only the primary's password and db. Empty: the URL's host:port is the sentinel.
    sentinels: tuple[Annotated[str, msgspec.Meta(min_length=1)], ...] = ()
    # The sentinels' name for the primary (Celery's master_name), unless the URL names it.
    service_name: str = ""
    # What the daemon does when Redis may evict snapshot keys (maxmemory-policy allkeys-* or
    # volatile-*): "warn" logs an error and carries on, "refuse" does not write at all.
    eviction: Literal["warn", "refuse"] = "warn"


LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class LogSettings(_Frozen, frozen=True):
    level: LogLevel = "info"
    format: Literal["auto", "console", "json", "journald"] = "auto"
    # Other libraries' loggers (redis, asyncio, aiohttp, celery): never below `level`, and not
    # below this either, so debugging symbold does not bring redis-py's connection chatter.
    libraries: LogLevel = "info"


class UpstreamSettings(_Frozen, frozen=True):
    timeout_total: PositiveFloat = 30.0
    timeout_connect: PositiveFloat = 5.0
    timeout_read: PositiveFloat = 15.0
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 64 * 1024 * 1024
    user_agent: str = "symbold/0.1 (+https://github.com/symbold)"
    # Waiting this long at most between attempts after failures (seconds).
    backoff_base: PositiveFloat = 5.0
    backoff_ceiling: PositiveFloat = 600.0
    # Used when a 429/418 carries no Retry-After.
    ban_fallback: PositiveFloat = 120.0


class KeyOverrides(_Frozen, frozen=True):
    """Full Redis key names that replace the derived defaults (for legacy deployments)."""

    symbols: KeyName | None = None
    last_good: KeyName | None = None
    refreshed_at: KeyName | None = None
    by_symbol: KeyName | None = None
    meta: KeyName | None = None
    metrics: KeyName | None = None
    changes: KeyName | None = None
    events: KeyName | None = None
    ban_until: KeyName | None = None
    daemon: KeyName | None = None
    leader: KeyName | None = None
    refresh_request: KeyName | None = None


class MarketSettings(_Frozen, frozen=True):
    enabled: bool = False
    base_urls: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)] = ("https://api.binance.com",)
    path: str = "/api/v3/exchangeInfo"
    interval: Annotated[float, msgspec.Meta(ge=1)] = 300.0
    # Fraction of the interval added or removed at random, so replicas do not move in step.
    jitter: Fraction = 0.1
    cache_ttl: Annotated[int, msgspec.Meta(ge=1)] = 3600
    list_statuses: tuple[str, ...] = ("TRADING",)
    quote_priority: tuple[str, ...] = ("USDT", "FDUSD", "USDC", "BTC", "ETH", "BNB")
    pinned: tuple[str, ...] = ()
    keys: KeyOverrides = msgspec.field(default_factory=KeyOverrides)


def _default_markets() -> dict[str, MarketSettings]:
    return {
        "spot": MarketSettings(
            enabled=True,
            base_urls=(
                "https://api.binance.com",
                "https://api1.binance.com",
                "https://api2.binance.com",
                "https://api3.binance.com",
                "https://api4.binance.com",
                "https://data-api.binance.vision",
            ),
            path="/api/v3/exchangeInfo",
        ),
        "usdm": MarketSettings(
            base_urls=("https://fapi.binance.com",),
            path="/fapi/v1/exchangeInfo",
        ),
        "coinm": MarketSettings(
            base_urls=("https://dapi.binance.com",),
            path="/dapi/v1/exchangeInfo",
            quote_priority=("USD",),
        ),
    }


class MarketsSettings(_Frozen, frozen=True):
    spot: MarketSettings
    usdm: MarketSettings
    coinm: MarketSettings

    def enabled(self) -> dict[MarketName, MarketSettings]:
        """The enabled markets, in the fixed order spot, usdm, coinm."""
        return {name: m for name in MARKETS if (m := getattr(self, name)).enabled}

    def get(self, name: MarketName) -> MarketSettings:
        market: MarketSettings = getattr(self, name)
        return market


class GuardSettings(_Frozen, frozen=True):
    # A reply that lost more than this fraction of the last good symbol count is held back.
    max_shrink: Fraction = 0.2
    # ... until this many identical shrunk replies in a row have been seen.
    confirm_shrink: PositiveInt = 3


class SchedulerSettings(_Frozen, frozen=True):
    # A burst of SIGHUPs collapses into one refresh; two forced refreshes are at least this apart.
    min_refresh_gap: NonNegFloat = 5.0
    # SIGTERM lets the current cycle finish for at most this long, then abandons it.
    shutdown_timeout: PositiveFloat = 10.0
    # Entries kept in each market's changes stream (approximate, XADD MAXLEN ~).
    changes_maxlen: PositiveInt = 1000
    # Between refreshes, check this often that Redis still holds the cache (republish if not).
    check_interval: Annotated[float, msgspec.Meta(ge=0.05)] = 5.0


class LeaseSettings(_Frozen, frozen=True):
    # Several daemons on one Redis: one leads each market, the others stand by.
    enabled: bool = True
    # Seconds a leader's lease lasts without renewal; a dead leader is replaced within
    # ttl + ttl/3. The leader renews every ttl/3.
    ttl: Annotated[float, msgspec.Meta(ge=0.3)] = 15.0


class HealthSettings(_Frozen, frozen=True):
    # The HTTP endpoint (/healthz, /metrics) is off unless asked for.
    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9469
    # A market whose last accepted snapshot is older than this is stale (seconds).
    max_age: PositiveFloat = 900.0


class ServiceSettings(_Frozen, frozen=True):
    # `symbold run` tells systemd READY=1 once every market's snapshot is fresh (published, or
    # found fresh in Redis), or after this many seconds with a degraded STATUS=. 0: at once.
    start_timeout: NonNegFloat = 30.0


class CelerySettings(_Frozen, frozen=True):
    # Enqueue legacy Celery tasks on events (needs the `celery` extra).
    enabled: bool = False
    # Empty: the resolved Redis URL, so a legacy CELERY_BROKER_URL keeps working.
    broker_url: str = ""
    # Queue the tasks are sent to.
    queue: KeyName = "celery"
    # Task name called with the diff (market, version, added, removed, status_changed,
    # filters_changed) when a snapshot changes; empty: none.
    on_change: str = ""
    # Task name called with market, error, stale_age when a refresh fails; empty: none.
    on_failure: str = ""
    # Seconds one send may take before it is given up (the broker may hang).
    send_timeout: PositiveFloat = 5.0
    # Sends waiting for the broker at most; more are dropped and counted.
    max_pending: PositiveInt = 100


class BudgetLimitSettings(_Frozen, frozen=True):
    """One explicit limit, in Binance's terms; replaces the published one of the same type,
    interval and interval_num (or adds it)."""

    rate_limit_type: Literal["REQUEST_WEIGHT", "RAW_REQUESTS", "ORDERS"]
    interval: Literal["SECOND", "MINUTE", "HOUR", "DAY"]
    limit: PositiveInt
    interval_num: PositiveInt = 1


class BudgetMarketOverrides(_Frozen, frozen=True):
    """Per-market replacements of [budget] keys (unset: the [budget] value)."""

    safety_share: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    reserve_share: Annotated[float, msgspec.Meta(ge=0, lt=1)] | None = None
    expected_processes: PositiveInt | None = None
    limits: tuple[BudgetLimitSettings, ...] | None = None


class BudgetSettings(_Frozen, frozen=True):
    # Share of each published limit the budget hands out (the rest absorbs what it cannot see).
    safety_share: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.9
    # Share of that kept for priority="high" callers (orders before market data).
    reserve_share: Annotated[float, msgspec.Meta(ge=0, lt=1)] = 0.1
    # Redis unreachable: "local" (a per-process limiter) or "fail_closed" (raise).
    on_redis_down: Literal["local", "fail_closed"] = "local"
    # Processes sharing the IP; the local fallback allows limit / expected_processes each.
    expected_processes: PositiveInt = 8
    # Weight charged for an endpoint missing from the weight table.
    default_weight: PositiveInt = 10
    # The longest an acquire waits for a window to roll (seconds).
    max_wait: PositiveFloat = 60.0
    # Seconds between rereads of the published rateLimits from the meta hash.
    limits_refresh: PositiveFloat = 30.0
    # Charge the daemon's own exchangeInfo fetches (symbold run, refresh, the Celery task) to
    # the budget; false: they are not charged (they still honour a stored 429/418 deadline).
    own_fetches: bool = True
    # Explicit limits replacing (or adding to) the published ones.
    limits: tuple[BudgetLimitSettings, ...] = ()
    spot: BudgetMarketOverrides = msgspec.field(default_factory=BudgetMarketOverrides)
    usdm: BudgetMarketOverrides = msgspec.field(default_factory=BudgetMarketOverrides)
    coinm: BudgetMarketOverrides = msgspec.field(default_factory=BudgetMarketOverrides)


class Settings(_Frozen, frozen=True):
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    upstream: UpstreamSettings = msgspec.field(default_factory=UpstreamSettings)
    guards: GuardSettings = msgspec.field(default_factory=GuardSettings)
    scheduler: SchedulerSettings = msgspec.field(default_factory=SchedulerSettings)
    health: HealthSettings = msgspec.field(default_factory=HealthSettings)
    service: ServiceSettings = msgspec.field(default_factory=ServiceSettings)
    lease: LeaseSettings = msgspec.field(default_factory=LeaseSettings)
    celery: CelerySettings = msgspec.field(default_factory=CelerySettings)
    budget: BudgetSettings = msgspec.field(default_factory=BudgetSettings)
    markets: MarketsSettings = msgspec.field(
        default_factory=lambda: MarketsSettings(**_default_markets())
    )


@dataclass(frozen=True, slots=True)
class Loaded:
    """Settings plus where they came from, for logging and `config check`."""

    settings: Settings
    config_path: Path | None
    # The environment the URL resolution saw; kept so it does not reread os.environ later.
    # Never in repr: it may hold REDIS_URL with a password.
    environ: Mapping[str, str] = field(repr=False)
    # Which layer set redis.url explicitly ("file /etc/..", "env SYMBOLD_REDIS_URL", "flag ..").
    redis_url_origin: str | None


# Environment overrides for the keys people change most, each with the dotted key it sets.
ENV_OVERRIDES: dict[str, str] = {
    "SYMBOLD_REDIS_URL": "redis.url",
    "SYMBOLD_REDIS_URL_FILE": "redis.url_file",
    "SYMBOLD_KEY_PREFIX": "redis.key_prefix",
    "SYMBOLD_LOG_LEVEL": "log.level",
    "SYMBOLD_LOG_FORMAT": "log.format",
    "SYMBOLD_SPOT_ENABLED": "markets.spot.enabled",
    "SYMBOLD_USDM_ENABLED": "markets.usdm.enabled",
    "SYMBOLD_COINM_ENABLED": "markets.coinm.enabled",
    "SYMBOLD_SPOT_BASE_URLS": "markets.spot.base_urls",
    "SYMBOLD_USDM_BASE_URLS": "markets.usdm.base_urls",
    "SYMBOLD_COINM_BASE_URLS": "markets.coinm.base_urls",
    "SYMBOLD_SPOT_INTERVAL": "markets.spot.interval",
    "SYMBOLD_USDM_INTERVAL": "markets.usdm.interval",
    "SYMBOLD_COINM_INTERVAL": "markets.coinm.interval",
    "SYMBOLD_CELERY_QUEUE": "celery.queue",
}

_SECRET_KEYS = re.compile(r"(url|password|token|secret)$")


def _defaults_tree() -> dict[str, Any]:
    tree: dict[str, Any] = msgspec.to_builtins(Settings())
    return tree


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part} is not a table")
        node = child
    node[leaf] = value


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_env_value(name: str, dotted: str, raw: str) -> Any:
    """Env values are text; turn them into what the key's type wants."""
    leaf = dotted.rsplit(".", 1)[-1]
    if leaf in ("enabled",):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{dotted} (from ${name}): expected a boolean, got {raw!r}")
    if leaf in ("base_urls",):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if leaf in ("interval",):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{dotted} (from ${name}): expected a number, got {raw!r}") from None
    return raw


def _msgspec_path(err: msgspec.ValidationError) -> tuple[str, str]:
    """Split msgspec's "... - at `$.a.b`" into (dotted key, message)."""
    text = str(err)
    match = re.search(r" - at `\$\.?([^`]*)`$", text)
    if not match:
        return "", text
    key = re.sub(r"\[(\d+)\]", r"[\1]", match.group(1))
    return key, text[: match.start()]


def _convert(tree: dict[str, Any], origin_of: dict[str, str]) -> Settings:
    try:
        return msgspec.convert(tree, Settings)
    except msgspec.ValidationError as err:
        key, message = _msgspec_path(err)
        unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
        if unknown:
            key = f"{key}.{unknown.group(1)}" if key else unknown.group(1)
            message = "unknown key"
        origin = _origin_for(key, origin_of)
        where = f" (in {origin})" if origin else ""
        raise ConfigError(f"{key or '<top level>'}{where}: {message}") from None


def _origin_for(key: str, origin_of: Mapping[str, str]) -> str:
    base = re.sub(r"\[\d+\]$", "", key)
    while base:
        if base in origin_of:
            return origin_of[base]
        base = base.rpartition(".")[0]
    return origin_of.get("", "")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def load_settings(
    config_path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    use_default_path: bool = True,
) -> Loaded:
    """Build the one Settings object: defaults, then TOML, then environment, then `overrides`.

    `config_path` None means ``$SYMBOLD_CONFIG``, else `/etc/symbold/config.toml` if it exists
    (both only when `use_default_path`), else no file. `overrides` maps dotted keys
    (``"redis.url"``) to values from CLI flags. When no layer sets ``redis.url``, it is read
    from the systemd credential, else from ``redis.url_file`` (:mod:`daemon.config.sources`).
    Raises ConfigError naming the offending key and its source.
    """
    from daemon.config import sources

    env = dict(os.environ if environ is None else environ)
    tree = _defaults_tree()
    origin_of: dict[str, str] = {}
    redis_url_origin: str | None = None

    config_path, chosen_by = sources.config_file(
        config_path, env, use_default_path=use_default_path
    )
    if config_path is not None:
        try:
            file_tree = sources.read_toml(config_path)
        except ConfigError as err:
            if chosen_by != f"${sources.CONFIG_ENV}":
                raise
            raise ConfigError(f"{err} (named by {chosen_by})") from None
        for dotted in _flatten(file_tree):
            origin_of[dotted] = f"file {config_path}"
        origin_of.setdefault("", f"file {config_path}")
        if "url" in file_tree.get("redis", {}) and file_tree["redis"]["url"]:
            redis_url_origin = f"file {config_path}"
        tree = _merge(tree, file_tree)

    for name, dotted in ENV_OVERRIDES.items():
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        _set_dotted(tree, dotted, _parse_env_value(name, dotted, raw))
        origin_of[dotted] = f"${name}"
        if dotted == "redis.url":
            redis_url_origin = f"${name}"

    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        _set_dotted(tree, dotted, value)
        origin_of[dotted] = "command line"
        if dotted == "redis.url":
            redis_url_origin = "command line"

    settings = _convert(tree, origin_of)
    if redis_url_origin is None:
        redis = settings.redis
        url = sources.read_credential(env, redis.credential)
        if url is not None:
            redis_url_origin = f"credential {redis.credential}"
        elif redis.url_file:
            url = sources.read_url_file(redis.url_file, _origin_for("redis.url_file", origin_of))
            redis_url_origin = f"url_file {redis.url_file}"
        if url is not None:
            settings = msgspec.structs.replace(
                settings, redis=msgspec.structs.replace(redis, url=url)
            )
    return Loaded(
        settings=settings,
        config_path=config_path,
        environ=env,
        redis_url_origin=redis_url_origin,
    )


def redacted_tree(settings: Settings, redact_url: Callable[[str], str]) -> dict[str, Any]:
    """The settings as plain data with every URL and secret-looking value made safe to print."""
    tree = msgspec.to_builtins(settings)

    def walk(node: Any, key: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if isinstance(node, str) and (_SECRET_KEYS.search(key) or key == "base_urls"):
            return redact_url(node) if node else node
        return node

    result: dict[str, Any] = walk(tree, "")
    return result
