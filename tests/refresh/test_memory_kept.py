"""What a refresher keeps between cycles: records and 16-byte digests, never the records' JSON,
and the listing's JSON only when it is small (for the next write to splice changed rows into);
and the JSON it makes again when it writes (a changed row, a spliced listing, a full rewrite, a
republish from memory) is byte for byte what a fresh derivation gives.

Real redis-server and fake Binance processes on loopback, nothing mocked (see conftest.py).
"""

from __future__ import annotations

import gc
import types
from typing import Any

import redis.asyncio

from daemon.contract.record import encode_record
from daemon.refresh.cycle import MarketRefresher
from daemon.snapshot import store as store_module
from daemon.snapshot.listing import prioritize
from daemon.snapshot.normalize import normalize
from tests.refresh.spot_market import BASE_PAYLOAD, CHANGED_PAYLOAD, KEYS
from tests.support.builders import accepted, make_settings, open_refresher
from tests.support.fake_binance import SPOT, FakeBinance
from tests.support.fixtures import fixture_bytes
from tests.support.fresh import fresh_by_symbol, fresh_listing
from tests.support.stored_snapshot import read_stored

_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def _bytes_kept(*roots: object) -> set[bytes]:
    """Every bytes value reachable from `roots` through containers and objects (not through
    classes, modules or functions: those reach the whole program)."""
    seen: set[int] = set()
    found: set[bytes] = set()
    stack: list[Any] = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        if isinstance(obj, bytes | bytearray):
            found.add(bytes(obj))
            continue
        if isinstance(obj, str | int | float | memoryview):
            continue
        stack.extend(gc.get_referents(obj))
        slots = getattr(type(obj), "__slots__", ())
        stack.extend(getattr(obj, name, None) for name in slots)
        stack.extend(getattr(obj, name, None) for name in getattr(obj, "__struct_fields__", ()))
    return found


def _what_a_refresher_keeps(ref: MarketRefresher) -> set[bytes]:
    return _bytes_kept(ref.memo, ref.held, ref._derived)


async def test_after_cycles_no_record_or_listing_json_is_kept(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    await accepted(refresher)  # first cycle: every row derived
    fake.set_payload(SPOT, CHANGED_PAYLOAD)
    await accepted(refresher)  # a changed cycle: the changed rows written
    stored = await read_stored(r)
    assert stored.by_symbol
    assert stored.symbols
    kept = _what_a_refresher_keeps(refresher)
    assert not kept & set(stored.by_symbol.values())
    assert stored.symbols not in kept
    assert refresher.held is not None
    assert refresher.held.blobs is not None
    assert not refresher.held.blobs.kept  # no held rows: no JSON kept at all
    # The steady cycle (same rows) keeps none either.
    assert (await refresher.refresh_once()).outcome == "unchanged"
    assert not _what_a_refresher_keeps(refresher) & set(stored.by_symbol.values())


async def test_changed_rows_and_full_rewrites_write_the_bytes_a_fresh_derivation_gives(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    await accepted(refresher)
    assert (await read_stored(r)).by_symbol == fresh_by_symbol(BASE_PAYLOAD)
    kept = refresher.store.kept_listing
    assert kept is not None  # a small listing is kept for the next write to splice
    fake.set_payload(SPOT, CHANGED_PAYLOAD)
    await accepted(refresher)  # incremental: only the changed rows are encoded and sent
    expected = fresh_by_symbol(CHANGED_PAYLOAD)
    after_change = await read_stored(r)
    assert after_change.by_symbol == expected
    # The changed rows were spliced into the kept listing: the bytes of a fresh derivation.
    assert refresher.store.kept_listing is not kept
    assert after_change.symbols == fresh_listing(CHANGED_PAYLOAD, refresher.market)
    assert after_change.symbols == after_change.last_good

    # Redis loses the snapshot: republished from memory, whole, the very same bytes.
    await r.delete(KEYS.by_symbol, KEYS.symbols, KEYS.last_good)
    assert await refresher.watch() == "memory"
    republished = await read_stored(r)
    assert republished.by_symbol == expected
    assert republished.symbols == republished.last_good == after_change.symbols

    # A repair rewrites everything whole: the same bytes again.
    await refresher.store.mark_corrupt({KEYS.changes: "string"})
    assert (await refresher.refresh_once()).outcome == "accepted"  # a repair is a write
    repaired = await read_stored(r)
    assert (repaired.by_symbol, repaired.symbols) == (expected, after_change.symbols)


async def test_recorded_payload_full_write_is_byte_identical_and_keeps_no_json(
    redis_url: str, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    body = fixture_bytes("spot-exchangeinfo-2023-09.json")
    fake.set_payload(SPOT, body)
    async with open_refresher(redis_url, make_settings(fake.url)) as ref:
        await accepted(ref)
        stored = await read_stored(r)
        result = normalize(body, market="spot")
        assert stored.by_symbol == {
            rec.symbol.encode(): encode_record(rec) for rec in result.records
        }
        by_name = {rec.symbol: rec for rec in result.records}
        listed = prioritize(
            result.records,
            list_statuses=ref.market.list_statuses,
            quote_priority=ref.market.quote_priority,
            pinned=ref.market.pinned,
        )
        assert (
            stored.symbols
            == b"[" + b",".join(encode_record(by_name[rec.symbol]) for rec in listed) + b"]"
        )
        kept = _what_a_refresher_keeps(ref)
        assert not kept & set(stored.by_symbol.values())
        assert stored.symbols not in kept


async def test_a_large_listing_is_not_kept(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance, monkeypatch: Any
) -> None:
    """Above KEEP_LISTING_UP_TO (a modern 17 MB payload's 10 MB listing) only where its rows
    start is kept, not its JSON; a changed listing is patched in place or encoded whole: the
    same bytes."""
    monkeypatch.setattr(store_module, "KEEP_LISTING_UP_TO", 10)
    await accepted(refresher)
    kept = refresher.store.kept_listing
    assert kept is not None
    assert kept.listing is None
    fake.set_payload(SPOT, CHANGED_PAYLOAD)
    await accepted(refresher)
    kept = refresher.store.kept_listing
    assert kept is not None
    assert kept.listing is None
    stored = await read_stored(r)
    assert stored.symbols == fresh_listing(CHANGED_PAYLOAD, refresher.market)
    assert stored.by_symbol == fresh_by_symbol(CHANGED_PAYLOAD)
