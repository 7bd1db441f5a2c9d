"""The readers' Lua scripts, each one read-only and one round trip over one consistent view
(all of a market's keys share a hash tag), and the argument lists they take.

Nothing here does I/O; the readers send these with ``EVALSHA_RO`` (or ``EVALSHA``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

import redis

from daemon.contract.keys import MarketKeys
from daemon.redis.clients import ConnectionConfig

NO_WRITES: Final = "#!lua flags=no-writes\n"


@dataclass(frozen=True, slots=True)
class Script:
    """A read-only Lua script in its two forms.

    ``ro_source`` carries the ``no-writes`` flag, which ``EVALSHA_RO`` (Redis >= 7.0) needs to
    run it and which lets it run on replicas and under OOM; a user whose ACL allows only reads
    can call it. ``source`` is the bare body, for plain ``EVALSHA`` on older servers, whose Lua
    does not understand the flags line.
    """

    source: str
    sha: str
    ro_source: str
    ro_sha: str

    @classmethod
    def of(cls, body: str) -> Script:
        flagged = NO_WRITES + body
        return cls(body, _sha1(body), flagged, _sha1(flagged))


def _sha1(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 (Redis's script id)


# KEYS: by_symbol; ARGV: symbol. -> record, or 1 (the hash exists, no such symbol), or 0 (there
# is no by_symbol hash at all: evicted, flushed, never written). One HGET when the symbol is there.
LOOKUP_SCRIPT: Final = Script.of(
    "local r = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if r then return r end\n"
    "return redis.call('EXISTS', KEYS[1])"
)

# KEYS: by_symbol, meta; ARGV: symbol. -> {record, or nil, or 0 when there is no by_symbol
# hash; version or nil}
RECORD_SCRIPT: Final = Script.of(
    "local r = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if not r and redis.call('EXISTS', KEYS[1]) == 0 then r = 0 end\n"
    "return {r, redis.call('HGET', KEYS[2], 'version')}"
)

# KEYS: symbols, last_good, meta. -> {listing or nil, version or nil}
LISTING_SCRIPT: Final = Script.of(
    "local blob = redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[2])\n"
    "return {blob, redis.call('HGET', KEYS[3], 'version')}"
)

# KEYS: symbols, last_good, meta, by_symbol. -> {listing or nil, version or nil, {records}}
FILTER_SCRIPT: Final = Script.of(
    "local blob = redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[2])\n"
    "return {blob, redis.call('HGET', KEYS[3], 'version'), redis.call('HVALS', KEYS[4])}"
)

INFO_FIELDS: Final = ("version", "count", "listed", "stale", "fetched_at", "source", "last_error")

# KEYS: meta, refreshed_at, symbols, last_good. -> {{meta fields}, refreshed_at, 0/1, 0/1}
INFO_SCRIPT: Final = Script.of(
    "return {redis.call('HMGET', KEYS[1], "
    + ", ".join(f"'{f}'" for f in INFO_FIELDS)
    + "), redis.call('GET', KEYS[2]), redis.call('EXISTS', KEYS[3]),"
    " redis.call('EXISTS', KEYS[4])}"
)


# Script arguments after the sha: numkeys, keys, argv.


def lookup_args(keys: MarketKeys, name: str) -> tuple[Any, ...]:
    return (1, keys.by_symbol, name)


def record_args(keys: MarketKeys, name: str) -> tuple[Any, ...]:
    return (2, keys.by_symbol, keys.meta, name)


def listing_args(keys: MarketKeys) -> tuple[Any, ...]:
    return (3, keys.symbols, keys.last_good, keys.meta)


def filter_args(keys: MarketKeys) -> tuple[Any, ...]:
    return (4, keys.symbols, keys.last_good, keys.meta, keys.by_symbol)


def info_args(keys: MarketKeys) -> tuple[Any, ...]:
    return (4, keys.meta, keys.refreshed_at, keys.symbols, keys.last_good)


def read_only_scripts(config: ConnectionConfig) -> bool:
    """Whether to start with ``EVALSHA_RO``. Not on a cluster: redis-py routes plain
    ``EVALSHA`` by its key arguments but asks a node (``COMMAND GETKEYS``, one more round
    trip per call) for any other script command."""
    return config.mode != "cluster"


def is_unknown_command(exc: redis.ResponseError) -> bool:
    """The server does not have the command (``EVALSHA_RO`` before Redis 7.0)."""
    return "unknown command" in str(exc).lower()
