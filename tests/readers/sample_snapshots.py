"""Snapshots the reader tests read: the shipped spot sample as records and as three
versions (`V1`..`V3`, differing in BTCUSDT's tick size), and a `Writer` that commits them the
way the daemon does."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import msgspec
import redis.asyncio

from daemon.config.settings import Settings
from daemon.contract.keys import MarketKeys, market_keys
from daemon.contract.meta import SnapshotMeta
from daemon.contract.record import SymbolRecord
from daemon.snapshot import normalize
from daemon.snapshot.diff import diff_snapshots
from daemon.snapshot.listing import SnapshotBlobs, build_snapshot, prioritize
from daemon.snapshot.store import SnapshotStore, new_token
from tests.support.fixtures import SAMPLES

SAMPLE = SAMPLES / "spot-sample.json"
SPOT = Settings().markets.spot
BASE = normalize.normalize(SAMPLE.read_bytes(), market="spot").records
NON_ASCII = "币安人生USDT"


def snapshot(btc_tick: str | None = None) -> SnapshotBlobs:
    """The sample snapshot; `btc_tick` changes BTCUSDT's tick size (a new version)."""
    records = [
        msgspec.structs.replace(r, tick_size=btc_tick)
        if btc_tick is not None and r.symbol == "BTCUSDT"
        else r
        for r in BASE
    ]
    return snapshot_of(records)


def snapshot_of(records: list[SymbolRecord]) -> SnapshotBlobs:
    """The snapshot the daemon would store for `records`, listed by the spot defaults."""
    listed = prioritize(
        records,
        list_statuses=SPOT.list_statuses,
        quote_priority=SPOT.quote_priority,
        pinned=SPOT.pinned,
    )
    return build_snapshot(records, listed)


V1, V2, V3 = snapshot(), snapshot("0.02000000"), snapshot("0.03000000")


class Writer:
    """Commits snapshots the way the daemon does (``SnapshotStore.commit``)."""

    def __init__(self, url: str, keys: MarketKeys | None = None) -> None:
        self.url = url
        self.keys = keys or market_keys("spot")
        self.last: SnapshotBlobs | None = None

    def commit(self, blobs: SnapshotBlobs, *, publish: bool = True) -> SnapshotBlobs:
        """Write `blobs`. With ``publish=False`` the events message goes to a channel nobody
        listens on: a message the reader never gets, e.g. lost while it was disconnected."""
        keys = self.keys if publish else dataclasses.replace(self.keys, events="nobody-listens")
        diff = (
            diff_snapshots(self.last.by_symbol, blobs.by_symbol) if self.last is not None else None
        )
        meta = SnapshotMeta(
            version=blobs.version,
            count=blobs.count,
            listed=blobs.listed,
            source="test",
            server_time=None,
            fetched_at=time.time(),
            duration_ms=1.0,
        )

        async def write() -> None:
            client = redis.asyncio.Redis.from_url(self.url)
            try:
                store = SnapshotStore(client, keys, cache_ttl=3600)
                await store.commit(blobs, meta, diff=diff, token=new_token())
            finally:
                await client.aclose()

        asyncio.run(write())
        self.last = blobs
        return blobs

    def record_failure(self) -> None:
        async def write() -> None:
            client = redis.asyncio.Redis.from_url(self.url)
            try:
                store = SnapshotStore(client, self.keys, cache_ttl=3600)
                await store.record_failure(outcome="error", error="boom", token=new_token())
            finally:
                await client.aclose()

        asyncio.run(write())


def btc(record: SymbolRecord | None) -> str | None:
    assert record is not None
    return record.tick_size


V1_RECORDS = {r.symbol: r for r in BASE}
