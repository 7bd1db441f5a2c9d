"""Fast symbol readers for the bot's processes: sync and async twins with the same behaviour.

What a caller gets::

    from daemon.readers import SymbolReader, get_symbol_sync, get_symbol

    rec = get_symbol_sync("BTCUSDT")            # SymbolRecord | None, one HGET
    rec.tick_size, rec.min_notional             # decimal strings, exactly as Binance sent them
    listed = get_symbols_sync()                 # list[SymbolRecord], priority order
    info = snapshot_info_sync("spot")           # version, count, listed, stale, age
    rules = get_rules_sync("BTCUSDT")           # SymbolRules | None: the compiled order rules
    check_order(rules, "BUY", "LIMIT", quantity="0.01", price="27000.12")   # daemon.rules
    rec = await get_symbol("BTCUSDT")           # async twins: no suffix, as in redis_client

    with SymbolReader.from_settings(near_cache=True) as reader:   # own reader, near-cache on
        rec = reader.get_symbol("BTCUSDT")      # from memory after the first read

Records are :class:`~daemon.contract.record.SymbolRecord` values: typed (mypy catches a misspelt
field), frozen (the near-cache hands the same object to every caller and nobody can change it
under the others), and decoded by msgspec straight from the stored JSON, faster than
``json.loads`` into a dict. Code that wants the legacy dict calls :func:`record_to_dict`.

Reads, per market (key names from :mod:`daemon.contract.keys`, so overrides in the settings apply):

- ``get_symbol(name)``: one ``HGET by_symbol name`` when the symbol is there; the whole list
  is never read. When it is not, one read-only script decides atomically between None (the
  snapshot has no such symbol; any status is returned, not only listed ones) and
  :class:`SnapshotMissingError` (the ``by_symbol`` hash itself is absent: evicted under
  ``allkeys-lru``, flushed, not written yet; nothing can be said about any symbol then).
  With the near-cache, the record script returns the record, the version and that
  distinction in one round trip. Redis errors propagate
  (``redis.RedisError``): an outage is not "no such symbol" either.
- ``get_symbols()``: the stored ``symbols`` list, or ``last_good`` once it has expired (one
  script, one round trip). ``get_symbols(statuses={...})``: every record with one of those
  statuses, from ``by_symbol``; order: the ones in the stored listing first, in listing order,
  then the rest by symbol (``str`` order). So ``statuses`` equal to the daemon's
  ``list_statuses`` gives exactly the listing. Without a ``by_symbol`` hash it raises
  :class:`SnapshotMissingError`, as ``get_symbol`` does.
- ``get_rules(name)``: the record's order rules compiled by :func:`daemon.rules.rules_for`
  (None, :class:`SnapshotMissingError` and Redis errors as ``get_symbol``). Without the
  near-cache it reads the record as ``get_symbol`` does and compiles it; with it, the rules
  are compiled on first use and kept next to the cached record, so a hit costs no parsing.
- ``snapshot_info()``: :class:`SnapshotInfo`, read in one round trip.

The module-level functions' readers, and ``SymbolReader.from_settings()``, take their
configuration from the project's one loader, :func:`daemon.config.loader.load_config` (or a
:class:`~daemon.config.loader.Config` passed to :func:`configure` / ``from_settings``).

Every read is a read-only Lua script run with ``EVALSHA_RO`` (flagged ``no-writes``), so a
Redis user whose ACL allows only reads on the snapshot keys can use the readers; on a server
older than Redis 7.0 (no ``EVALSHA_RO``) a reader falls back to ``EVALSHA`` once, on the first
"unknown command". In cluster mode readers use ``EVALSHA`` (redis-py routes only that one by
its keys without an extra round trip).

The package logs through stdlib :mod:`logging` (``symbold.readers``, under a ``NullHandler``
on ``symbold``): silent unless the application configures logging; nothing is printed.

The near-cache (off by default; ``near_cache=True`` or :class:`NearCacheOptions`, or
``configure(near_cache=True)`` for the module-level functions) keeps decoded records (and
negative answers, the listing, and compiled rules) of one snapshot version per market. A
subscriber (a thread, or a task for the async reader) listens on each market's ``events``
channel; a message for another version drops that market's entries. Rules (the details are on
:class:`~daemon.readers._near_cache.NearCache`):

- hits are served only while the channel is live: subscribed, and some reply heard within
  ``silence_limit`` (it is PINGed every ``ping_interval``). Otherwise every call reads Redis,
  until the subscriber is back; becoming live again empties the cache first, since messages
  published in between were missed;
- a reader never serves a version older than one it has seen: every read of Redis made with
  the near-cache on returns the snapshot version with the data (one script, consistent), and
  any read that sees another version than the cached one replaces or empties it. Ordering
  comes from causality (a read that started after the cached version was established sees a
  version at least as new), tracked with a generation counter per market; version hashes
  are only compared for equality, which is enough because they are content hashes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection

from daemon.config.loader import Config
from daemon.config.settings import Loaded
from daemon.contract.record import SymbolRecord
from daemon.readers._async import AsyncSymbolReader
from daemon.readers._core import (
    ChannelSilentError,
    ReaderClosedError,
    SnapshotInfo,
    SnapshotMissingError,
    record_to_dict,
    resolve_config,
)
from daemon.readers._near_cache import NearCacheOptions, NearCacheStatus
from daemon.readers._sync import SymbolReader
from daemon.rules import SymbolRules

__all__ = [
    "AsyncSymbolReader",
    "ChannelSilentError",
    "NearCacheOptions",
    "NearCacheStatus",
    "ReaderClosedError",
    "SnapshotInfo",
    "SnapshotMissingError",
    "SymbolReader",
    "SymbolRecord",
    "close_async",
    "close_sync",
    "configure",
    "default_async_reader",
    "default_reader",
    "get_rules",
    "get_rules_sync",
    "get_symbol",
    "get_symbol_sync",
    "get_symbols",
    "get_symbols_sync",
    "record_to_dict",
    "reset",
    "snapshot_info",
    "snapshot_info_sync",
]

_state_lock = threading.Lock()
_source: Config | Loaded | None = None
# (not named _near_cache: that is the submodule daemon.readers._near_cache, an attribute here)
_near_choice: bool | NearCacheOptions = False
_sync_reader: SymbolReader | None = None
# One async reader per event loop: a reader is bound to the loop it first ran in.
_async_readers: dict[asyncio.AbstractEventLoop, AsyncSymbolReader] = {}


def configure(
    config: Config | Loaded | None = None, *, near_cache: bool | NearCacheOptions = False
) -> None:
    """Configuration and near-cache choice for the module-level functions' readers.

    `config`: a :class:`~daemon.config.loader.Config` from
    :func:`daemon.config.loader.load_config`, or (still accepted) settings from
    ``load_settings``; default: loaded by ``load_config`` on first use (same file and URL
    order as the daemon). The near-cache is off by default. Closes the current sync reader;
    async readers are dropped (close them first with :func:`close_async` in their loops).
    """
    global _source, _near_choice, _sync_reader
    with _state_lock:
        old, _sync_reader = _sync_reader, None
        _source = config
        _near_choice = near_cache
        _async_readers.clear()
    if old is not None:
        old.close()


def reset() -> None:
    """Back to defaults: close the sync reader, forget settings and async readers (tests)."""
    configure(None)


def default_reader() -> SymbolReader:
    """The process's sync reader (created on first use, thread-safe, fork-safe)."""
    global _sync_reader, _source
    reader = _sync_reader
    if reader is not None:
        return reader
    with _state_lock:
        if _sync_reader is None:
            config = _source = resolve_config(_source)
            _sync_reader = SymbolReader(config.connection, config.settings, near_cache=_near_choice)
        return _sync_reader


def default_async_reader() -> AsyncSymbolReader:
    """The running loop's async reader (created on first use). Call inside a coroutine."""
    global _source
    loop = asyncio.get_running_loop()
    reader = _async_readers.get(loop)
    if reader is None:
        with _state_lock:
            for dead in [other for other in _async_readers if other.is_closed()]:
                del _async_readers[dead]
            config = _source = resolve_config(_source)
            reader = AsyncSymbolReader(config.connection, config.settings, near_cache=_near_choice)
            _async_readers[loop] = reader
    return reader


def close_sync() -> None:
    """Close the process's sync reader (a later call makes a new one)."""
    global _sync_reader
    with _state_lock:
        reader, _sync_reader = _sync_reader, None
    if reader is not None:
        reader.close()


async def close_async() -> None:
    """Close the running loop's async reader (call before the loop ends)."""
    reader = _async_readers.pop(asyncio.get_running_loop(), None)
    if reader is not None:
        await reader.aclose()


# --- sync ------------------------------------------------------------------------------------


def get_symbol_sync(name: str, market: str = "spot") -> SymbolRecord | None:
    """The record of `name`, or None. See :meth:`SymbolReader.get_symbol`."""
    return default_reader().get_symbol(name, market)


def get_rules_sync(name: str, market: str = "spot") -> SymbolRules | None:
    """The compiled order rules of `name`, or None. See :meth:`SymbolReader.get_rules`."""
    return default_reader().get_rules(name, market)


def get_symbols_sync(
    market: str = "spot", statuses: Collection[str] | None = None
) -> list[SymbolRecord]:
    """The listed records in priority order. See :meth:`SymbolReader.get_symbols`."""
    return default_reader().get_symbols(market, statuses)


def snapshot_info_sync(market: str = "spot") -> SnapshotInfo:
    """See :meth:`SymbolReader.snapshot_info`."""
    return default_reader().snapshot_info(market)


# --- async -----------------------------------------------------------------------------------


async def get_symbol(name: str, market: str = "spot") -> SymbolRecord | None:
    """Async twin of :func:`get_symbol_sync`."""
    return await default_async_reader().get_symbol(name, market)


async def get_rules(name: str, market: str = "spot") -> SymbolRules | None:
    """Async twin of :func:`get_rules_sync`."""
    return await default_async_reader().get_rules(name, market)


async def get_symbols(
    market: str = "spot", statuses: Collection[str] | None = None
) -> list[SymbolRecord]:
    """Async twin of :func:`get_symbols_sync`."""
    return await default_async_reader().get_symbols(market, statuses)


async def snapshot_info(market: str = "spot") -> SnapshotInfo:
    """Async twin of :func:`snapshot_info_sync`."""
    return await default_async_reader().snapshot_info(market)
