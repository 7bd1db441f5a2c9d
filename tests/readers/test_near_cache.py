"""The readers' near-cache: hits, invalidation by events, never going back to an older version,
and going direct while the events channel is lost.

Against real redis-server processes; tests taking ``make_reader`` run on both readers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio

from daemon.readers import SnapshotMissingError, SymbolReader
from tests.readers.reader_twins import FAST, MakeReader, Reader, live
from tests.readers.sample_snapshots import V1, V1_RECORDS, V2, V3, Writer, btc, snapshot
from tests.support.command_counts import Commands
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(20)


def test_near_cache_hit_after_first_read(
    redis_url: str, direct: redis.Redis, make_reader: MakeReader
) -> None:
    Writer(redis_url).commit(V1)
    reader = make_reader(redis_url, near_cache=FAST)
    assert reader.wait_until(live)
    with Commands(direct) as first:
        record = reader.get_symbol("BTCUSDT")
        missing = reader.get_symbol("NOSUCHSYMBOL")
        listing = reader.get_symbols()
    assert record == V1_RECORDS["BTCUSDT"]
    assert missing is None
    assert first.delta["evalsha_ro"] == 3  # record + version in one script, per miss
    with Commands(direct) as again:
        for _ in range(100):
            assert reader.get_symbol("BTCUSDT") is record  # the same object, from memory
            assert reader.get_symbol("NOSUCHSYMBOL") is None  # negative answers too
        assert reader.get_symbols() == listing
    assert again.delta == {}
    status = reader.near_cache_status()
    assert status.versions["spot"] == V1.version
    assert status.entries["spot"] == 2


def test_event_drops_the_cached_version(
    redis_url: str, direct: redis.Redis, make_reader: MakeReader
) -> None:
    writer = Writer(redis_url)
    writer.commit(V1)
    reader = make_reader(redis_url, near_cache=FAST)
    assert reader.wait_until(live)
    assert btc(reader.get_symbol("BTCUSDT")) == "0.01000000"
    assert len(reader.get_symbols()) == V1.listed

    writer.commit(V2)
    assert reader.wait_until(lambda s: s.last_events.get("spot") == V2.version)
    with Commands(direct) as seen:
        assert btc(reader.get_symbol("BTCUSDT")) == "0.02000000"
    assert seen.delta.get("evalsha_ro") == 1  # dropped, so read again
    assert next(r for r in reader.get_symbols() if r.symbol == "BTCUSDT").tick_size == (
        "0.02000000"
    )
    with Commands(direct) as cached:
        assert btc(reader.get_symbol("BTCUSDT")) == "0.02000000"
    assert cached.delta == {}
    assert reader.near_cache_status().versions["spot"] == V2.version


def _observe_via_info(reader: Reader) -> None:
    assert reader.snapshot_info().version == V2.version


def _observe_via_other_symbol(reader: Reader) -> None:
    assert reader.get_symbol("ETHUSDT") is not None


def _observe_via_listing(reader: Reader) -> None:
    listing = reader.get_symbols()
    assert next(r for r in listing if r.symbol == "BTCUSDT").tick_size == "0.02000000"


def _observe_via_statuses(reader: Reader) -> None:
    assert reader.get_symbols(statuses={"HALT"})


@pytest.mark.parametrize(
    "observe",
    [_observe_via_info, _observe_via_other_symbol, _observe_via_listing, _observe_via_statuses],
)
def test_never_serves_a_version_older_than_one_seen(
    redis_url: str, make_reader: MakeReader, observe: Callable[[Reader], None]
) -> None:
    writer = Writer(redis_url)
    writer.commit(V1)
    reader = make_reader(redis_url, near_cache=FAST)
    assert reader.wait_until(live)
    assert btc(reader.get_symbol("BTCUSDT")) == "0.01000000"  # cached: V1
    # V2 is committed but its message never arrives (as if lost in transit).
    writer.commit(V2, publish=False)
    assert btc(reader.get_symbol("BTCUSDT")) == "0.01000000"  # nothing says V1 is old yet
    observe(reader)  # ... now the reader has seen V2 in Redis
    assert btc(reader.get_symbol("BTCUSDT")) == "0.02000000"
    assert reader.near_cache_status().versions["spot"] == V2.version


def test_per_thread_versions_never_go_back_under_concurrent_commits(redis_url: str) -> None:
    writer = Writer(redis_url)
    ticks = [f"0.{i:02d}000000" for i in range(1, 16)]
    writer.commit(snapshot(ticks[0]))
    stop = threading.Event()
    errors: list[str] = []

    with SymbolReader.from_url(redis_url, near_cache=FAST) as reader:
        assert reader.wait_until(live)

        def hammer(n: int) -> None:
            seen = 0
            while not stop.is_set():
                tick = btc(reader.get_symbol("BTCUSDT"))
                index = ticks.index(tick or "")
                if index < seen:
                    errors.append(f"thread {n}: saw {ticks[seen]} then {tick}")
                seen = max(seen, index)
                if n % 2 and reader.snapshot_info().version is None:  # mix in observations
                    errors.append("no snapshot")

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        try:
            for i, tick in enumerate(ticks[1:], start=1):
                # Every other commit's message is lost: only reads can reveal those.
                last = writer.commit(snapshot(tick), publish=i % 2 == 0)
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        assert errors == []
        assert reader.wait_until(lambda s: s.last_events.get("spot") == last.version)
        assert btc(reader.get_symbol("BTCUSDT")) == ticks[-1]


def _command(client: redis.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _acl_server(factory: type[RedisServer]) -> tuple[RedisServer, redis.Redis, str]:
    server = factory().start()
    admin = server.client()
    _command(admin, "ACL", "SETUSER", "bot", "on", ">botpw", "~*", "&*", "+@all")
    return server, admin, f"redis://bot:botpw@127.0.0.1:{server.port}/0"


def test_channel_killed_reads_go_direct_then_caching_resumes(
    redis_factory: type[RedisServer], make_reader: MakeReader
) -> None:
    server, admin, url = _acl_server(redis_factory)
    try:
        writer = Writer(server.url)
        writer.commit(V1)
        reader = make_reader(url, near_cache=FAST)
        assert reader.wait_until(live)
        assert btc(reader.get_symbol("BTCUSDT")) == "0.01000000"

        # Kill the subscription and keep it from coming back until we allow it.
        _command(admin, "ACL", "SETUSER", "bot", "resetchannels")
        _command(admin, "CLIENT", "KILL", "TYPE", "pubsub")
        assert reader.wait_until(lambda s: not s.live and s.drops >= 1)

        writer.commit(V2)  # published to nobody: the reader is not subscribed
        with Commands(admin) as seen:
            for _ in range(3):
                assert btc(reader.get_symbol("BTCUSDT")) == "0.02000000"
        assert seen.delta.get("evalsha_ro") == 3  # every read went to Redis

        _command(admin, "ACL", "SETUSER", "bot", "allchannels")
        assert reader.wait_until(lambda s: s.live and s.subscriptions >= 2)
        assert btc(reader.get_symbol("BTCUSDT")) == "0.02000000"
        with Commands(admin) as cached:
            assert btc(reader.get_symbol("BTCUSDT")) == "0.02000000"
        assert cached.delta == {}

        # And invalidation works on the new subscription.
        writer.commit(V3)
        assert reader.wait_until(lambda s: s.last_events.get("spot") == V3.version)
        assert btc(reader.get_symbol("BTCUSDT")) == "0.03000000"
    finally:
        admin.close()


def test_redis_restart_with_near_cache(
    redis_factory: type[RedisServer], make_reader: MakeReader
) -> None:
    server = redis_factory().start()
    writer = Writer(server.url)
    writer.commit(V1)
    reader = make_reader(server.url, near_cache=FAST)
    assert reader.wait_until(live)
    assert btc(reader.get_symbol("BTCUSDT")) == "0.01000000"

    server.restart()  # comes back empty
    assert reader.wait_until(lambda s: s.live and s.subscriptions >= 2)
    with pytest.raises(SnapshotMissingError):  # cache dropped on resubscribe; Redis empty
        reader.get_symbol("BTCUSDT")
    assert reader.get_symbols() == []
    assert not reader.snapshot_info().present

    writer.commit(V2)  # the daemon writes again
    assert btc(reader.get_symbol("BTCUSDT")) == "0.02000000"  # whether the event came yet or not
    assert reader.wait_until(lambda s: s.last_events.get("spot") == V2.version)
    assert btc(reader.get_symbol("BTCUSDT")) == "0.02000000"
    assert reader.near_cache_status().versions["spot"] == V2.version


def test_silent_channel_is_declared_lost(
    redis_factory: type[RedisServer], make_reader: MakeReader
) -> None:
    # SIGSTOP: the TCP connection stays up but nothing answers the PINGs.
    server = redis_factory().start()
    Writer(server.url).commit(V1)
    reader = make_reader(server.url, near_cache=FAST)
    assert reader.wait_until(live)
    server.pause()
    try:
        assert reader.wait_until(lambda s: not s.live, timeout=FAST.silence_limit + 3)
    finally:
        server.resume()
    assert reader.wait_until(lambda s: s.live and s.subscriptions >= 2)
    assert btc(reader.get_symbol("BTCUSDT")) == "0.01000000"
