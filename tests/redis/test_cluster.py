"""Redis Cluster: URL forms, the cluster clients, the daemon's writes and reads, a failover.

The real-process tests share one cluster per module (3 primaries, 3 replicas on loopback,
``tests/support/redis_deployments.py``). They run the daemon's own code (MarketRefresher,
SnapshotStore, the readers) against it, kill -9 the primary that owns the ``{spot}`` slot and
check that the same long-lived clients carry on once its replica is promoted.

redis-py's cluster pipelines refuse the ``publish()`` method (RedisClusterException, not a
RedisError), so the store queues PUBLISH as a raw command;
``test_store_publishes_events_on_a_cluster`` keeps it that way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
import redis.retry
from redis.exceptions import CrossSlotTransactionError, RedisClusterException, WatchError

from daemon.config.redis_target import Deployment, parse_redis_url
from daemon.config.settings import ConfigError, KeyOverrides, Settings
from daemon.contract.keys import market_keys
from daemon.readers import AsyncSymbolReader, NearCacheOptions, SymbolReader
from daemon.redis.clients import check_one_slot
from daemon.redis.patches import AsyncRedisCluster, ClusterUnavailableError, SyncRedisCluster
from daemon.refresh.cycle import MarketRefresher
from tests.support.builders import make_rows, make_settings, open_refresher, payload, replace_row
from tests.support.daemon_proc import run_cli
from tests.support.fake_binance import SPOT, FakeBinance, Fault
from tests.support.redis_deployments import (
    LocalCluster,
    cluster_support_problem,
    config_for,
    wait_until,
)
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.timeout(60)

K = market_keys("spot")
SECRET = "Cl0ster-secret-never-logged"
FAST_NEAR_CACHE = NearCacheOptions(
    ping_interval=0.2, silence_limit=1.0, retry_min=0.05, retry_max=0.5
)


# -- settings and URL forms (no server) ------------------------------------------------------


def test_cluster_url_forms_and_redaction() -> None:
    url = parse_redis_url(f"redis+cluster://bot:{SECRET}@10.0.0.1:7000,10.0.0.2,[::1]:7002", "x")
    assert url.mode == "cluster"
    assert url.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (url.username, url.password, url.db) == ("bot", SECRET, 0)
    described = url.describe()
    assert described["nodes"] == ["10.0.0.1:7000", "10.0.0.2:6379", "[::1]:7002"]
    assert described["password"] == "set"
    assert SECRET not in repr(url) + str(described) + url.redacted
    assert url.redacted == "redis+cluster://bot:***@10.0.0.1:7000,10.0.0.2,[::1]:7002"
    assert SECRET in url.secrets()

    tls = parse_redis_url(
        "rediss+cluster://h:7000?ssl_cert_reqs=CERT_NONE&ssl_ca_certs=/ca.pem", "x"
    )
    assert (tls.tls, tls.tls_verify, tls.tls_options) == (
        True,
        "none",
        (("ssl_ca_certs", "/ca.pem"),),
    )
    assert parse_redis_url("rediss+cluster://h:7000", "x").tls_verify == "required"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("redis+cluster://h:7000/1", "only database 0"),
        ("redis+cluster://h:7000?ssl_cert_reqs=required", "needs rediss+cluster://"),
        ("redis+cluster://h:7000?protocol=3", "not supported with redis+cluster://"),
        (f"redis+cluster://:{SECRET}@h:notaport", "is not host:port"),
        ("redis+cluster://", "names no host"),
    ],
)
def test_bad_cluster_urls_are_config_errors(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_redis_url(url, "$REDIS_URL")
    assert fragment in str(info.value)
    assert SECRET not in str(info.value)


def test_mode_setting_turns_a_redis_url_into_a_cluster_seed() -> None:
    config = config_for("redis://:pw@10.0.0.1:7000/0", mode="cluster")
    assert config.target == Deployment("cluster", (("10.0.0.1", 7000),))
    assert config.describe()["mode"] == "cluster"
    # the URL form needs no setting; the setting may repeat it
    assert config_for("redis+cluster://h:1,h:2").mode == "cluster"
    assert config_for("redis+cluster://h:1", mode="cluster").target.nodes == (("h", 1),)
    for url, overrides, fragment in [
        ("redis+cluster://h:1", {"mode": "sentinel"}, "is a redis+cluster:// (cluster) URL"),
        ("redis://h:1/2", {"mode": "cluster"}, "only database 0"),
        ("unix:///run/redis.sock", {"mode": "cluster"}, "needs a host:port URL"),
        ("redis+cluster://h:1", {"sentinels": ("s:26379",)}, "redis.sentinels is set"),
        ("redis+cluster://h:1", {"service_name": "m"}, "redis.service_name is set"),
    ]:
        with pytest.raises(ConfigError) as info:
            config_for(url, **overrides)
        assert fragment in str(info.value)


def test_one_market_must_live_in_one_slot() -> None:
    keys = market_keys("spot")
    check_one_slot("markets.spot.keys", [*keys.all_keys(), keys.events])
    legacy = market_keys("spot", overrides=KeyOverrides(symbols="binance:symbols"))
    with pytest.raises(ConfigError, match=r"binance:symbols") as info:
        check_one_slot("markets.spot.keys", [*legacy.all_keys(), legacy.events])
    assert "one hash slot" in str(info.value)


async def test_an_unreachable_cluster_is_a_redis_error_not_a_crash() -> None:
    """redis-py reports "no node answers" as a bare RedisClusterException; the clients turn
    it into a ConnectionError, so the refresh cycle reports Redis down instead of raising."""
    url = f"redis+cluster://:{SECRET}@127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    async with FakeBinance() as fake:
        settings = make_settings(fake.url)
        async with open_refresher(url, settings) as ref:
            result = await ref.refresh_once()
        assert fake.requests[SPOT] == 0  # no upstream weight spent while Redis is down
    assert (result.outcome, result.redis_down) == ("error", True)
    assert "ClusterUnavailableError" in result.reason
    assert SECRET not in result.reason
    with pytest.raises(redis.ConnectionError) as info:
        config_for(url).make_sync()  # the sync client reads the topology when built
    assert isinstance(info.value, ClusterUnavailableError)
    assert isinstance(info.value, RedisClusterException)  # still redis-py's type too


# -- real cluster ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    problem = cluster_support_problem()
    if problem is not None:
        pytest.skip(f"this redis-server cannot run a cluster: {problem}")
    with LocalCluster(primaries=3, replicas=1) as running:
        yield running


@pytest.fixture
def healthy(cluster: LocalCluster) -> LocalCluster:
    """The module's cluster with every node back: a node an earlier test killed rejoins (as a
    replica of whoever took over its slots)."""
    for node in cluster.nodes:
        if not node.running:
            node.start()
    cluster.wait_healthy(timeout=20)
    return cluster


@pytest.fixture
async def admin(healthy: LocalCluster) -> AsyncIterator[redis.asyncio.cluster.RedisCluster]:
    """A plain redis-py cluster client for assertions and cleanup (not the code under test)."""
    node = healthy.running[0]
    client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=node.port)
    await client.initialize()
    await client.delete(*K.all_keys())
    yield client
    await client.delete(*K.all_keys())
    await client.aclose()


async def test_cluster_clients_are_built_like_the_standalone_ones(healthy: LocalCluster) -> None:
    config = config_for(
        healthy.startup_url,
        max_connections=3,
        retry_attempts=4,
        socket_timeout=2.5,
        connect_timeout=1.5,
        pool_timeout=0.7,
    )
    client = config.make_async()
    try:
        assert isinstance(client, AsyncRedisCluster)
        # the cluster client retries (node connections never do, by redis-py's design), with
        # the asyncio Retry class: the sync one would do nothing here
        assert isinstance(client.retry, redis.asyncio.retry.Retry)
        assert client.retry.get_retries() == 4
        await client.set("probe{spot}", "v")
        assert await client.get("probe{spot}") == "v"  # decoded by default, like standalone
        node = client.get_node_from_key("probe{spot}")
        assert node is not None
        assert node.max_connections == 3
        assert node.connection_kwargs["socket_timeout"] == 2.5
        assert node.connection_kwargs["socket_connect_timeout"] == 1.5
        assert node.connection_kwargs["health_check_interval"] == 30
        # a write to a connection the peer reset is a ConnectionError, retried (not a crash)
        assert node.connection_class.__name__.startswith("ResetSafe")
        names = [c["name"] for c in await client.client_list(target_nodes=node)]
        assert "symbold-test" in names
        await client.delete("probe{spot}")
    finally:
        await client.aclose()

    sync = config.make_sync()
    try:
        assert isinstance(sync, SyncRedisCluster)
        assert isinstance(sync.retry, redis.retry.Retry)
        assert sync.retry.get_retries() == 4
        sync.set("probe{spot}", "w")
        node = sync.get_node_from_key("probe{spot}")
        pool = sync.get_redis_connection(node).connection_pool
        # the sync node pools block at the bound, like the standalone pool
        assert isinstance(pool, redis.BlockingConnectionPool)
        assert (pool.max_connections, pool.timeout) == (3, 0.7)
        assert pool.connection_kwargs["socket_timeout"] == 2.5
        assert "symbold-test" in [c["name"] for c in sync.client_list(target_nodes=node)]
        assert sync.delete("probe{spot}") == 1
    finally:
        sync.close()


async def test_a_snapshot_transaction_runs_on_one_node_with_watch(
    healthy: LocalCluster, admin: redis.asyncio.cluster.RedisCluster
) -> None:
    """The store's command set, in its two shapes, on redis-py 8.1's cluster pipeline."""
    client = config_for(healthy.startup_url).make_async(decode=False)
    try:
        # full write: one MULTI/EXEC with EVAL, COPY, EXPIRE, HSET, XADD and PUBLISH
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(K.last_good, b"[1]")
            pipe.delete(K.by_symbol)
            pipe.hset(K.by_symbol, mapping={"A": "1", "B": "2"})
            pipe.copy(K.last_good, K.symbols, replace=True)
            pipe.expire(K.symbols, 600)
            pipe.hset(K.meta, mapping={"version": "v1"})
            pipe.eval("return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)", 1, K.metrics, "n")
            pipe.xadd(K.changes, {"version": "v1"}, maxlen=10, approximate=True)
            pipe.execute_command("PUBLISH", K.events, b"v1")
            replies = await pipe.execute()
        assert len(replies) == 9
        assert await admin.get(K.symbols) == b"[1]"

        # incremental write: WATCH meta, read it on the same connection, MULTI, EXEC
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch(K.meta)
            assert await pipe.hget(K.meta, "version") == b"v1"
            pipe.multi()
            pipe.hset(K.by_symbol, mapping={"C": "3"})
            pipe.hdel(K.by_symbol, "A")
            pipe.hset(K.meta, mapping={"version": "v2"})
            await pipe.execute()
        assert await admin.hgetall(K.by_symbol) == {b"B": b"2", b"C": b"3"}

        # a concurrent change of the watched key aborts the transaction
        async with client.pipeline(transaction=True) as pipe:
            await pipe.watch(K.meta)
            await pipe.hget(K.meta, "version")
            await admin.hset(K.meta, "version", "someone-else")
            pipe.multi()
            pipe.hset(K.meta, mapping={"version": "v3"})
            with pytest.raises(WatchError):
                await pipe.execute()
        assert await admin.hget(K.meta, "version") == b"someone-else"

        # read_state's shape: a non-transactional pipeline
        pipe = client.pipeline(transaction=False)
        pipe.hmget(K.meta, ["version"])
        pipe.exists(K.symbols)
        pipe.get(K.ban_until)
        assert await pipe.execute() == [[b"someone-else"], 1, None]

        # why every key carries the {market} tag: two slots in one MULTI are refused
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(K.meta + ":x", 1)
            pipe.set("symbold:{usdm}:meta:x", 1)
            with pytest.raises(CrossSlotTransactionError):
                await pipe.execute()
    finally:
        await client.aclose()


async def replica_caught_up(replica: RedisServer, version: str) -> None:
    """Until the replica serves `version` in meta (replication is asynchronous: a write not
    yet copied when the primary dies is lost, which is not what this test is about)."""

    def seen() -> bool:
        direct = replica.client()
        try:
            direct.execute_command("READONLY")
            return direct.hget(K.meta, "version") == version.encode()
        finally:
            direct.close()

    await asyncio.to_thread(wait_until, f"replica :{replica.port} has {version}", seen, 10)


async def test_refresh_cycles_readers_and_a_primary_failover(
    healthy: LocalCluster, admin: redis.asyncio.cluster.RedisCluster
) -> None:
    rows = make_rows(40)
    async with FakeBinance() as fake:
        fake.set_payload(SPOT, payload(rows))
        settings = make_settings(fake.url, {"scheduler.changes_maxlen": 50})
        url = healthy.startup_url
        sync_reader = SymbolReader.from_url(url, settings=settings, near_cache=FAST_NEAR_CACHE)
        reader = AsyncSymbolReader.from_url(url, settings=settings, near_cache=FAST_NEAR_CACHE)
        try:
            async with open_refresher(url, settings) as ref:
                kinds = spy_on_commits(ref)
                first = await ref.refresh_once()
                assert first.outcome == "accepted", first.reason
                await asyncio.wait_for(reader.wait_until(lambda s: s.live), 10)
                assert await asyncio.to_thread(sync_reader.wait_until, lambda s: s.live, 10)

                changed = replace_row(rows, rows[0]["symbol"], tick_size="0.10000000")
                fake.set_payload(SPOT, payload(changed))
                second = await ref.refresh_once()
                assert second.outcome == "accepted", second.reason
                assert kinds == ["full", "incremental"]  # WATCH on a cluster pipeline works
                await asyncio.wait_for(
                    reader.wait_until(lambda s: s.last_events.get("spot") == second.version), 10
                )
                record = await reader.get_symbol(rows[0]["symbol"])
                assert record is not None
                assert record.tick_size == "0.10000000"
                assert len(await asyncio.to_thread(sync_reader.get_symbols)) == 40

                # a failed fetch is counted (record_failure: MULTI with EVAL) ...
                fake.fail(SPOT, Fault.status(500))
                failed = await ref.refresh_once()
                assert failed.outcome == "error"
                # ... and a vanished cache is republished from memory (PUBLISH in MULTI)
                await admin.delete(K.symbols)
                assert await ref.watch() == "memory"
                assert await admin.exists(K.symbols) == 1

                owner = healthy.owner_of(K.meta)
                replica = healthy.replicas_of(owner)[0]
                await replica_caught_up(replica, second.version or "")
                started = time.monotonic()
                owner.kill()
                await asyncio.to_thread(healthy.wait_promoted, owner, replica, 20)
                promoted_after = time.monotonic() - started

                third_rows = replace_row(changed, rows[1]["symbol"], tick_size="0.20000000")
                fake.set_payload(SPOT, payload(third_rows))
                # the same refresher and client, as the daemon keeps them
                third = await ref.refresh_once()
                assert third.outcome == "accepted", third.reason
                assert healthy.owner_of(K.meta).port == replica.port

            # the data is intact and exactly counted on the new primary
            meta = await admin.hgetall(K.meta)
            assert meta[b"version"] == (third.version or "").encode()
            assert meta[b"listed"] == b"40"
            assert await admin.hgetall(K.metrics) == {
                b"refresh_success": b"3",
                b"refresh_error": b"1",
                b"fallback_used": b"1",
            }
            assert await admin.xlen(K.changes) == 2  # one entry per changed snapshot
            info = await reader.snapshot_info()
            assert (info.version, info.listed, info.stale) == (third.version, 40, False)
            moved = await asyncio.to_thread(sync_reader.get_symbol, rows[1]["symbol"])
            assert moved is not None
            assert moved.tick_size == "0.20000000"
            # both near-caches found the events channel again (on a surviving node)
            await asyncio.wait_for(reader.wait_until(lambda s: s.live and s.drops >= 1), 15)
            assert await asyncio.to_thread(
                sync_reader.wait_until, lambda s: s.live and s.drops >= 1, 15
            )
            print(f"replica promoted {promoted_after:.1f} s after kill -9")
        finally:
            sync_reader.close()
            await reader.aclose()


def spy_on_commits(ref: MarketRefresher) -> list[str]:
    kinds: list[str] = []
    real = ref.store.commit

    async def commit(*args: Any, **kwargs: Any) -> str:
        kind = await real(*args, **kwargs)
        kinds.append(kind)
        return kind

    ref.store.commit = commit  # type: ignore[method-assign]
    return kinds


async def test_store_publishes_events_on_a_cluster(
    healthy: LocalCluster, admin: redis.asyncio.cluster.RedisCluster
) -> None:
    async with FakeBinance() as fake:
        fake.set_payload(SPOT, payload(make_rows(10)))
        settings = make_settings(fake.url)
        async with open_refresher(healthy.startup_url, settings) as ref:
            result = await ref.refresh_once()
    assert result.outcome == "accepted"
    assert await admin.exists(K.symbols) == 1


def test_symbold_ping_reports_the_cluster(healthy: LocalCluster) -> None:
    result = run_cli("ping", "--count", "2", env={"REDIS_URL": healthy.startup_url})
    assert result.returncode == 0, result.stderr
    assert "(from $REDIS_URL)" in result.stdout
    assert "role cluster ok: 3 primaries, 3 replicas" in result.stdout
    assert "over 2 PINGs" in result.stdout
    as_json = run_cli("ping", "--json", env={"REDIS_URL": healthy.startup_url})
    assert as_json.returncode == 0, as_json.stderr
    report = msgspec.json.decode(as_json.stdout)
    assert report["mode"] == "cluster"
    assert report["cluster_state"] == "ok"
    assert len(report["nodes"]) == 6

    # nothing listening: unreachable (69), and the password never in the output
    url = f"redis+cluster://:{SECRET}@127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    result = run_cli("ping", "--json", env={"REDIS_URL": url})
    assert result.returncode == 69, result.stdout + result.stderr
    out = msgspec.json.decode(result.stdout)
    assert out["error_kind"] == "unreachable"
    assert ":***@" in out["url"]
    assert SECRET not in result.stdout + result.stderr


def test_settings_default_is_standalone() -> None:
    assert Settings().redis.mode == "standalone"
    assert config_for("redis://h:1/0").target == Deployment("standalone", (("h", 1),))
