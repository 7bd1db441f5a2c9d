"""Read-only scripts (an ACL user limited to reads), the EVALSHA fallback, and a snapshot
that is missing (deleted or evicted) rather than a symbol that is not in it; sync and async
twins alike, against real redis-server processes."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from daemon.contract.keys import market_keys
from daemon.readers import SnapshotMissingError
from tests.readers.reader_twins import FAST, MakeReader, Reader, live
from tests.readers.sample_snapshots import V1, V1_RECORDS, V2, Writer, btc
from tests.support.command_counts import Commands
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)

KEYS = market_keys("spot")

# The minimal rights a reader needs (documented in the README's readers section): read
# commands on the snapshot keys, the events channels, the read-only script commands.
READER_ACL = (
    "on",
    ">readerpw",
    "resetkeys",
    "%R~symbold:*",
    "resetchannels",
    "&symbold:*",
    "-@all",
    "+@read",
    "+@connection",
    "+evalsha_ro",
    "+script|load",
    "+subscribe",
    "+unsubscribe",
)


def _command(client: redis.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _every_call(reader: Reader) -> None:
    assert reader.get_symbol("BTCUSDT") == V1_RECORDS["BTCUSDT"]
    assert reader.get_symbol("NOSUCHSYMBOL") is None
    assert len(reader.get_symbols()) == V1.listed
    assert reader.get_symbols(statuses={"HALT"})
    assert reader.snapshot_info().version == V1.version


@pytest.mark.parametrize("near_cache", [False, True], ids=["direct", "near-cache"])
def test_reader_acl_user_limited_to_reads(
    redis_factory: type[RedisServer], make_reader: MakeReader, near_cache: bool
) -> None:
    server = redis_factory().start()
    admin = server.client()
    try:
        _command(admin, "ACL", "SETUSER", "reader", *READER_ACL)
        url = f"redis://reader:readerpw@127.0.0.1:{server.port}/0"
        # The user cannot write, nor run a script with plain EVALSHA (Redis counts it a write).
        limited = redis.Redis.from_url(url)
        with pytest.raises(redis.exceptions.NoPermissionError):
            limited.set(KEYS.meta, "x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            _command(limited, "EVALSHA", "0" * 40, 0)
        limited.close()

        writer = Writer(server.url)
        writer.commit(V1)
        reader = make_reader(url, near_cache=FAST if near_cache else False)
        if near_cache:
            assert reader.wait_until(live)
        _every_call(reader)
        if near_cache:
            with Commands(admin) as cached:
                assert reader.get_symbol("BTCUSDT") == V1_RECORDS["BTCUSDT"]
            assert cached.delta == {}  # served from memory
            writer.commit(V2)
            assert reader.wait_until(lambda s: s.last_events.get("spot") == V2.version)
            assert btc(reader.get_symbol("BTCUSDT")) == "0.02000000"
    finally:
        admin.close()


def test_falls_back_to_evalsha_without_evalsha_ro(
    redis_factory: type[RedisServer], make_reader: MakeReader
) -> None:
    # As on a server older than 7.0: EVALSHA_RO is an unknown command.
    server = redis_factory(extra_args=("--rename-command", "EVALSHA_RO", "")).start()
    admin = server.client()
    try:
        Writer(server.url).commit(V1)
        reader = make_reader(server.url)
        assert reader.get_symbols()  # detects the server, once
        with Commands(admin) as seen:
            _every_call(reader)
        assert seen.delta.get("evalsha") == 4  # all but the hit, which is a plain HGET
        assert "evalsha_ro" not in seen.delta
    finally:
        admin.close()


@pytest.mark.parametrize("near_cache", [False, True], ids=["direct", "near-cache"])
def test_deleted_hash_is_snapshot_missing_not_no_such_symbol(
    redis_url: str, make_reader: MakeReader, near_cache: bool
) -> None:
    Writer(redis_url).commit(V1)
    reader = make_reader(redis_url, near_cache=FAST if near_cache else False)
    if near_cache:
        assert reader.wait_until(live)
    assert reader.get_symbol("BTCUSDT") == V1_RECORDS["BTCUSDT"]
    assert reader.get_symbol("NOSUCHSYMBOL") is None
    direct = redis.Redis.from_url(redis_url)
    try:
        direct.delete(KEYS.by_symbol)  # meta and the listing stay
        assert reader.snapshot_info().present  # seen via meta; the hash is gone all the same
        # Names not looked up before: the near-cache would answer those from memory, rightly
        # (they belong to the snapshot version that is still current).
        for name in ("NOSUCHSYMBOL2", "ETHUSDT"):
            with pytest.raises(SnapshotMissingError) as caught:
                reader.get_symbol(name)
            assert caught.value.market == "spot"
            assert caught.value.key == KEYS.by_symbol
        direct.delete(KEYS.meta)  # without meta too
        with pytest.raises(SnapshotMissingError):
            reader.get_symbol("ETHUSDT")
    finally:
        direct.close()


@pytest.mark.parametrize("near_cache", [False, True], ids=["direct", "near-cache"])
def test_evicted_hash_is_snapshot_missing(
    redis_factory: type[RedisServer], make_reader: MakeReader, near_cache: bool
) -> None:
    server = redis_factory().start()
    admin = server.client()
    try:
        Writer(server.url).commit(V1)
        reader = make_reader(server.url, near_cache=FAST if near_cache else False)
        assert reader.get_symbol("BTCUSDT") == V1_RECORDS["BTCUSDT"]
        admin.config_set("maxmemory-policy", "allkeys-lru")
        admin.config_set("maxmemory", 1)  # far below what is stored: LRU evicts every key
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            admin.set("filler", "x" * 1000)  # any command runs the eviction first
        assert admin.exists(KEYS.by_symbol) == 0
        with pytest.raises(SnapshotMissingError):
            reader.get_symbol("BTCUSDT")
        with pytest.raises(SnapshotMissingError):
            reader.get_symbol("NOSUCHSYMBOL")
    finally:
        admin.close()
