"""Reader lookups without the near-cache: one record, the listing, snapshot info, custom key
names, and what a read raises when Redis is down.

Against real redis-server processes; tests taking ``make_reader`` run on both readers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgspec
import pytest
import redis
import redis.asyncio

from daemon.config.settings import Settings, load_settings
from daemon.contract.keys import keys_for, market_keys
from daemon.readers import SnapshotMissingError, SymbolReader, record_to_dict
from tests.readers.reader_twins import MakeReader
from tests.readers.sample_snapshots import BASE, NON_ASCII, V1, V1_RECORDS, Writer
from tests.support.command_counts import Commands
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(20)


def test_get_symbol_returns_every_stored_record(redis_url: str, make_reader: MakeReader) -> None:
    Writer(redis_url).commit(V1)
    reader = make_reader(redis_url)
    for record in BASE:
        assert reader.get_symbol(record.symbol) == record
    got = reader.get_symbol(NON_ASCII)
    assert got is not None
    assert got.symbol == NON_ASCII
    assert got.quote == "USDT"
    assert reader.get_symbol("NOSUCHSYMBOL") is None
    with pytest.raises(SnapshotMissingError):  # no snapshot for that market: not "no such"
        reader.get_symbol("BTCUSDT", "usdm")
    halted = next(r for r in BASE if r.status == "HALT")
    assert reader.get_symbol(halted.symbol) == halted  # any status, not only listed ones


def test_single_lookup_is_exactly_one_hget(
    redis_url: str, direct: redis.Redis, make_reader: MakeReader
) -> None:
    Writer(redis_url).commit(V1)
    reader = make_reader(redis_url)
    assert reader.get_symbol("ETHUSDT") is not None  # connect first: HELLO, SELECT...
    for name in ("BTCUSDT", NON_ASCII):
        with Commands(direct) as seen:
            reader.get_symbol(name)
        assert seen.delta == {"hget": 1}, name
    # A miss: one read-only script (its HGET and EXISTS counted too) tells "no such symbol"
    # from "no snapshot"; still never the listing.
    with Commands(direct) as seen:
        reader.get_symbol("NOSUCHSYMBOL")
    assert seen.delta == {"hget": 2, "evalsha_ro": 1, "exists": 1}


def test_get_symbols_is_the_stored_listing_in_order(
    redis_url: str, direct: redis.Redis, make_reader: MakeReader
) -> None:
    Writer(redis_url).commit(V1)
    reader = make_reader(redis_url)
    got = reader.get_symbols()
    stored = json.loads(direct.get(market_keys("spot").symbols) or b"[]")
    assert [r.symbol for r in got] == [row["symbol"] for row in stored]
    assert [record_to_dict(r) for r in got] == stored
    assert len(got) == V1.listed
    assert NON_ASCII in [r.symbol for r in got]
    assert reader.get_symbols("usdm") == []


def test_get_symbols_falls_back_to_last_good(
    redis_url: str, direct: redis.Redis, make_reader: MakeReader
) -> None:
    Writer(redis_url).commit(V1)
    reader = make_reader(redis_url)
    expected = reader.get_symbols()
    keys = market_keys("spot")
    direct.delete(keys.symbols)  # as if its TTL ran out
    assert reader.get_symbols() == expected
    direct.delete(keys.last_good)
    assert reader.get_symbols() == []


def test_get_symbols_by_status_order(redis_url: str, make_reader: MakeReader) -> None:
    Writer(redis_url).commit(V1)
    reader = make_reader(redis_url)
    listing = reader.get_symbols()
    # The daemon's list_statuses give exactly the listing.
    assert reader.get_symbols(statuses={"TRADING"}) == listing
    unlisted = sorted(r.symbol for r in BASE if r.status in ("BREAK", "HALT"))
    got = reader.get_symbols(statuses=["BREAK", "HALT"])
    assert [r.symbol for r in got] == unlisted
    # Listed ones first in listing order, then the others by symbol.
    mixed = reader.get_symbols(statuses={"TRADING", "BREAK"})
    breaks = sorted(r.symbol for r in BASE if r.status == "BREAK")
    assert [r.symbol for r in mixed] == [r.symbol for r in listing] + breaks
    assert reader.get_symbols(statuses=set()) == []
    assert reader.get_symbols(statuses={"NO_SUCH_STATUS"}) == []
    with pytest.raises(TypeError):
        reader.get_symbols(statuses="TRADING")


def test_snapshot_info(redis_url: str, make_reader: MakeReader) -> None:
    writer = Writer(redis_url)
    reader = make_reader(redis_url)
    empty = reader.snapshot_info()
    assert not empty.present
    assert empty.version is None
    assert empty.age is None
    assert not empty.has_symbols
    assert not empty.has_last_good

    before = time.time()
    writer.commit(V1)
    info = reader.snapshot_info()
    assert info.present
    assert info.version == V1.version
    assert (info.count, info.listed) == (V1.count, V1.listed)
    assert info.stale is False
    assert info.has_symbols
    assert info.has_last_good
    assert info.age is not None
    assert 0.0 <= info.age < 5.0
    assert info.refreshed_at is not None
    assert info.refreshed_at >= before - 1
    assert info.source == "test"

    writer.record_failure()
    failed = reader.snapshot_info()
    assert failed.stale is True
    assert failed.last_error == "boom"
    assert failed.version == V1.version


def test_custom_key_names(redis_url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[redis]\nkey_prefix = "bot"\n[markets.spot.keys]\nby_symbol = "legacy:by_symbol"\n'
    )
    loaded = load_settings(config, environ={"REDIS_URL": redis_url})
    keys = keys_for(loaded.settings, "spot")
    assert keys.by_symbol == "legacy:by_symbol"
    assert keys.meta == "bot:{spot}:meta"
    Writer(redis_url, keys).commit(V1)
    with SymbolReader.from_settings(loaded) as reader:
        assert reader.keys("spot") == keys
        assert reader.get_symbol("BTCUSDT") == V1_RECORDS["BTCUSDT"]
        assert reader.snapshot_info().version == V1.version


def test_record_to_dict_is_the_stored_json(redis_url: str, direct: redis.Redis) -> None:
    Writer(redis_url).commit(V1)
    with SymbolReader.from_url(redis_url) as reader:
        record = reader.get_symbol("BTCUSDT")
    assert record is not None
    raw = direct.hget(market_keys("spot").by_symbol, "BTCUSDT")
    assert record_to_dict(record) == json.loads(raw or b"null")
    assert record_to_dict(record) is not record_to_dict(record)  # a fresh dict each time


def test_reads_raise_when_redis_is_down(redis_factory: type[RedisServer]) -> None:
    server = redis_factory().start()
    Writer(server.url).commit(V1)
    settings = msgspec.structs.replace(
        Settings(), redis=msgspec.structs.replace(Settings().redis, retry_attempts=1)
    )
    with SymbolReader.from_url(server.url, settings=settings) as reader:
        assert reader.get_symbol("BTCUSDT") is not None
        server.stop()
        # An outage is an error, never "no such symbol".
        with pytest.raises(redis.ConnectionError):
            reader.get_symbol("BTCUSDT")
        server.start()
        with pytest.raises(SnapshotMissingError):  # back, empty
            reader.get_symbol("BTCUSDT")
        Writer(server.url).commit(V1)
        assert reader.get_symbol("BTCUSDT") == V1_RECORDS["BTCUSDT"]
