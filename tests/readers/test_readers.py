"""The bot-side readers against real redis-server processes, sync and async twins alike.

Snapshots are written by the real writer (``SnapshotStore.commit`` with blobs from
``listing.build_snapshot`` over the shipped spot sample), so these tests read exactly what
the daemon stores. Waiting is on the reader's own state changes (``wait_until``), never on
sleeps. Most tests run twice: once on ``SymbolReader`` and once on ``AsyncSymbolReader``
driven from a private event-loop thread through the same calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import multiprocessing
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec
import pytest
import redis
import redis.asyncio

from daemon import readers
from daemon.config.settings import Settings, load_settings
from daemon.contract.keys import MarketKeys, keys_for, market_keys
from daemon.contract.meta import SnapshotMeta
from daemon.contract.record import SymbolRecord
from daemon.readers import (
    AsyncSymbolReader,
    NearCacheOptions,
    NearCacheStatus,
    ReaderClosedError,
    SnapshotInfo,
    SnapshotMissingError,
    SymbolReader,
    record_to_dict,
)
from daemon.readers._near_cache import MarketCache, NearCache
from daemon.rules import SymbolRules
from daemon.snapshot import normalize
from daemon.snapshot.diff import diff_snapshots
from daemon.snapshot.listing import SnapshotBlobs, build_snapshot, prioritize
from daemon.snapshot.store import SnapshotStore, new_token
from tests.support.fixtures import SAMPLES
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(20)

T = TypeVar("T")

SAMPLE = SAMPLES / "spot-sample.json"
SPOT = Settings().markets.spot
BASE = normalize.normalize(SAMPLE.read_bytes(), market="spot").records
NON_ASCII = "币安人生USDT"

# Fast enough that losing and regaining the channel takes a fraction of a second.
FAST = NearCacheOptions(ping_interval=0.2, silence_limit=1.0, retry_min=0.01, retry_max=0.1)


def snapshot(btc_tick: str | None = None) -> SnapshotBlobs:
    """The sample snapshot; `btc_tick` changes BTCUSDT's tick size (a new version)."""
    records = [
        msgspec.structs.replace(r, tick_size=btc_tick)
        if btc_tick is not None and r.symbol == "BTCUSDT"
        else r
        for r in BASE
    ]
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


# ---------------------------------------------------------------------------------------------
# sync and async twins behind one interface
# ---------------------------------------------------------------------------------------------


class Reader(Protocol):
    def get_symbol(self, name: str, market: str = "spot") -> SymbolRecord | None: ...
    def get_symbols(
        self, market: str = "spot", statuses: Collection[str] | None = None
    ) -> list[SymbolRecord]: ...
    def snapshot_info(self, market: str = "spot") -> SnapshotInfo: ...
    def near_cache_status(self) -> NearCacheStatus: ...
    def wait_until(
        self, predicate: Callable[[NearCacheStatus], bool], timeout: float | None = 5.0
    ) -> bool: ...
    def close(self) -> None: ...


class AsyncTwin:
    """An AsyncSymbolReader running on its own event-loop thread, called synchronously."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="async-twin")
        self.thread.start()
        self.reader = AsyncSymbolReader.from_url(url, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=15)

    def get_symbol(self, name: str, market: str = "spot") -> SymbolRecord | None:
        return self._run(self.reader.get_symbol(name, market))

    def get_symbols(
        self, market: str = "spot", statuses: Collection[str] | None = None
    ) -> list[SymbolRecord]:
        return self._run(self.reader.get_symbols(market, statuses))

    def snapshot_info(self, market: str = "spot") -> SnapshotInfo:
        return self._run(self.reader.snapshot_info(market))

    def get_rules(self, name: str, market: str = "spot") -> SymbolRules | None:
        return self._run(self.reader.get_rules(name, market))

    def near_cache_status(self) -> NearCacheStatus:
        return self.reader.near_cache_status()

    def wait_until(
        self, predicate: Callable[[NearCacheStatus], bool], timeout: float | None = 5.0
    ) -> bool:
        async def wait() -> bool:
            try:
                async with asyncio.timeout(timeout):
                    await self.reader.wait_until(predicate)
            except TimeoutError:
                return False
            return True

        return self._run(wait())

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self._run(self.reader.aclose())

        async def leftovers() -> list[str]:
            me = asyncio.current_task()
            return [t.get_name() for t in asyncio.all_tasks() if t is not me]

        left = self._run(leftovers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        assert left == [], f"tasks left running after aclose(): {left}"


MakeReader = Callable[..., Reader]


@contextlib.contextmanager
def reader_factory(kind: str) -> Iterator[MakeReader]:
    """Builds readers of one kind ("sync", or "async" driven synchronously); closes them all
    on exit. The reader fixtures of this package are built on it."""
    made: list[Reader] = []

    def make(url: str, **kwargs: Any) -> Reader:
        reader: Reader
        if kind == "sync":
            reader = SymbolReader.from_url(url, **kwargs)
        else:
            reader = AsyncTwin(url, **kwargs)
        made.append(reader)
        return reader

    try:
        yield make
    finally:
        for reader in made:
            reader.close()


@pytest.fixture(params=["sync", "async"])
def make_reader(request: pytest.FixtureRequest) -> Iterator[MakeReader]:
    with reader_factory(request.param) as make:
        yield make


def live(status: NearCacheStatus) -> bool:
    return status.live


# ---------------------------------------------------------------------------------------------
# counting commands the server executed
# ---------------------------------------------------------------------------------------------


def _calls(client: redis.Redis) -> Counter[str]:
    # Successful calls only: a first EVALSHA on a server that does not know the script yet
    # fails with NOSCRIPT (and the script is loaded); that depends on what ran before.
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    return Counter(
        {
            k.removeprefix("cmdstat_"): v["calls"] - v.get("failed_calls", 0)
            for k, v in stats.items()
        }
    )


class Commands:
    """Commands the server ran between entering and leaving (minus our INFO and the
    subscriber's PINGs), by name: ``with Commands(client) as seen: ...; seen.delta``."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.delta: dict[str, int] = {}

    def __enter__(self) -> Commands:
        self._before = _calls(self.client)
        return self

    def __exit__(self, *exc: object) -> None:
        after = _calls(self.client)
        after.subtract(self._before)
        after["info"] -= 1  # the INFO that took the "before" numbers
        ignored = ("ping", "info", "script|load")
        self.delta = {k: v for k, v in after.items() if v > 0 and k not in ignored}


@pytest.fixture
def direct(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# ---------------------------------------------------------------------------------------------
# lookups without the near-cache
# ---------------------------------------------------------------------------------------------


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


V1_RECORDS = {r.symbol: r for r in BASE}


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


# ---------------------------------------------------------------------------------------------
# the near-cache
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# lifetime
# ---------------------------------------------------------------------------------------------


def _subscriber_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "symbold-reader-events"]


def test_sync_close_stops_the_subscriber_cleanly(redis_url: str) -> None:
    Writer(redis_url).commit(V1)
    reader = SymbolReader.from_url(redis_url, near_cache=FAST)
    assert reader.wait_until(live)
    assert reader.get_symbol("BTCUSDT") is not None
    assert len(_subscriber_threads()) == 1
    started = time.monotonic()
    reader.close()
    assert time.monotonic() - started < 1.0
    assert _subscriber_threads() == []
    assert not reader.near_cache_status().live
    with pytest.raises(ReaderClosedError):
        reader.get_symbol("BTCUSDT")
    reader.close()  # idempotent
    gc.collect()  # an unclosed socket would raise ResourceWarning here (-W error)


def test_dropped_reader_stops_its_subscriber(redis_url: str) -> None:
    reader = SymbolReader.from_url(redis_url, near_cache=FAST)
    assert reader.wait_until(live)
    thread = _subscriber_threads()[0]
    reader._clients.close()  # what close() would do for the pool; the thread is the point
    del reader
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


async def test_async_close_stops_the_task_cleanly(redis_url: str) -> None:
    await asyncio.to_thread(Writer(redis_url).commit, V1)
    reader = AsyncSymbolReader.from_url(redis_url, near_cache=FAST)
    async with asyncio.timeout(5):
        await reader.wait_until(live)
    assert await reader.get_symbol("BTCUSDT") == V1_RECORDS["BTCUSDT"]
    assert await reader.get_symbol("BTCUSDT") == V1_RECORDS["BTCUSDT"]
    await reader.aclose()
    me = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not me] == []
    with pytest.raises(ReaderClosedError):
        await reader.get_symbol("ETHUSDT")
    await reader.aclose()


async def test_async_reader_refuses_another_loop(redis_url: str) -> None:
    reader = AsyncSymbolReader.from_url(redis_url)
    assert not (await reader.snapshot_info()).present  # the first read binds it to this loop

    def other_loop() -> None:
        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(reader.get_symbol("BTCUSDT"))

    await asyncio.to_thread(other_loop)
    await reader.aclose()


def _forked_child(reader: SymbolReader, out: Any) -> None:
    try:
        first = reader.get_symbol("BTCUSDT")  # the parent's cached entries are not trusted here
        came_up = reader.wait_until(live)
        second = reader.get_symbol("BTCUSDT")
        third = reader.get_symbol("BTCUSDT")
        out.put((btc(first), came_up, second is third, len(_subscriber_threads())))
    finally:
        reader.close()


def test_forked_child_gets_its_own_connections_and_subscriber(redis_url: str) -> None:
    writer = Writer(redis_url)
    writer.commit(V1)
    with SymbolReader.from_url(redis_url, near_cache=FAST) as reader:
        assert reader.wait_until(live)
        parent_record = reader.get_symbol("BTCUSDT")
        writer.commit(V2, publish=False)  # the parent's cache still holds V1, legitimately
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a process with threads; that is the case here.
            warnings.simplefilter("ignore", DeprecationWarning)
            proc = ctx.Process(target=_forked_child, args=(reader, out))
            proc.start()
        result = out.get(timeout=15)
        proc.join(15)
        out.close()
        out.join_thread()
        assert proc.exitcode == 0
        assert result == ("0.02000000", True, True, 1)
        # The parent's subscriber and connections are untouched by the child.
        assert reader.near_cache_status().live
        assert reader.get_symbol("BTCUSDT") is parent_record


# ---------------------------------------------------------------------------------------------
# module-level functions
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def configured(redis_url: str) -> Iterator[str]:
    readers.configure(load_settings(environ={"REDIS_URL": redis_url}, use_default_path=False))
    yield redis_url
    readers.reset()


def test_module_functions_sync(configured: str) -> None:
    Writer(configured).commit(V1)
    assert readers.get_symbol_sync("BTCUSDT") == V1_RECORDS["BTCUSDT"]
    assert readers.get_symbol_sync("NOSUCHSYMBOL") is None
    assert len(readers.get_symbols_sync()) == V1.listed
    assert readers.snapshot_info_sync().version == V1.version
    assert readers.default_reader() is readers.default_reader()
    seen: list[SymbolReader] = []
    threads = [
        threading.Thread(target=lambda: seen.append(readers.default_reader())) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(r) for r in seen}) == 1


def test_module_functions_async_across_two_loops(configured: str) -> None:
    Writer(configured).commit(V1)

    async def work() -> tuple[SymbolRecord | None, int, str | None]:
        out = (
            await readers.get_symbol("BTCUSDT"),
            len(await readers.get_symbols()),
            (await readers.snapshot_info()).version,
        )
        await readers.close_async()
        return out

    expected = (V1_RECORDS["BTCUSDT"], V1.listed, V1.version)
    assert asyncio.run(work()) == expected
    assert asyncio.run(work()) == expected


def test_module_functions_with_near_cache(redis_url: str) -> None:
    Writer(redis_url).commit(V1)
    loaded = load_settings(environ={"REDIS_URL": redis_url}, use_default_path=False)
    readers.configure(loaded, near_cache=FAST)
    try:
        reader = readers.default_reader()
        assert reader.wait_until(live)
        assert readers.get_symbol_sync("BTCUSDT") == V1_RECORDS["BTCUSDT"]
        assert readers.get_symbol_sync("BTCUSDT") is readers.get_symbol_sync("BTCUSDT")
    finally:
        readers.reset()
    assert _subscriber_threads() == []


# ---------------------------------------------------------------------------------------------
# the near-cache rules, without Redis
# ---------------------------------------------------------------------------------------------


def _record(tick: str) -> SymbolRecord:
    return msgspec.structs.replace(V1_RECORDS["BTCUSDT"], tick_size=tick)


def test_rule_current_ticket_replaces_version() -> None:
    near = NearCache(NearCacheOptions(markets=("spot",)))
    mc = near.markets["spot"]
    near.offer(mc, mc.gen, "v1", "BTCUSDT", _record("1"))
    assert mc.version == "v1"
    assert mc.records["BTCUSDT"] == _record("1")
    near.offer(mc, mc.gen, "v2", "ETHUSDT", None)  # a read that started later saw v2
    assert mc.version == "v2"
    assert mc.records == {"ETHUSDT": None}


def test_rule_stale_ticket_with_other_version_empties() -> None:
    near = NearCache(NearCacheOptions(markets=("spot",)))
    mc: MarketCache = near.markets["spot"]
    ticket = mc.gen  # two reads start together...
    near.offer(mc, ticket, "v2", "BTCUSDT", _record("2"))  # ...one returns v2 first
    near.offer(mc, ticket, "v1", "ETHUSDT", None)  # the other saw v1: order unknown
    assert mc.version is None
    assert mc.records == {}
    assert "BTCUSDT" not in mc.records  # neither is served


def test_rule_stale_ticket_with_same_version_installs() -> None:
    near = NearCache(NearCacheOptions(markets=("spot",)))
    mc = near.markets["spot"]
    ticket = mc.gen
    near.offer(mc, ticket, "v1", "BTCUSDT", _record("1"))
    near.offer(mc, ticket, "v1", "ETHUSDT", None)  # same content hash: same data
    assert mc.records == {"BTCUSDT": _record("1"), "ETHUSDT": None}


def test_rule_events_and_subscription() -> None:
    near = NearCache(NearCacheOptions(markets=("spot",)))
    mc = near.markets["spot"]
    near.offer(mc, mc.gen, "v1", "BTCUSDT", _record("1"))
    near.on_event("spot", b'{"market":"spot","version":"v1"}')  # late or repeated: kept
    assert mc.records
    ticket = mc.gen
    near.on_event("spot", b'{"market":"spot","version":"v2"}')
    assert mc.version is None
    assert mc.records == {}
    near.offer(mc, ticket, "v1", "BTCUSDT", _record("1"))  # read from before the event
    assert mc.records == {}
    near.offer(mc, mc.gen, "v2", "BTCUSDT", _record("2"))
    near.on_event("spot", b"not json")  # unreadable: drop, to be safe
    assert mc.records == {}
    near.offer(mc, mc.gen, "v2", "BTCUSDT", _record("2"))
    near.subscribed(time.monotonic())  # anything may have been missed before
    assert mc.records == {}
    assert near.live
    assert near.lost() is True
    assert near.live_until == 0.0


def test_rule_no_snapshot_is_never_cached() -> None:
    near = NearCache(NearCacheOptions(markets=("spot",), max_entries=2))
    mc = near.markets["spot"]
    near.offer(mc, mc.gen, None, "BTCUSDT", None)
    assert mc.records == {}
    for name in ("A", "B", "C"):
        near.offer(mc, mc.gen, "v1", name, None)
    assert len(mc.records) == 2  # bounded


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="ping_interval"):
        NearCacheOptions(ping_interval=2.0, silence_limit=1.0)
    with pytest.raises(TypeError):
        NearCacheOptions(markets="spot")  # type: ignore[arg-type]
