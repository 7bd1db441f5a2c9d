"""What a running daemon imports follows from its configuration: features that are off cost
no memory. Checked on a real `symbold run` under ``-X importtime``, which names every module the
process imports during its whole life (start, first snapshot, a reload, a clean stop)."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.test_service_ops import http_get, listening_port, write_config
from tests.support.daemon_proc import DaemonProcess
from tests.support.fake_binance import SPOT, FakeBinance, small_exchange_info

pytestmark = pytest.mark.timeout(60)

_IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$")
# Loaded only for [health] (the endpoint and the metrics registry).
HEALTH_ONLY = ("prometheus_client", "daemon.ops.health", "daemon.ops.metrics")
# Loaded only for [celery].
CELERY_ONLY = ("celery", "kombu", "daemon.celery_interop.enqueue")
# Never needed by the daemon: a web framework, and the pretty tracebacks of the console format
# (where rich is installed, structlog's attempt to import it is listed, but not its modules).
NEVER = ("aiohttp.web", "rich.console", "rich.traceback", "pygments")


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.set_payload(SPOT, small_exchange_info(("BTCUSDT", "ETHBTC", "BNBUSDT")))
        yield server


def imported(daemon: DaemonProcess) -> set[str]:
    """Every module the process imported (from its ``-X importtime`` lines)."""
    return {m.group(1) for line in daemon.raw if (m := _IMPORT_LINE.match(line))}


async def run_until_ready(config: Path, redis_url: str) -> DaemonProcess:
    env = {"REDIS_URL": redis_url, "PYTHONPROFILEIMPORTTIME": "1"}
    return await DaemonProcess("run", env=env, config=config).start()


async def stop(daemon: DaemonProcess) -> None:
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait() == 0, daemon.output()


async def test_idle_daemon_without_health_or_celery_loads_neither(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", fake.url)
    daemon = await run_until_ready(config, redis_url)
    try:
        async with asyncio.timeout(30):
            await daemon.wait_event("refresh.ok", market="spot")
            await daemon.wait_event("service.ready")
            await stop(daemon)
    finally:
        await daemon.close()
    modules = imported(daemon)
    # The detection works: what the daemon does need is seen.
    assert {"redis", "aiohttp", "daemon.refresh.cycle", "daemon.service.lifecycle"} <= modules
    assert [m for m in (*HEALTH_ONLY, *CELERY_ONLY, *NEVER) if m in modules] == []


async def test_health_loads_the_endpoint_and_metrics_and_nothing_more(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", fake.url, "[health]\nenabled = true\nport = 0\n")
    daemon = await run_until_ready(config, redis_url)
    try:
        async with asyncio.timeout(30):
            await daemon.wait_event("health.listening")
            await daemon.wait_event("refresh.ok", market="spot")
            await stop(daemon)
    finally:
        await daemon.close()
    modules = imported(daemon)
    assert [m for m in HEALTH_ONLY if m not in modules] == []
    assert [m for m in (*CELERY_ONLY, *NEVER) if m in modules] == []


async def test_health_turned_on_by_a_reload_counts_the_refreshes_before_it(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "c.toml", fake.url)
    daemon = await run_until_ready(path, redis_url)
    try:
        async with asyncio.timeout(30):
            await daemon.wait_event("refresh.ok", market="spot")
            assert "prometheus_client" not in imported(daemon)
            write_config(path, fake.url, "[health]\nenabled = true\nport = 0\n")
            daemon.signal(signal.SIGHUP)
            await daemon.wait_event("health.listening")
            # The reload's own refresh: one accepted before the registry existed, one after.
            await daemon.wait_event("refresh.unchanged", market="spot")
            code, body = await http_get(listening_port(daemon), "/metrics")
            await stop(daemon)
    finally:
        await daemon.close()
    assert code == 200
    samples = {
        (s.name, s.labels.get("outcome")): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.labels.get("market") == "spot"
    }
    assert samples[("symbold_refresh_total", "accepted")] == 1
    assert samples[("symbold_refresh_total", "unchanged")] == 1
