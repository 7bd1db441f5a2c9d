"""Reading what Redis serves for a market, for assertions: a plain client, the meta and
metrics hashes, and the snapshot a reader depends on, byte for byte.

None of this is the code under test: it reads the keys the data contract names
(``daemon.contract.keys``) with its own redis-py client. Every reader takes the market's keys
and defaults to spot, the market most tests refresh.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass

import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff

from daemon.contract.keys import MarketKeys, market_keys

SPOT_KEYS: MarketKeys = market_keys("spot")
# The spot keys under short names, for suites that build their own pipelines.
SYMBOLS_KEY = SPOT_KEYS.symbols
LAST_GOOD_KEY = SPOT_KEYS.last_good
REFRESHED_KEY = SPOT_KEYS.refreshed_at
BY_SYMBOL_KEY = SPOT_KEYS.by_symbol
META_KEY = SPOT_KEYS.meta
METRICS_KEY = SPOT_KEYS.metrics
BAN_KEY = SPOT_KEYS.ban_until


def direct_client(url: str) -> redis.asyncio.Redis:
    """A plain bytes client for assertions (not the code under test), with short timeouts
    and a few immediate retries so it reconnects by itself after a test restarted the server."""
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 3),
    )


async def read_meta(client: redis.asyncio.Redis, keys: MarketKeys = SPOT_KEYS) -> dict[str, str]:
    """The meta hash, decoded; empty when there is none."""
    raw: dict[bytes, bytes] = await client.hgetall(keys.meta)  # type: ignore[assignment]
    return {k.decode(): v.decode() for k, v in raw.items()}


async def read_metrics(client: redis.asyncio.Redis, keys: MarketKeys = SPOT_KEYS) -> dict[str, int]:
    """The counters hash as integers; empty when nothing was counted."""
    raw: dict[bytes, bytes] = await client.hgetall(keys.metrics)  # type: ignore[assignment]
    return {k.decode(): int(v) for k, v in raw.items()}


def listed_names(symbols_json: bytes | None) -> list[str]:
    """The symbol names of a stored `symbols` value, in its order (it must exist)."""
    assert symbols_json is not None
    return [rec["symbol"] for rec in json.loads(symbols_json)]


@dataclass(frozen=True)
class Stored:
    """The data a reader depends on, byte for byte (equal when nothing was rewritten)."""

    symbols: bytes | None
    last_good: bytes | None
    refreshed_at: bytes | None
    by_symbol: dict[bytes, bytes]
    version: bytes | None


async def read_stored(client: redis.asyncio.Redis, keys: MarketKeys = SPOT_KEYS) -> Stored:
    """The values of `Stored`, read one command at a time."""
    return Stored(
        symbols=await client.get(keys.symbols),
        last_good=await client.get(keys.last_good),
        refreshed_at=await client.get(keys.refreshed_at),
        by_symbol=await client.hgetall(keys.by_symbol),  # type: ignore[misc]
        version=await client.hget(keys.meta, "version"),  # type: ignore[misc]
    )


@dataclass(frozen=True)
class Snapshot(Stored):
    """`Stored` plus the meta count, read in one MULTI (equal when all six are)."""

    count: bytes | None

    @property
    def listed(self) -> list[str]:
        return [r["symbol"] for r in json.loads(self.symbols or b"[]")]

    def is_whole(self) -> bool:
        """symbols, last_good, by_symbol and meta describe one snapshot."""
        if self.symbols is None or self.version is None or not self.by_symbol:
            return False
        if self.last_good != self.symbols:
            return False
        listed = json.loads(self.symbols)
        if any(self.by_symbol.get(r["symbol"].encode()) is None for r in listed):
            return False
        return self.count == str(len(self.by_symbol)).encode()

    def same_data(self, other: Snapshot) -> bool:
        return (self.symbols, self.last_good, self.by_symbol, self.version) == (
            other.symbols,
            other.last_good,
            other.by_symbol,
            other.version,
        )


async def read_snapshot(
    client: redis.asyncio.Redis, *, multi: bool = True, keys: MarketKeys = SPOT_KEYS
) -> Snapshot:
    """One consistent read (a MULTI). ``multi=False`` for a server over maxmemory, which
    refuses even reads inside a transaction."""
    pipe = client.pipeline(transaction=multi)
    pipe.get(keys.symbols)
    pipe.get(keys.last_good)
    pipe.get(keys.refreshed_at)
    pipe.hgetall(keys.by_symbol)
    pipe.hget(keys.meta, "version")
    pipe.hget(keys.meta, "count")
    symbols, last_good, refreshed, by_symbol, version, count = await pipe.execute()
    return Snapshot(symbols, last_good, refreshed, by_symbol, version, count)


async def symbold_client_ids(client: redis.asyncio.Redis, name: str = "symbold") -> list[int]:
    """IDs of the daemon's connections (it names them with CLIENT SETNAME)."""
    return [int(c["id"]) for c in await client.client_list() if c.get("name") == name]


async def kill_clients(client: redis.asyncio.Redis, name: str = "symbold") -> int:
    """CLIENT KILL every connection called `name`; returns how many were killed."""
    killed = 0
    for client_id in await symbold_client_ids(client, name):
        with contextlib.suppress(redis.ResponseError):
            killed += int(await client.client_kill_filter(_id=str(client_id)))
    return killed
