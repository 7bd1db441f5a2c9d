"""A whole ``by_symbol`` is staged in batches and renamed into place inside the transaction.

Real redis-server (the session's private one); no mocks. The staging key must never outlive
a successful write, must never make a write half-applied, and a deployment whose key names
carry no hash tag writes the hash inside the transaction as before.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio
from redis.exceptions import WatchError

from daemon.contract.keys import MarketKeys, market_keys
from daemon.contract.meta import SnapshotMeta
from daemon.snapshot.listing import SnapshotBlobs, build_snapshot, prioritize
from daemon.snapshot.normalize import normalize
from daemon.snapshot.store import SnapshotStore, new_token
from tests.snapshot.rows import make_payload, make_row
from tests.support.command_counts import Commands

pytestmark = pytest.mark.timeout(60)

ROWS = 450  # more than two staging batches


def _blobs(tick: str = "0.01000000") -> SnapshotBlobs:
    # Every other row not listed: the listing is about half the records' bytes.
    rows = [make_row(f"S{i}USDT", status="BREAK" if i % 2 else "TRADING") for i in range(ROWS)]
    rows[0]["filters"][0]["tickSize"] = tick
    records = normalize(make_payload(*rows), market="spot").records
    listed = prioritize(records, list_statuses={"TRADING"}, quote_priority=("USDT",), pinned=())
    return build_snapshot(records, listed)


def _meta(blobs: SnapshotBlobs) -> SnapshotMeta:
    return SnapshotMeta(
        version=blobs.version,
        count=blobs.count,
        listed=blobs.listed,
        source="test",
        server_time=None,
        fetched_at=time.time(),
        duration_ms=1.0,
    )


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


async def _staging_keys(r: redis.asyncio.Redis) -> list[bytes]:
    return [k for k in await r.keys("*") if b":staging:" in k]


async def test_a_full_write_renames_the_staged_hash_and_leaves_no_staging_key(
    r: redis.asyncio.Redis,
) -> None:
    keys = market_keys("spot")
    store = SnapshotStore(r, keys, cache_ttl=60, stage_above=0)
    blobs = _blobs()
    assert await store.commit(blobs, _meta(blobs), diff=None, token=new_token()) == "full"
    stored = await r.hgetall(keys.by_symbol)
    assert {k.decode(): v for k, v in stored.items()} == blobs.by_symbol
    assert await r.ttl(keys.by_symbol) == -1  # the staging TTL did not come along
    assert await _staging_keys(r) == []
    # A second full write (e.g. a repair) replaces the hash whole, again through staging.
    other = _blobs("0.02000000")
    await store.commit(other, _meta(other), diff=None, token=new_token())
    stored = await r.hgetall(keys.by_symbol)
    assert {k.decode(): v for k, v in stored.items()} == other.by_symbol
    assert await _staging_keys(r) == []


class _LosesItsStaging(SnapshotStore):
    """Deletes the staged hash before the transaction runs (as an expiry would)."""

    async def _whole(
        self, blobs: SnapshotBlobs
    ) -> tuple[bytes, list[int] | None, str | None, dict[str, bytes]]:
        listing, starts, name, by_symbol = await super()._whole(blobs)
        assert name is not None
        await self.client.delete(name)
        return listing, starts, name, by_symbol


@pytest.mark.parametrize("batched", [True, False])
async def test_a_vanished_staging_hash_refuses_the_write_whole(
    r: redis.asyncio.Redis, batched: bool
) -> None:
    # Batched: the records are encoded a batch at a time as they are staged (the listing
    # alone is over the threshold); else encoded whole, then staged.
    keys = market_keys("spot")
    blobs = _blobs()
    stage_above = 0 if batched else len(blobs.symbols_json)
    assert stage_above < sum(map(len, blobs.by_symbol.values()))
    store = _LosesItsStaging(r, keys, cache_ttl=60, stage_above=stage_above)
    with pytest.raises(WatchError):
        await store.commit(blobs, _meta(blobs), diff=None, token=new_token())
    # Nothing of the snapshot was applied: no list without its hash, no meta.
    for name in (keys.symbols, keys.last_good, keys.by_symbol, keys.meta):
        assert not await r.exists(name), name


async def test_key_names_without_a_hash_tag_write_the_hash_in_the_transaction(
    r: redis.asyncio.Redis,
) -> None:
    tagged = market_keys("spot")
    keys: MarketKeys = dataclasses.replace(tagged, by_symbol="legacy_by_symbol")
    store = SnapshotStore(r, keys, cache_ttl=60, stage_above=0)
    assert await store._stage({"X": b"{}"}) is None
    blobs = _blobs()
    await store.commit(blobs, _meta(blobs), diff=None, token=new_token())
    assert await r.hlen("legacy_by_symbol") == ROWS
    assert await _staging_keys(r) == []


class _CountsStaging(SnapshotStore):
    staged: list[str | None]

    async def _stage(self, by_symbol: dict[str, bytes]) -> str | None:  # type: ignore[override]
        name = await super()._stage(by_symbol)
        self.staged.append(name)
        return name


async def test_a_small_by_symbol_is_written_in_the_transaction_a_large_one_is_staged(
    r: redis.asyncio.Redis,
) -> None:
    keys = market_keys("spot")
    blobs = _blobs()
    size = sum(map(len, blobs.by_symbol.values()))
    small = _CountsStaging(r, keys, cache_ttl=60, stage_above=size)
    small.staged = []
    await small.commit(blobs, _meta(blobs), diff=None, token=new_token())
    assert small.staged == [None]
    large = _CountsStaging(r, keys, cache_ttl=60, stage_above=size - 1)
    large.staged = []
    other = _blobs("0.02000000")
    await large.commit(other, _meta(other), diff=None, token=new_token())
    assert len(large.staged) == 1
    assert large.staged[0] is not None
    stored = await r.hgetall(keys.by_symbol)
    assert {k.decode(): v for k, v in stored.items()} == other.by_symbol
    assert await _staging_keys(r) == []


@pytest.mark.parametrize("staged", [True, False])
async def test_a_whole_write_unlinks_the_old_hash_and_reads_it_back_in_steps(
    r: redis.asyncio.Redis, redis_url: str, staged: bool
) -> None:
    # UNLINK hands a large old hash to Redis's background thread instead of freeing it inside
    # the EXEC every reader waits for; HSCAN reads it back without one long HGETALL.
    keys = market_keys("spot")
    store = SnapshotStore(r, keys, cache_ttl=60, stage_above=0 if staged else 1 << 30)
    first = _blobs()
    await store.commit(first, _meta(first), diff=None, token=new_token())
    other = _blobs("0.02000000")
    with Commands(redis.Redis.from_url(redis_url)) as seen:
        await store.commit(other, _meta(other), diff=None, token=new_token())
        assert await store.read_by_symbol() == other.by_symbol
    assert seen.delta.get("unlink") == 1, seen.delta
    assert "hgetall" not in seen.delta, seen.delta
    assert seen.delta["hscan"] > 1  # more than one step for ROWS fields
