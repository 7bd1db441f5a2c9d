"""A restarted daemon and the snapshot Redis kept (issue 15): with the stored digests of the
upstream rows (``meta:rows``), a new refresher that fetches the very rows the stored snapshot
came from renews it instead of deriving every row again; anything else (a changed row, a
missing, tampered or foreign digest value, other listing settings, held rows, a lost lease)
makes it derive as before, and what Redis serves stays byte-identical either way.

Real redis-server and fake Binance processes on loopback, nothing mocked (see conftest.py).
"""

from __future__ import annotations

import msgspec
import pytest
import redis.asyncio

from daemon.config.settings import Settings
from daemon.contract.rows import decode_row_digests, encode_row_digests
from daemon.snapshot.lease import Fence
from daemon.snapshot.normalize import digest
from tests.refresh.spot_market import BASE_PAYLOAD, BASE_ROWS, CACHE_TTL, CHANGED_PAYLOAD, KEYS
from tests.support.builders import (
    SERVER_TIME,
    accepted,
    make_settings,
    open_refresher,
    payload,
    replace_row,
)
from tests.support.fake_binance import SPOT, FakeBinance
from tests.support.fresh import fresh_by_symbol
from tests.support.slowlog import logged, on
from tests.support.stored_snapshot import read_meta, read_metrics, read_stored

pytestmark = pytest.mark.timeout(60)

ROWS_KEY = f"{KEYS.meta}:rows"


def row_digests(rows: list[dict[str, object]]) -> bytes:
    return b"".join(digest(msgspec.json.encode(row)) for row in rows)


async def test_restart_with_the_same_rows_trusts_redis_and_decodes_nothing(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis
) -> None:
    async with open_refresher(redis_url, settings) as first:
        good = await accepted(first)
    before = await read_stored(r)
    rows_before = await r.get(ROWS_KEY)
    await r.pexpire(KEYS.symbols, 5000)

    async with open_refresher(redis_url, settings) as second:
        result = await second.refresh_once()
        # Nothing was derived: the row memo is still empty, and no blobs are held in memory.
        assert second.memo.digests == []
        assert second.held is not None
        assert second.held.blobs is None
        assert second.held.meta.version == good.version

    assert result.outcome == "unchanged"
    assert (result.version, result.count, result.listed) == (good.version, 8, 6)
    after = await read_stored(r)
    assert (after.symbols, after.last_good, after.by_symbol, after.version) == (
        before.symbols,
        before.last_good,
        before.by_symbol,
        before.version,
    )
    assert after.refreshed_at != before.refreshed_at
    assert await r.ttl(KEYS.symbols) == CACHE_TTL  # the listing's expiry was renewed
    # The same row digests, now with the digest of the reply's rows region (one hash next time).
    old, new = decode_row_digests(rows_before), decode_row_digests(await r.get(ROWS_KEY))
    assert old is not None
    assert new is not None
    assert (new.version, new.fingerprint, new.digests) == (
        old.version,
        old.fingerprint,
        old.digests,
    )
    assert (len(old.region), len(new.region)) == (0, 16)
    meta = await read_meta(r)
    assert (meta["count"], meta["listed"], meta["held_rows"]) == ("8", "6", "[]")
    assert meta["rate_limits"].startswith('[{"rateLimitType":"REQUEST_WEIGHT"')
    assert await read_metrics(r) == {"refresh_success": 2}
    assert await r.xlen(KEYS.changes) == 0


async def test_later_cycles_after_a_trusted_restart_stay_trusted(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    async with open_refresher(redis_url, settings) as first:
        good = await accepted(first)
    before = await read_stored(r)
    async with open_refresher(redis_url, settings) as second:
        for server_time in (SERVER_TIME + 1, SERVER_TIME + 2, SERVER_TIME + 3):
            fake.set_payload(SPOT, payload(list(BASE_ROWS), server_time=server_time))
            result = await second.refresh_once()
            assert (result.outcome, result.version) == ("unchanged", good.version)
            assert second.memo.digests == []
            assert (await read_meta(r))["server_time"] == str(server_time)
    after = await read_stored(r)
    assert (after.symbols, after.by_symbol) == (before.symbols, before.by_symbol)
    assert await read_metrics(r) == {"refresh_success": 4}


async def test_a_wrong_region_digest_is_only_a_slower_match(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis
) -> None:
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
        assert (await first.refresh_once()).outcome == "unchanged"  # learns the region
    stored = decode_row_digests(await r.get(ROWS_KEY))
    assert stored is not None
    assert len(stored.region) == 16
    wrong = encode_row_digests(stored.version, stored.fingerprint, stored.digests, b"\1" * 16)
    await r.set(ROWS_KEY, wrong)
    async with open_refresher(redis_url, settings) as second:
        assert (await second.refresh_once()).outcome == "unchanged"
        assert second.memo.digests == []  # trusted row by row
    assert await r.get(ROWS_KEY) == encode_row_digests(
        stored.version, stored.fingerprint, stored.digests, stored.region
    )


async def test_a_trusted_restart_then_a_change_derives_and_stays_byte_identical(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
    async with open_refresher(redis_url, settings) as second:
        assert (await second.refresh_once()).outcome == "unchanged"
        assert second.memo.digests == []
        fake.set_payload(SPOT, CHANGED_PAYLOAD)
        changed = await accepted(second)
        assert len(second.memo.digests) > 0  # derived now
        assert (await r.xlen(KEYS.changes)) == 1
        trusted_path = await read_stored(r)
        rows = decode_row_digests(await r.get(ROWS_KEY))
        assert rows is not None
        assert rows.version == changed.version

    # What a refresher that never trusted anything writes for the same payload.
    await r.flushdb()
    async with open_refresher(redis_url, settings) as fresh:
        await accepted(fresh)
    derived = await read_stored(r)
    assert trusted_path.symbols == derived.symbols
    assert trusted_path.by_symbol == derived.by_symbol
    assert trusted_path.version == derived.version
    assert await r.get(ROWS_KEY) is not None


async def test_restart_with_a_changed_row_derives_and_rewrites_the_digests(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
    rows = replace_row(list(BASE_ROWS), "BTCUSDT", tick_size="0.10000000")
    fake.set_payload(SPOT, payload(rows))
    async with open_refresher(redis_url, settings) as second:
        result = await accepted(second)
        assert len(second.memo.digests) == len(rows)
    stored = decode_row_digests(await r.get(ROWS_KEY))
    assert stored is not None
    assert stored.version == result.version
    assert stored.digests == row_digests(rows)


@pytest.mark.parametrize(
    "tamper",
    ["missing", "garbage", "one digest flipped", "other version", "other fingerprint", "short"],
)
async def test_a_missing_or_tampered_digest_value_falls_back_to_deriving(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis, tamper: str
) -> None:
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
    before = await read_stored(r)
    stored = decode_row_digests(await r.get(ROWS_KEY))
    assert stored is not None
    digests = stored.digests
    if tamper == "missing":
        await r.delete(ROWS_KEY)
    elif tamper == "garbage":
        await r.set(ROWS_KEY, b"not digests")
    elif tamper == "one digest flipped":
        flipped = digests[:16] + bytes([digests[16] ^ 1]) + digests[17:]
        await r.set(ROWS_KEY, encode_row_digests(stored.version, stored.fingerprint, flipped))
    elif tamper == "other version":
        # A snapshot written since by a daemon that does not know the key.
        await r.set(ROWS_KEY, encode_row_digests("0" * 32, stored.fingerprint, digests))
    elif tamper == "other fingerprint":
        await r.set(ROWS_KEY, encode_row_digests(stored.version, b"\0" * 16, digests))
    else:  # a row short: the payload has one row more than the digests say
        await r.set(ROWS_KEY, encode_row_digests(stored.version, stored.fingerprint, digests[16:]))

    async with open_refresher(redis_url, settings) as second:
        result = await second.refresh_once()
        assert result.outcome == "unchanged"
        assert len(second.memo.digests) == len(BASE_ROWS)  # every row derived
        assert second.held is not None
        assert second.held.blobs is not None
    after = await read_stored(r)
    assert (after.symbols, after.by_symbol, after.version) == (
        before.symbols,
        before.by_symbol,
        before.version,
    )
    # The commit wrote the true digests back.
    assert await r.get(ROWS_KEY) == encode_row_digests(
        stored.version, stored.fingerprint, row_digests(list(BASE_ROWS))
    )


async def test_other_listing_settings_are_not_trusted(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
    other = make_settings(
        fake.url, {"markets.spot.cache_ttl": CACHE_TTL, "markets.spot.pinned": ["ETHBTC"]}
    )
    async with open_refresher(redis_url, other) as second:
        result = await accepted(second)  # the listing order changed, so the version did
        assert len(second.memo.digests) == len(BASE_ROWS)
    symbols = await r.get(KEYS.symbols)
    assert symbols is not None
    assert symbols.startswith(b'[{"symbol":"ETHBTC"')
    stored = decode_row_digests(await r.get(ROWS_KEY))
    assert stored is not None
    assert stored.version == result.version


async def test_held_rows_leave_no_digests_and_a_restart_judges_them_again(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
    served = await r.hget(KEYS.by_symbol, "BTCUSDT")
    fake.set_payload(SPOT, payload(replace_row(list(BASE_ROWS), "BTCUSDT", tick_size="NaN")))
    async with open_refresher(redis_url, settings) as second:
        # Held: the served row stays, so the content (and the version) did not change.
        assert (await second.refresh_once()).outcome == "unchanged"
    assert await r.get(ROWS_KEY) is None
    assert await r.hget(KEYS.by_symbol, "BTCUSDT") == served
    meta = await read_meta(r)
    assert '"seen":1' in meta["held_rows"]

    async with open_refresher(redis_url, settings) as third:
        await third.refresh_once()
        assert len(third.memo.digests) == len(BASE_ROWS)  # judged again, not trusted
    meta = await read_meta(r)
    assert '"seen":2' in meta["held_rows"]
    assert await r.hget(KEYS.by_symbol, "BTCUSDT") == served


async def test_a_wrong_type_digest_key_is_reported_and_repaired(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis
) -> None:
    async with open_refresher(redis_url, settings) as first:
        good = await accepted(first)
    await r.delete(ROWS_KEY)
    await r.rpush(ROWS_KEY, b"x")
    async with open_refresher(redis_url, settings) as second:
        failed = await second.refresh_once()
        assert failed.outcome == "error"
        assert ROWS_KEY in failed.reason
        repaired = await second.refresh_once()
        assert repaired.version == good.version
    assert await r.type(ROWS_KEY) == b"string"
    stored = decode_row_digests(await r.get(ROWS_KEY))
    assert stored is not None
    assert stored.version == good.version


async def test_a_trusted_renewal_is_fenced_by_the_lease(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis
) -> None:
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
    before = await read_stored(r)
    await r.set(KEYS.leader, b"someone-else", px=60_000)
    async with open_refresher(redis_url, settings) as second:
        second.store.fence = Fence(KEYS.leader, b"me", 60_000)
        result = await second.refresh_once()
    assert result.outcome == "fenced"
    after = await read_stored(r)
    assert after == before
    assert await read_metrics(r) == {"refresh_success": 1}


async def test_a_trusted_restart_keeps_serving_from_last_good(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    """Without blobs in memory, a vanished listing is put back from last_good."""
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
    async with open_refresher(redis_url, settings) as second:
        assert (await second.refresh_once()).outcome == "unchanged"
        listing = await r.get(KEYS.symbols)
        await r.delete(KEYS.symbols)
        assert await second.watch() == "last_good"
        assert await r.get(KEYS.symbols) == listing


def test_the_base_payload_is_laid_out_as_the_digests_assume() -> None:
    # The tests above compute row digests from BASE_ROWS; the payload must hold those bytes.
    assert all(msgspec.json.encode(row) in BASE_PAYLOAD for row in BASE_ROWS)


@pytest.mark.parametrize(
    ("edit", "reads_whole"),
    [
        ("one tick size", False),
        ("one status", False),
        ("one symbol added", False),
        ("one symbol removed", True),  # which stored symbol is gone only a whole read tells
    ],
)
async def test_restart_with_a_few_changed_rows_reads_only_those_rows(
    redis_url: str,
    settings: Settings,
    r: redis.asyncio.Redis,
    fake: FakeBinance,
    edit: str,
    reads_whole: bool,
) -> None:
    """The stored row digests name the rows a restarted refresher need not read back: it reads
    the others (HMGET), writes incrementally, and Redis ends up as a fresh derivation gives."""
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
    rows = list(BASE_ROWS)
    if edit == "one tick size":
        rows = replace_row(rows, "BTCUSDT", tick_size="0.10000000")
    elif edit == "one status":
        rows = replace_row(rows, "ADAUSDT", status="BREAK")
    elif edit == "one symbol added":
        rows = [*rows, {**rows[1], "symbol": "BTCEUR", "quoteAsset": "EUR"}]
    else:
        rows = [row for row in rows if row["symbol"] != "XRPTRY"]
    fake.set_payload(SPOT, payload(rows))
    fields_before = await r.hlen(KEYS.by_symbol)

    async with logged(r) as seen, open_refresher(redis_url, settings) as second:
        result = await accepted(second)

    assert bool(on(seen, b"HSCAN", KEYS.by_symbol)) is reads_whole
    if not reads_whole:
        # Only the changed or added row was read back, and only it written (no UNLINK).
        key = KEYS.by_symbol.encode()
        reads = [c[2:] for c in seen if c[0].upper() == b"HMGET" and c[1] == key]
        only = {"one tick size": b"BTCUSDT", "one status": b"ADAUSDT"}.get(edit, b"BTCEUR")
        assert reads == [[only]]
        assert on(seen, b"UNLINK", KEYS.by_symbol) == 0
    stored = await read_stored(r)
    assert stored.by_symbol == fresh_by_symbol(payload(rows))
    assert stored.symbols == stored.last_good
    assert stored.version == result.version.encode()
    assert len(stored.by_symbol) == fields_before + {"added": 1, "removed": -1}.get(
        edit.split()[-1], 0
    )
    diff = result.diff
    assert diff is not None
    changed = {*diff.added, *diff.removed, *diff.filters_changed, *diff.other_changed}
    changed |= {symbol for symbol, _, _ in diff.status_changed}
    assert (
        changed
        == {
            "one tick size": {"BTCUSDT"},
            "one status": {"ADAUSDT"},
            "one symbol added": {"BTCEUR"},
            "one symbol removed": {"XRPTRY"},
        }[edit]
    )
    # The new snapshot's own row digests are stored for the next restart.
    after = decode_row_digests(await r.get(ROWS_KEY))
    assert after is not None
    assert after.digests == row_digests(rows)


async def test_a_restart_reads_the_whole_hash_when_a_stored_row_was_deleted_behind_its_back(
    redis_url: str, settings: Settings, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    """meta:rows is a promise about by_symbol; a field deleted without it (another writer)
    shows in the hash's length: the whole hash is read, and the lost row written again."""
    async with open_refresher(redis_url, settings) as first:
        await accepted(first)
    await r.hdel(KEYS.by_symbol, "LUNAUSDT")  # by_symbol no longer what meta:rows describes
    rows = replace_row(list(BASE_ROWS), "BTCUSDT", tick_size="0.10000000")
    fake.set_payload(SPOT, payload(rows))
    async with logged(r) as seen, open_refresher(redis_url, settings) as second:
        await accepted(second)
    assert on(seen, b"HSCAN", KEYS.by_symbol) > 0
    assert (await read_stored(r)).by_symbol == fresh_by_symbol(payload(rows))
