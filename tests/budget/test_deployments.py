"""The budget through a real Redis Cluster and through Sentinel: every key of one market's
budget hashes to one slot (so one script may touch them all), and the counts, the ban and
the usage are shared by two budgets as on a single server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.cluster import key_slot

from daemon.budget import AsyncWeightBudget, Banned, Limit, WeightBudget, rate_limits_json
from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import RedisSettings, Settings
from daemon.redis.clients import ConnectionConfig
from tests.support.redis_deployments import (
    MASTER_NAME,
    LocalCluster,
    LocalSentinel,
    cluster_support_problem,
)

pytestmark = pytest.mark.timeout(90)

LIMITS = [Limit("REQUEST_WEIGHT", "MINUTE", 1, 1000), Limit("ORDERS", "SECOND", 10, 50)]
PW = "budget-data-pw"


def _config(url: str, **redis_settings: object) -> ConnectionConfig:
    return ConnectionConfig(
        url=parse_redis_url(url, "test"),
        settings=RedisSettings(client_name="symbold-test", **redis_settings),  # type: ignore[arg-type]
    )


async def _exercise(config: ConnectionConfig) -> list[str]:
    """Two budgets on `config` share counts and a ban; returns every key the budget wrote."""
    settings = Settings()
    async with (
        AsyncWeightBudget(config, settings, market="spot", account="main") as one,
        AsyncWeightBudget(config, settings, market="spot", account="main") as two,
    ):
        client = one._clients.get()  # the budget's own client, in whatever mode
        await client.hset(one.keys.meta, "rate_limits", rate_limits_json(LIMITS))
        await one.start_fresh()
        await one.acquire(20)
        with pytest.raises(Exception, match="does not fit"):  # counted in budget:stats
            await one.acquire(800, wait=False)
        await two.acquire(5, orders=1, priority="high")
        usage = await two.usage()
        used = {w.kind: w.used for w in usage.windows}
        assert used == {"REQUEST_WEIGHT": 25, "ORDERS": 1}
        assert usage.source == "published"
        await one.record_server_time(int(usage.now * 1000))
        until = await one.report_limited(418, 60)
        with pytest.raises(Banned) as info:
            await two.acquire(1)
        assert info.value.until == pytest.approx(until, abs=0.001)
        keys = [
            *one.keys.all_fixed(),
            one.keys.meta,
            *(key for _, key, _ in one.limits.tracked("main")),
        ]
        for key in keys:
            assert await client.exists(key), key
    return keys


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    problem = cluster_support_problem()
    if problem is not None:
        pytest.skip(f"this redis-server cannot run a cluster: {problem}")
    with LocalCluster(primaries=3, replicas=0) as running:
        yield running


async def test_through_a_real_cluster(cluster: LocalCluster) -> None:
    keys = await _exercise(_config(cluster.startup_url))
    assert len({key_slot(k.encode()) for k in keys}) == 1  # one slot: {spot}
    # ... owned by one node, which holds every one of them (the script ran there).
    owner = cluster.owner_of(keys[0])
    node = owner.client()
    try:
        assert node.exists(*keys) == len(keys)
        node.delete(*keys)
    finally:
        node.close()
    # The blocking twin works through the cluster client too.
    with WeightBudget(_config(cluster.startup_url), Settings(), market="spot") as budget:
        budget.start_fresh()
        assert budget.acquire(1).local is False


async def test_through_sentinel() -> None:
    with LocalSentinel(password=PW) as group:
        group.wait_settled(20)
        config = _config(group.celery_url(0), service_name=MASTER_NAME)
        assert config.mode == "sentinel"
        keys = await _exercise(config)
        port = group.primary_port()
        assert port is not None
        primary = redis.Redis(host="127.0.0.1", port=port, password=PW)
        try:
            assert primary.info("replication")["role"] == "master"
            # The scripts ran on the primary Sentinel named: it holds every key written.
            assert primary.exists(*keys) == len(keys)
            assert primary.info("commandstats")["cmdstat_evalsha"]["calls"] >= 5
        finally:
            primary.close()
