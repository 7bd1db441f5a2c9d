"""Redis Sentinel: the Celery URL translation, the clients, refresh and readers across failovers.

The real-process tests share one setup per module (``tests/support/redis_deployments.py``): a
primary and a replica that both require a password, and three sentinels that require a password
of their own. The daemon's code (MarketRefresher, the readers) runs against it through the
Celery-style ``sentinel://`` URL; the primary is first switched over with SENTINEL FAILOVER
(the old primary stays up as a replica, so the clients' pooled connections meet READONLY
instead of a dead socket), then the new primary is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry

from daemon.config.redis_target import Deployment, parse_redis_url
from daemon.config.settings import ConfigError
from daemon.contract.keys import market_keys
from daemon.readers import AsyncSymbolReader, NearCacheOptions, SymbolReader
from daemon.redis import patches
from daemon.redis.patches import AsyncSentinelRedis, SentinelRedis
from tests.support.builders import make_rows, make_settings, open_refresher, payload, replace_row
from tests.support.daemon_proc import run_cli
from tests.support.fake_binance import SPOT, FakeBinance
from tests.support.redis_deployments import MASTER_NAME, LocalSentinel, config_for, wait_until
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.timeout(60)

K = market_keys("spot")
DATA_PW = "Data-pw-never-logged-1"
SENTINEL_PW = "Sentinel-pw-never-logged-2"
FAST_NEAR_CACHE = NearCacheOptions(
    ping_interval=0.2, silence_limit=1.0, retry_min=0.05, retry_max=0.5
)


# -- the Celery/kombu URL and the other spellings (no server) --------------------------------


def test_celery_sentinel_url_is_translated() -> None:
    text = (
        f"sentinel://:{DATA_PW}@10.0.0.1:26379;sentinel://:{DATA_PW}@10.0.0.2:26380;"
        f"sentinel://10.0.0.3/2?sentinel_password={SENTINEL_PW}"
    )
    url = parse_redis_url(text, "$CELERY_BROKER_URL")
    assert url.mode == "sentinel"
    assert url.nodes == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379))
    # as in kombu: the password is the primary's, the path is the db
    assert (url.password, url.db, url.sentinel_password) == (DATA_PW, 2, SENTINEL_PW)
    assert url.service_name is None  # Celery keeps it in broker_transport_options
    config = config_for(text, service_name="mymaster")
    assert config.target == Deployment(
        "sentinel",
        (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)),
        "mymaster",
    )
    shown = str(config.describe()) + url.redacted + repr(url) + repr(config)
    assert DATA_PW not in shown
    assert SENTINEL_PW not in shown
    assert config.describe()["sentinel_password"] == "set"
    assert url.redacted == (
        "sentinel://:***@10.0.0.1:26379;sentinel://:***@10.0.0.2:26380;"
        "sentinel://10.0.0.3/2?sentinel_password=***"
    )
    assert {DATA_PW, SENTINEL_PW} <= set(url.secrets())


def test_other_sentinel_spellings() -> None:
    # the service name as a parameter of the Celery URL
    named = config_for("sentinel://h1:26379;sentinel://h2:26379/0?master_name=m1")
    assert named.target.service_name == "m1"
    # redis+sentinel://host,host/service/db (the redis-sentinel-url convention)
    other = config_for(f"redis+sentinel://:{DATA_PW}@h1,h2:26380/m2/3")
    assert other.target == Deployment("sentinel", (("h1", 26379), ("h2", 26380)), "m2")
    assert (other.url.password, other.url.db) == (DATA_PW, 3)
    # mode = "sentinel" with a redis:// URL: the sentinels come from the settings, the URL
    # gives the primary's password and db
    listed = config_for(
        f"redis://:{DATA_PW}@ignored:6379/4",
        mode="sentinel",
        sentinels=("s1:26379", "[::1]:26380", "s3"),
        service_name="m3",
    )
    assert listed.target == Deployment(
        "sentinel", (("s1", 26379), ("::1", 26380), ("s3", 26379)), "m3"
    )
    assert listed.url.db == 4
    # ... or, with no sentinels listed, the URL's host:port is the one sentinel (as kombu does)
    single = config_for("redis://s9:26379/0", mode="sentinel", service_name="m4")
    assert single.target.nodes == (("s9", 26379),)


@pytest.mark.parametrize(
    ("url", "overrides", "fragment"),
    [
        ("sentinel://h:26379", {}, "needs the primary's service name"),
        ("sentinel://h:26379?master_name=a", {"service_name": "b"}, "names 'a'"),
        ("redis+sentinel://h/a?master_name=b", {}, "disagree"),
        (f"sentinel://:{DATA_PW}@h1;sentinel://:other@h2", {"service_name": "m"}, "different"),
        ("sentinel://h1/1;sentinel://h2/2", {"service_name": "m"}, "different dbs"),
        (f"sentinel://:{DATA_PW}@h:26379/mymaster", {}, "takes /db (a number)"),
        ("sentinel://h?socket_timeout=1", {"service_name": "m"}, "not supported"),
        ("sentinel://h;redis://x", {"service_name": "m"}, "must be sentinel://"),
        (f"rediss://:{DATA_PW}@h/0", {"mode": "sentinel", "service_name": "m"}, "TLS"),
        ("sentinel://h", {"mode": "cluster", "service_name": "m"}, "(sentinel) URL"),
        ("sentinel://h?master_name=m", {"sentinels": ("x:1",)}, "names the sentinels already"),
        ("redis://h/0", {"mode": "sentinel", "sentinels": ("bad:port",), "service_name": "m"},
         "redis.sentinels"),
    ],
)  # fmt: skip
def test_bad_sentinel_settings_are_config_errors(
    url: str, overrides: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config_for(url, **overrides)
    assert fragment in str(info.value)
    assert DATA_PW not in str(info.value)


async def test_no_sentinel_answering_is_redis_down() -> None:
    url = f"sentinel://:{DATA_PW}@127.0.0.1:{free_port()};sentinel://127.0.0.1:{free_port()}/0"
    async with FakeBinance() as fake:
        settings = make_settings(fake.url, {"redis.service_name": MASTER_NAME})
        async with open_refresher(url, settings) as ref:
            result = await ref.refresh_once()
        assert fake.requests[SPOT] == 0
    assert (result.outcome, result.redis_down) == ("error", True)
    assert "MasterNotFoundError" in result.reason
    assert DATA_PW not in result.reason


# -- real primary, replica and sentinels -----------------------------------------------------


@pytest.fixture(scope="module")
def group() -> Iterator[LocalSentinel]:
    with LocalSentinel(password=DATA_PW, sentinel_password=SENTINEL_PW) as running:
        yield running


@pytest.fixture
def url(group: LocalSentinel) -> str:
    group.wait_settled(20)
    return group.celery_url(0)


@pytest.fixture
async def primary(group: LocalSentinel, url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A direct client to whichever server is primary now (for assertions and cleanup)."""
    port = group.primary_port()
    assert port is not None
    client = redis.asyncio.Redis(host="127.0.0.1", port=port, password=DATA_PW)
    await client.delete(*K.all_keys())
    yield client
    await client.aclose()


async def test_sentinel_clients_are_built_like_the_standalone_ones(
    group: LocalSentinel, url: str
) -> None:
    config = config_for(
        url,
        service_name=MASTER_NAME,
        max_connections=2,
        pool_timeout=5.0,
        retry_attempts=4,
        socket_timeout=2.5,
    )
    client = config.make_async()
    manager = client.sentinel_manager if isinstance(client, AsyncSentinelRedis) else None
    try:
        assert isinstance(client, AsyncSentinelRedis)
        pool = client.connection_pool
        assert isinstance(pool, redis.asyncio.BlockingConnectionPool)
        assert pool.max_connections == 2
        conn = pool.make_connection()
        assert isinstance(conn.retry, redis.asyncio.retry.Retry)
        assert conn.retry.get_retries() == 4
        assert conn.socket_timeout == 2.5
        await conn.disconnect()
        # 8 concurrent blocking commands on a pool of 2 wait instead of failing
        results = await asyncio.gather(
            *(client.blpop([f"nokey{i}"], timeout=0.05) for i in range(8))
        )
        assert results == [None] * 8
        names = [c["name"] for c in await client.client_list()]
        assert "symbold-test" in names
        assert (await client.info("replication"))["role"] == "master"
        # the sentinels are asked without retries (an unreachable one is skipped at once)
        assert manager is not None
        assert manager.sentinels[0].get_retry().get_retries() == 0  # type: ignore[union-attr]
    finally:
        await client.aclose()
    assert client.sentinel_manager is None  # its sentinel connections were closed too

    sync = config.make_sync()
    try:
        assert isinstance(sync, SentinelRedis)
        assert isinstance(sync.connection_pool, redis.BlockingConnectionPool)
        assert sync.connection_pool.max_connections == 2
        assert isinstance(sync.get_retry(), redis.retry.Retry)
        assert sync.set("probe", "v")
        assert sync.get("probe") == "v"
        assert sync.delete("probe") == 1
    finally:
        sync.close()
    assert sync.sentinel_manager is None


async def test_the_primary_is_rechecked_at_most_once_a_second(
    group: LocalSentinel, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = config_for(url, service_name=MASTER_NAME).make_async()
    pool = client.connection_pool
    asked: list[float] = []
    real = pool.get_master_address  # type: ignore[attr-defined]

    async def get_master_address() -> Any:
        asked.append(time.monotonic())
        return await real()

    monkeypatch.setattr(pool, "get_master_address", get_master_address)
    try:
        for _ in range(20):
            await client.ping()
        # once for the first connection, once for the first recheck (connection counts vary)
        assert 1 <= len(asked) <= 2
        pool._checked_at -= patches.PRIMARY_RECHECK_INTERVAL  # type: ignore[attr-defined]
        before = len(asked)
        await client.ping()
        assert len(asked) == before + 1
    finally:
        await client.aclose()


def test_closing_leaves_no_socket_behind(group: LocalSentinel, url: str) -> None:
    config = config_for(url, service_name=MASTER_NAME)

    async def use() -> None:
        client = config.make_async()
        await client.ping()
        await client.aclose()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(use())
        sync = config.make_sync()
        sync.ping()
        sync.close()
        del sync
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def direct(server: RedisServer) -> redis.asyncio.Redis:
    """A plain client to one server (assertions only)."""
    return redis.asyncio.Redis(host="127.0.0.1", port=server.port, password=DATA_PW)


async def version_on(server: RedisServer) -> str | None:
    client = direct(server)
    try:
        raw = await client.hget(K.meta, "version")
    finally:
        await client.aclose()
    return raw.decode() if raw is not None else None


async def replica_caught_up(group: LocalSentinel, version: str) -> None:
    """Until the replica serves `version` and the sentinels could promote it (replication is
    asynchronous: a write not yet copied when the primary dies is lost, which is not what
    this test is about)."""
    replica = next(s for s in group.data_servers if s.port != group.primary_port())

    def seen() -> bool:
        client = replica.client()
        try:
            return client.hget(K.meta, "version") == version.encode()
        finally:
            client.close()

    await asyncio.to_thread(wait_until, f"replica :{replica.port} has {version}", seen, 10)
    await asyncio.to_thread(group.wait_settled, 20)


async def demote(old: RedisServer, new: RedisServer) -> None:
    """What the sentinels do to a switched-over primary about 10 s later (REPLICAOF the new
    one), done now as an operator would, so the test need not wait for it."""
    client = direct(old)
    try:
        await client.execute_command("REPLICAOF", "127.0.0.1", str(new.port))
    finally:
        await client.aclose()


def server_on(group: LocalSentinel, port: int | None) -> RedisServer:
    return next(s for s in group.data_servers if s.port == port)


async def test_refresh_and_readers_follow_a_switchover_and_a_kill(
    group: LocalSentinel, url: str, primary: redis.asyncio.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pools re-ask the sentinels at most once a second, so a write within that second of
    # a switch-over may still reach the old primary. Asking every time makes the test exact
    # (test_the_primary_is_rechecked_at_most_once_a_second covers the throttle).
    monkeypatch.setattr(patches, "PRIMARY_RECHECK_INTERVAL", 0.0)
    rows = make_rows(40)
    async with FakeBinance() as fake:
        fake.set_payload(SPOT, payload(rows))
        settings = make_settings(fake.url, {"redis.service_name": MASTER_NAME})
        sync_reader = SymbolReader.from_url(url, settings=settings, near_cache=FAST_NEAR_CACHE)
        reader = AsyncSymbolReader.from_url(url, settings=settings, near_cache=FAST_NEAR_CACHE)
        try:
            async with open_refresher(url, settings) as ref:
                first = await ref.refresh_once()
                assert first.outcome == "accepted", first.reason
                await asyncio.wait_for(reader.wait_until(lambda s: s.live), 10)
                assert await asyncio.to_thread(sync_reader.wait_until, lambda s: s.live, 10)

                # 1. a planned switch-over: the old primary stays up and, for about 10 s, still
                #    believes it is the primary. The pooled connections must not write there.
                await replica_caught_up(group, first.version or "")
                old = server_on(group, group.primary_port())
                started = time.monotonic()
                group.failover()
                new = server_on(group, await asyncio.to_thread(group.wait_failover, old.port))
                print(
                    f"switch-over :{old.port} -> :{new.port} in {time.monotonic() - started:.1f} s"
                )
                rows = replace_row(rows, rows[0]["symbol"], tick_size="0.10000000")
                fake.set_payload(SPOT, payload(rows))
                second = await ref.refresh_once()  # the same refresher and client
                assert second.outcome == "accepted", second.reason
                assert await version_on(new) == second.version
                assert await version_on(old) == first.version  # nothing written to the old one
                record = await reader.get_symbol(rows[0]["symbol"])
                assert record is not None
                assert record.tick_size == "0.10000000"
                await demote(old, new)

                # 2. the new primary dies without a word
                await replica_caught_up(group, second.version or "")
                started = time.monotonic()
                new.kill()
                third_port = await asyncio.to_thread(group.wait_failover, new.port)
                print(f"kill -9 :{new.port} -> :{third_port} in {time.monotonic() - started:.1f} s")
                rows = replace_row(rows, rows[1]["symbol"], tick_size="0.20000000")
                fake.set_payload(SPOT, payload(rows))
                third = await ref.refresh_once()
                assert third.outcome == "accepted", third.reason
                assert third_port == old.port

            # everything is on the current primary, counted exactly once per cycle
            client = direct(old)
            try:
                assert (await client.hget(K.meta, "version")) == (third.version or "").encode()
                assert await client.hgetall(K.metrics) == {b"refresh_success": b"3"}
                assert await client.xlen(K.changes) == 2
                assert await client.exists(K.symbols, K.last_good, K.by_symbol) == 3
            finally:
                await client.aclose()
            for symbol, tick in (
                (rows[0]["symbol"], "0.10000000"),
                (rows[1]["symbol"], "0.20000000"),
            ):
                record = await reader.get_symbol(symbol)
                assert record is not None
                assert record.tick_size == tick
                synced = await asyncio.to_thread(sync_reader.get_symbol, symbol)
                assert synced is not None
                assert synced.tick_size == tick
            info = await reader.snapshot_info()
            assert (info.version, info.listed, info.stale) == (third.version, 40, False)
            # both near-caches found the events channel again, on the new primary
            await asyncio.wait_for(reader.wait_until(lambda s: s.live and s.drops >= 1), 15)
            assert await asyncio.to_thread(
                sync_reader.wait_until, lambda s: s.live and s.drops >= 1, 15
            )
        finally:
            sync_reader.close()
            await reader.aclose()
    # bring the killed server back, as a replica of the current primary
    for server in group.data_servers:
        if not server.running:
            current = group.primary_port()
            server.extra_args = (*server.extra_args, "--replicaof", "127.0.0.1", str(current))
            server.start()
    await asyncio.to_thread(group.wait_settled, 20)


def test_symbold_ping_names_the_primary(group: LocalSentinel, url: str, tmp_path: Path) -> None:
    config = tmp_path / "symbold.toml"
    config.write_text(f'[redis]\nservice_name = "{MASTER_NAME}"\n')
    result = run_cli("ping", "--count", "2", "--config", str(config), env={"REDIS_URL": url})
    assert result.returncode == 0, result.stderr
    port = group.primary_port()
    assert f"role master at 127.0.0.1:{port} (sentinel service {MASTER_NAME})" in result.stdout
    assert "sentinel://:***@" in result.stdout
    assert DATA_PW not in result.stdout + result.stderr
    assert SENTINEL_PW not in result.stdout + result.stderr
    as_json = run_cli("ping", "--json", "--config", str(config), env={"REDIS_URL": url})
    assert as_json.returncode == 0, as_json.stderr
    report = msgspec.json.decode(as_json.stdout)
    assert report["mode"] == "sentinel"
    assert report["primary"] == f"127.0.0.1:{port}"

    # the sentinels refuse a wrong sentinel password: a configuration error, no secret shown
    wrong = url.replace(SENTINEL_PW, "Wrong-sentinel-pw-3")
    result = run_cli("ping", "--json", "--config", str(config), env={"REDIS_URL": wrong})
    assert result.returncode == 78, result.stdout + result.stderr
    out = msgspec.json.decode(result.stdout)
    assert out["error_kind"] == "auth"
    assert "Wrong-sentinel-pw-3" not in result.stdout + result.stderr
    assert DATA_PW not in result.stdout + result.stderr

    # no service name anywhere: 78 before connecting, naming the setting
    result = run_cli("ping", env={"REDIS_URL": url})
    assert result.returncode == 78
    assert "redis.service_name" in result.stderr
    assert DATA_PW not in result.stderr
