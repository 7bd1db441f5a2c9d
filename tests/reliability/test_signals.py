"""Signals against a running `symbold run` process.

Already covered, and listed in docs/reliability.md:
- 1,000 SIGHUPs in a burst -> refreshes <= 1 + duration / min_refresh_gap:
  tests/service/test_daemon.py::test_sighup_burst_is_coalesced
- SIGTERM while the upstream fetch hangs -> exit 0 within shutdown_timeout, snapshot whole:
  tests/service/test_daemon.py::test_sigterm_during_a_slow_refresh_exits_zero_with_a_whole_snapshot
- a second SIGTERM exits at once: tests/service/test_daemon.py::test_second_sigterm_exits_at_once

New here: SIGTERM while the snapshot's MULTI/EXEC itself is on the wire (slowed by the proxy).
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.reliability.conftest import SECRET, Daemons
from tests.support.builders import make_rows, payload, retick
from tests.support.fake_binance import SPOT, FakeBinance
from tests.support.process_stats import Stopwatch
from tests.support.redis_server import RedisServer
from tests.support.reliability_results import Recorder
from tests.support.stored_snapshot import direct_client, read_metrics, read_snapshot
from tests.support.tcp_proxy import TcpProxy


@pytest.mark.parametrize("grace", ["abandoned", "finished"])
async def test_sigterm_while_the_snapshot_transaction_is_in_flight(
    grace: str,
    server: RedisServer,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    shutdown_timeout = 0.2 if grace == "abandoned" else 10.0
    reliability.row(
        f"SIGTERM while the snapshot MULTI/EXEC is on the wire (shutdown_timeout "
        f"{shutdown_timeout:g} s: cycle {grace})",
        "exit 0 within shutdown_timeout + a bound; Redis holds the old or the new snapshot, "
        "whole, and success is counted iff the new one landed",
        group="Signals",
    )
    rows = make_rows(3000)
    fake.set_payload(SPOT, payload(rows))
    config = {
        "scheduler": {"shutdown_timeout": shutdown_timeout},
        "redis": {"socket_timeout": 10.0},
        # a 3,000-symbol payload, gzipped by the fake on first use: room on a loaded machine
        "upstream": {"timeout_total": 10.0, "timeout_read": 10.0},
    }
    admin = direct_client(server.url)
    try:
        async with TcpProxy("127.0.0.1", server.port) as proxy:
            async with asyncio.timeout(40):
                h = await daemons.start(proxy.url(password=SECRET), fake.url, config=config)
                assert await h.first_cycle() == ["accepted"]
                old = await read_snapshot(admin)
                assert old.is_whole()
                size = len(old.symbols or b"") * 2 + sum(map(len, old.by_symbol.values()))
                fake.set_payload(SPOT, payload(retick(rows, "0.00000100")))
                proxy.delay = 0.02  # about 2 s for the whole MULTI
                mark = proxy.bytes_up
                h.d.signal(signal.SIGHUP)
                await proxy.wait_for(lambda: proxy.bytes_up - mark > size // 4)
                clock = Stopwatch()
                h.d.signal(signal.SIGTERM)
                code = await h.d.wait()
                took = clock()
                # let whatever the proxy still carries reach Redis, then look
                await proxy.wait_for(lambda: proxy.active == 0)
                proxy.delay = 0.0
            after = await read_snapshot(admin)
            metrics = await read_metrics(admin)
    finally:
        await admin.aclose()
    assert code == 0, h.d.output()
    assert after.is_whole()
    landed = after.version != old.version
    if landed:
        assert b'"0.00000100"' in after.by_symbol[b"C0000USDT"]
    else:
        assert after.same_data(old)
    assert metrics == {"refresh_success": 2 if landed else 1}, [
        e for e in h.d.events if e.get("event", "").startswith(("refresh.", "redis."))
    ]
    if grace == "abandoned":
        assert h.events("service.abandoning"), h.d.output()
        assert took < shutdown_timeout + 2.0
    else:
        assert landed  # given time, the cycle finishes before the exit
        assert h.events("service.abandoning") == []
    reliability.recovery(took, bound=shutdown_timeout + 2.0 if grace == "abandoned" else 10.0)
    reliability.detail(snapshot_after="new" if landed else "old", exit_s=round(took, 2))
