"""What the sync and async readers share besides scripts and the near-cache: configuration,
key names, results, decoding and errors.

Nothing here does I/O. The scripts are in :mod:`daemon.readers._scripts`, the near-cache's
state and rules in :mod:`daemon.readers._near_cache`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import redis

from daemon.config.loader import Config, config_from_loaded, load_config
from daemon.config.redis_target import redact_url
from daemon.config.settings import MARKETS, Loaded, Settings
from daemon.contract.keys import MarketKeys, keys_for, market_keys
from daemon.contract.meta import MetaFields, decode_timestamp
from daemon.contract.record import SymbolRecord
from daemon.contract.record import decode_listing as _decode_listing

# Re-exported: both readers decode with it, and the package exports record_to_dict.
from daemon.contract.record import decode_record as decode_record
from daemon.contract.record import record_to_dict as record_to_dict
from daemon.readers._scripts import INFO_FIELDS
from daemon.redis.clients import ConnectionConfig

# A library inside the bot's processes: stdlib logging, silent unless the application
# configures handlers. The NullHandler on the package's namespace keeps Python's last-resort
# handler from printing our warnings to stderr when the application configured nothing.
logging.getLogger("symbold").addHandler(logging.NullHandler())
log = logging.getLogger("symbold.readers")

# ---------------------------------------------------------------------------------------------
# options and results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One market's snapshot as Redis holds it, read in one round trip.

    ``version`` is None when there is no snapshot at all (the daemon never ran, or Redis was
    emptied and nothing has been republished yet). ``age`` is seconds since the daemon last
    confirmed the data (``refreshed_at``, else ``meta.fetched_at``), by this host's clock.
    ``has_symbols`` False with ``has_last_good`` True means the expiring list is gone and
    :meth:`get_symbols` is serving the ``last_good`` copy.
    """

    market: str
    version: str | None
    count: int | None
    listed: int | None
    stale: bool
    age: float | None
    refreshed_at: float | None
    fetched_at: float | None
    has_symbols: bool
    has_last_good: bool
    source: str | None
    last_error: str | None

    @property
    def present(self) -> bool:
        return self.version is not None


# ---------------------------------------------------------------------------------------------
# connection and keys
# ---------------------------------------------------------------------------------------------


def resolve_config(source: Config | Loaded | None) -> Config:
    """The configuration a reader built "from the settings" uses, resolved by the project's one
    loader (:func:`daemon.config.loader.load_config`): loaded now when `source` is None
    (same file, environment and URL order as the daemon), resolved from settings loaded
    already when it is a :class:`~daemon.config.settings.Loaded` (accepted for compatibility),
    used as is when it is a :class:`~daemon.config.loader.Config`. Raises
    :class:`~daemon.config.settings.ConfigError` for a bad setting or URL."""
    if source is None:
        config = load_config()
    elif isinstance(source, Config):
        config = source
    elif isinstance(source, Loaded):
        config = config_from_loaded(source)
    else:
        raise TypeError(f"expected a Config, a Loaded or None, got {type(source).__name__}")
    log.debug("reader.configured %s", config.url.describe())
    return config


def subscriber_config(config: ConnectionConfig) -> ConnectionConfig:
    """The events connection's settings: no hidden retry, no library health check.

    redis-py's pub/sub object reconnects and resubscribes by itself inside a retried read, so a
    dropped connection could go unnoticed while messages were missed. With no retries the error
    reaches the subscriber loop, which marks the channel lost before resubscribing; its own
    PINGs replace the health check.
    """
    return ConnectionConfig(
        url=config.url,
        settings=msgspec.structs.replace(
            config.settings, retry_attempts=0, health_check_interval=0
        ),
    )


def key_table(settings: Settings | None, prefix: str) -> dict[str, MarketKeys]:
    """Key names of the configured markets (with their overrides when `settings` is given)."""
    if settings is None:
        return {m: market_keys(m, prefix) for m in MARKETS}
    return {m: keys_for(settings, m) for m in MARKETS}


def extra_market_keys(market: str, prefix: str) -> MarketKeys:
    """Key names of a market outside the configured three (default names under `prefix`)."""
    if not isinstance(market, str) or not market:
        raise TypeError(f"market must be a non-empty str, got {market!r}")
    return market_keys(market, prefix)


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------


class _Named(msgspec.Struct, gc=False):
    symbol: str


_decode_names: Final = msgspec.json.Decoder(list[_Named]).decode


def text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def decode_listing(blob: bytes | None) -> tuple[SymbolRecord, ...]:
    return () if blob is None else tuple(_decode_listing(blob))


def check_statuses(statuses: Collection[str]) -> frozenset[str]:
    # A bare string is a collection of characters: almost certainly a caller bug.
    if isinstance(statuses, str):
        raise TypeError("statuses must be a collection of strings, not a str")
    return frozenset(statuses)


def filtered(
    blob: bytes | None, values: Iterable[bytes], statuses: frozenset[str]
) -> list[SymbolRecord]:
    """Records with a status in `statuses`: those in the stored listing first, in listing
    order, then the others by symbol (plain ``str`` order)."""
    if not statuses:
        return []
    chosen = {r.symbol: r for r in map(decode_record, values) if r.status in statuses}
    out: list[SymbolRecord] = []
    if blob is not None:
        for named in _decode_names(blob):
            rec = chosen.pop(named.symbol, None)
            if rec is not None:
                out.append(rec)
    out.extend(chosen[name] for name in sorted(chosen))
    return out


def snapshot_info_from(market: str, reply: Sequence[Any], now: float) -> SnapshotInfo:
    meta_values, refreshed_raw, has_symbols, has_last_good = reply
    meta = MetaFields.from_hash(dict(zip(INFO_FIELDS, meta_values, strict=True)))
    refreshed_at = decode_timestamp(refreshed_raw)
    basis = refreshed_at if refreshed_at is not None else meta.fetched_at
    return SnapshotInfo(
        market=market,
        version=meta.version,
        count=meta.count,
        listed=meta.listed,
        stale=meta.stale,
        age=None if basis is None else max(0.0, now - basis),
        refreshed_at=refreshed_at,
        fetched_at=meta.fetched_at,
        has_symbols=bool(has_symbols),
        has_last_good=bool(has_last_good),
        source=meta.source,
        last_error=meta.last_error,
    )


def lookup_result(raw: Any, market: str, keys: MarketKeys) -> SymbolRecord | None:
    """Decode a :data:`LOOKUP_SCRIPT` reply: the record, None for "no such symbol", or
    :class:`SnapshotMissingError` when the market has no ``by_symbol`` hash."""
    if isinstance(raw, bytes):
        return decode_record(raw)
    if raw == 1:
        return None
    raise SnapshotMissingError(market, keys.by_symbol)


class ChannelSilentError(redis.ConnectionError):
    """No reply on the events connection for ``silence_limit`` seconds (half-open TCP)."""


class SnapshotMissingError(LookupError):
    """The market's ``by_symbol`` hash is not in Redis: evicted (``allkeys-lru``), flushed, or
    not written yet. Not the same as "no such symbol" (None): nothing can be said about any
    symbol until the daemon writes the snapshot again."""

    def __init__(self, market: str, key: str) -> None:
        super().__init__(
            f"no snapshot of market {market!r} in Redis: {key} is absent"
            " (evicted, flushed, or not written yet)"
        )
        self.market = market
        self.key = key


def describe_error(exc: BaseException, secrets: Collection[str] = ()) -> str:
    """``Type: message`` with URL credentials and the connection's `secrets` masked."""
    message = redact_url(f"{type(exc).__name__}: {exc}")
    for secret in secrets:
        message = message.replace(secret, "***")
    return message


class ReaderClosedError(RuntimeError):
    """The reader was closed; make a new one."""


POLL_INTERVAL: Final = 0.1
"""How long the sync subscriber waits for a message before checking for stop and pings, which
bounds how long ``close()`` takes."""
