"""The legacy Redis module, kept import-compatible: only the package name changed.

Old code did ``from <app>.redis_client import get_redis_sync, write_json_sync, ...``; it now
imports the same names from ``daemon.redis_client``. Behaviour is the legacy one where it was
right and fixed where it was not:

- the URL comes from ``REDIS_URL``, else ``CELERY_BROKER_URL``, else
  ``redis://localhost:6379/0`` (a ``[redis] url`` in /etc/symbold/config.toml or
  ``SYMBOLD_REDIS_URL`` goes first), and responses are decoded as UTF-8;
- the log shows where the URL came from and its host, never its password;
- :func:`get_redis_sync` is really thread-safe and fork-safe; :func:`get_redis_async` returns the
  client of the *running* loop, so it works across ``asyncio.run`` calls;
- ``write_json*`` log and return False on error, ``read_json*`` warn and return None on error or
  a missing key, ``incr*`` return the new value or None on error; none of them raises for a
  Redis or encoding failure.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, TypeVar, cast

import msgspec
import redis
import redis.asyncio

from daemon.config.loader import Config, config_from_loaded, load_config
from daemon.config.settings import Loaded
from daemon.contract import keys as _keys
from daemon.redaction import scrub_text
from daemon.redis.clients import AsyncClients, ConnectionConfig, SyncClient
from daemon.redis.errors import RECOVERABLE

# A cache write fails on Redis trouble or on a value that cannot be encoded.
_SEND_ERRORS: tuple[type[BaseException], ...] = (*RECOVERABLE, TypeError, msgspec.EncodeError)

__all__ = [
    "LAST_GOOD_KEY",
    "METRICS_KEY",
    "REFRESHED_AT_KEY",
    "SYMBOLS_KEY",
    "configure",
    "get_redis_async",
    "get_redis_sync",
    "incr",
    "incr_sync",
    "last_good_key",
    "metrics_key",
    "read_json",
    "read_json_sync",
    "refreshed_at_key",
    "reset",
    "symbols_key",
    "write_json",
    "write_json_sync",
]

# A library inside the bot's processes: stdlib logging, silent unless the application
# configures handlers (the NullHandler keeps Python's last-resort handler quiet).
logging.getLogger("symbold").addHandler(logging.NullHandler())
log = logging.getLogger("symbold.redis_client")

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

_state_lock = threading.Lock()
_config: Config | None = None
# The module's client holders, built on first use: one SyncClient, one AsyncClients.
_holders: dict[type[SyncClient | AsyncClients], SyncClient | AsyncClients] = {}
_Holder = TypeVar("_Holder", SyncClient, AsyncClients)


def configure(config: Config | Loaded | None = None) -> None:
    """Use this configuration (from :func:`daemon.config.load_config`; older callers pass
    settings from ``load_settings``) for the module's clients (default: load it on first use).

    The daemon calls this once at start; legacy code never has to.
    """
    global _config
    with _state_lock:
        _config = _pending(config)
        _holders.clear()


def reset() -> None:
    """Forget the clients and settings (tests; a process that changed its environment)."""
    with _state_lock:
        sync = _holders.get(SyncClient)
    if isinstance(sync, SyncClient):
        sync.close()
    configure(None)


# Settings passed by an older caller are resolved on first use, as a Config would be.
_loaded: Loaded | None = None


def _pending(config: Config | Loaded | None) -> Config | None:
    global _loaded
    _loaded = config if isinstance(config, Loaded) else None
    return config if isinstance(config, Config) else None


def _current() -> Config:
    """The configuration, loaded (once) on first use."""
    global _config
    config = _config
    if config is None:
        config = config_from_loaded(_loaded) if _loaded is not None else load_config()
        _config = config
    return config


def _connection_config() -> ConnectionConfig:
    config = _current()
    log.info("redis.configured", extra=config.url.describe())
    return config.connection


def _holder(kind: type[_Holder]) -> _Holder:
    """The module's `kind` holder, built once (checked again under the lock, so two threads
    racing on first use share one)."""
    holder = _holders.get(kind)
    if holder is None:
        with _state_lock:
            holder = _holders.get(kind)
            if holder is None:
                holder = _holders[kind] = kind(_connection_config(), decode=True)
    return cast(_Holder, holder)


def get_redis_sync() -> redis.Redis:
    """The process's synchronous client (UTF-8 decoded responses)."""
    return _holder(SyncClient).get()


def get_redis_async() -> redis.asyncio.Redis:
    """The running loop's asyncio client (UTF-8 decoded). Call it inside a coroutine."""
    return _holder(AsyncClients).get()


async def close_async() -> None:
    """Close the running loop's client (call before the loop ends)."""
    clients = _holders.get(AsyncClients)
    if isinstance(clients, AsyncClients):
        await clients.aclose()


# --- key names (the legacy constants, now derived from one module) ---------------------------


def symbols_key(market: str = "spot") -> str:
    """The prioritized symbol list (JSON array) of `market`."""
    return _market_keys(market).symbols


def last_good_key(market: str = "spot") -> str:
    """The last accepted symbol list of `market`; never expires."""
    return _market_keys(market).last_good


def refreshed_at_key(market: str = "spot") -> str:
    """UTC epoch seconds (JSON number) of the last accepted snapshot of `market`."""
    return _market_keys(market).refreshed_at


def metrics_key(market: str = "spot") -> str:
    """Hash of the refresh counters of `market`."""
    return _market_keys(market).metrics


def _market_keys(market: str) -> _keys.MarketKeys:
    settings = _current().settings
    if market in ("spot", "usdm", "coinm"):
        return _keys.keys_for(settings, market)  # type: ignore[arg-type]
    return _keys.market_keys(market, settings.redis.key_prefix)


# Module constants for code that imported names rather than calling functions; they use the
# default prefix. A deployment with custom names should call the functions instead.
SYMBOLS_KEY = _keys.market_keys("spot").symbols
LAST_GOOD_KEY = _keys.market_keys("spot").last_good
REFRESHED_AT_KEY = _keys.market_keys("spot").refreshed_at
METRICS_KEY = _keys.market_keys("spot").metrics


# --- helpers ---------------------------------------------------------------------------------


def _error(exc: BaseException) -> str:
    return scrub_text(f"{type(exc).__name__}: {exc}")


def write_json_sync(key: str, value: Any, ex: int | None = None) -> bool:
    """SET `key` to the JSON of `value` (expiring after `ex` seconds). False, logged, on error."""
    try:
        payload = _encoder.encode(value)
        get_redis_sync().set(key, payload, ex=ex)
    except _SEND_ERRORS as exc:
        log.error("redis.write_failed", extra={"key": key, "error": _error(exc)})
        return False
    return True


def read_json_sync(key: str) -> Any | None:
    """The decoded JSON at `key`, or None (with a warning) when missing, unreadable or invalid."""
    try:
        raw = get_redis_sync().get(key)
    except RECOVERABLE as exc:
        log.warning("redis.read_failed", extra={"key": key, "error": _error(exc)})
        return None
    return _decode(key, raw)


def incr_sync(key: str, amount: int = 1) -> int | None:
    """INCRBY `key`; the new value, or None (logged) on error.

    Not exact under retries: a retried INCR after a timeout may count twice. The daemon's own
    counters do not use this (they are written inside the snapshot transaction).
    """
    try:
        value: int = get_redis_sync().incrby(key, amount)
    except RECOVERABLE as exc:
        log.error("redis.incr_failed", extra={"key": key, "error": _error(exc)})
        return None
    return value


async def write_json(key: str, value: Any, ex: int | None = None) -> bool:
    """Async twin of :func:`write_json_sync`."""
    try:
        payload = _encoder.encode(value)
        await get_redis_async().set(key, payload, ex=ex)
    except _SEND_ERRORS as exc:
        log.error("redis.write_failed", extra={"key": key, "error": _error(exc)})
        return False
    return True


async def read_json(key: str) -> Any | None:
    """Async twin of :func:`read_json_sync`."""
    try:
        raw = await get_redis_async().get(key)
    except RECOVERABLE as exc:
        log.warning("redis.read_failed", extra={"key": key, "error": _error(exc)})
        return None
    return _decode(key, raw)


async def incr(key: str, amount: int = 1) -> int | None:
    """Async twin of :func:`incr_sync`."""
    try:
        value: int = await get_redis_async().incrby(key, amount)
    except RECOVERABLE as exc:
        log.error("redis.incr_failed", extra={"key": key, "error": _error(exc)})
        return None
    return value


def _decode(key: str, raw: Any) -> Any | None:
    if raw is None:
        log.warning("redis.key_missing", extra={"key": key})
        return None
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeEncodeError) as exc:
        log.warning("redis.json_invalid", extra={"key": key, "error": _error(exc)})
        return None
