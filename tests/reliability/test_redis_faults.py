"""Redis-side faults against a running `symbold run` process.

Every scenario uses a real, password-protected redis-server of its own on a free loopback
port, the fake Binance on loopback, and the daemon as a child process. Each test asserts the
behaviour, that nothing was lost (the served snapshot byte-identical or correctly replaced,
counters exact), that the daemon still runs, and a bound on the recovery time; the
``daemons`` fixture asserts the password never appears in the daemon's output.

Already covered elsewhere (and listed in docs/reliability.md):
- wrong password at start -> exit 78:
  tests/service/test_daemon.py::test_run_with_wrong_password_exits_78_without_the_secret
- OOM / refused writes at the refresher level:
  tests/refresh/test_redis_failures.py::test_redis_refusing_writes_is_reported_not_raised
- a retried MULTI counted once at the refresher level:
  tests/refresh/test_commit_atomicity.py::test_a_retried_commit_counts_success_exactly_once
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable

import pytest
import redis.asyncio

from tests.reliability.conftest import ROWS, SECRET, Daemons, first_snapshot
from tests.support.builders import make_rows, payload, replace_row, retick
from tests.support.daemon_proc import Harness
from tests.support.fake_binance import SPOT, FakeBinance, Fault
from tests.support.process_stats import Stopwatch
from tests.support.redis_server import RedisServer, free_port
from tests.support.reliability_results import Recorder
from tests.support.stored_snapshot import (
    direct_client,
    kill_clients,
    read_meta,
    read_metrics,
    read_snapshot,
)
from tests.support.tcp_proxy import TcpProxy

GROUP = "Redis"
CHANGED_PAYLOAD = payload(replace_row(ROWS, "C0000USDT", tick_size="0.00000100"))


def assert_running(h: Harness) -> None:
    assert not h.exited, h.d.output()


# ============================================================================================


async def test_redis_down_at_start_then_up(
    redis_pw: Callable[..., RedisServer],
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Redis down at start, then up",
        "daemon starts (READY) and waits without spending upstream weight; the first "
        "snapshot is written within a retry (0.5 s plus the client's backoff) of Redis answering",
        group=GROUP,
    )
    server = redis_pw(started=False, port=free_port())
    # READY=1 waits for a fresh snapshot up to service.start_timeout, then comes degraded.
    config = {
        "upstream": {"backoff_base": 0.1, "backoff_ceiling": 0.3},
        "service": {"start_timeout": 1.0},
    }
    async with asyncio.timeout(30):
        h = await daemons.start(server.url, fake.url, config=config)
        await h.wait_ready()  # READY=1 (degraded) although Redis is down
        await h.d.wait_event("redis.unavailable")
        assert fake.requests[SPOT] == 0  # no upstream weight while it cannot write
        await asyncio.to_thread(server.start)
        clock = Stopwatch()
        await h.d.wait_event("refresh.ok")
        recovery = clock()
        admin = direct_client(server.url)
        try:
            snap = await read_snapshot(admin)
            assert snap.is_whole()
            assert sorted(snap.listed) == sorted(r["symbol"] for r in ROWS)
            assert len(snap.by_symbol) == len(ROWS)
            assert await read_metrics(admin) == {"refresh_success": 1}
        finally:
            await admin.aclose()
        assert fake.requests[SPOT] == 1
        assert_running(h)
        assert await h.stop() == 0
    # While it cannot reach Redis the daemon cannot take the market's lease, so it waits as a
    # follower and retries every 0.5 s, each try going through redis-py's own retry backoff
    # (3 attempts, capped at 2 s with jitter); then a fetch, and slack for a loaded machine.
    bound = 0.5 + 4.0 + 1.0 + 0.8
    assert recovery < bound, recovery
    reliability.recovery(recovery, bound=bound)


async def test_redis_restarted_empty_between_cycles(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Redis restarted empty (no persistence), between cycles",
        "the snapshot held in memory is republished within check_interval, byte-identical, "
        "marked stale; no upstream request",
        group=GROUP,
    )
    # Charged to the weight budget, the forced cycle below would be skipped: a Redis that comes
    # back empty writes off the rest of the minute for every process (docs/budget.md;
    # tests/refresh/test_budgeted_cycle.py covers that case). Here: the republish path.
    config = {"budget": {"own_fetches": False}}
    async with asyncio.timeout(30):
        h = await daemons.start(server.url, fake.url, config=config)
        before = await first_snapshot(h, admin)
        await asyncio.to_thread(server.restart)
        clock = Stopwatch()
        await h.d.wait_event("refresh.fallback")
        recovery = clock()
        after = await read_snapshot(admin)
        assert after.is_whole()
        assert after.same_data(before)
        assert after.refreshed_at == before.refreshed_at
        assert (await read_meta(admin))["stale"] == "1"
        # The old server's counts died with it; the new one counts from zero, exactly.
        assert await read_metrics(admin) == {"fallback_used": 1}
        assert fake.requests[SPOT] == 1
        assert await h.cycle() == ["unchanged"]
        assert (await read_meta(admin))["stale"] == "0"
        assert await read_metrics(admin) == {"fallback_used": 1, "refresh_success": 1}
        assert_running(h)
        assert await h.stop() == 0
    bound = 0.1 + 0.5  # check_interval, slack
    assert recovery < bound, recovery
    reliability.recovery(recovery, bound=bound)


async def test_redis_restarted_empty_during_a_cycle(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Redis restarted empty (no persistence), during a cycle (while fetching)",
        "the cycle rewrites the whole snapshot; a reader never sees meta without its data",
        group=GROUP,
    )
    # A long check_interval: what the cycle itself leaves behind is what a reader sees.
    config = {"scheduler": {"check_interval": 5.0}}
    async with asyncio.timeout(30):
        h = await daemons.start(server.url, fake.url, config=config)
        before = await first_snapshot(h, admin)
        fake.fail(SPOT, Fault.slow(0.6))  # same content, slowly
        token = h.begin()
        await fake.wait_for_requests(SPOT, 2)
        await asyncio.to_thread(server.restart)
        clock = Stopwatch()
        await h.finish(token)
        after = await read_snapshot(admin)
        recovery = clock()
        assert after.version is None or after.is_whole(), (
            f"meta says version {after.version!r} but symbols={after.symbols is not None}, "
            f"by_symbol={len(after.by_symbol)} fields"
        )
        assert after.same_data(before)
        assert_running(h)
        assert await h.stop() == 0
    reliability.recovery(recovery, bound=1.0)


async def test_redis_killed_while_a_snapshot_is_being_written(
    redis_pw: Callable[..., RedisServer],
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Redis killed (-9) while a snapshot is being written (AOF, appendfsync always)",
        "after the restart Redis holds the old snapshot whole (the MULTI never reached EXEC), "
        "then the daemon writes the new one whole; an acknowledged snapshot survives a kill",
        group=GROUP,
    )
    server = redis_pw(extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    rows = make_rows(3000)
    fake.set_payload(SPOT, payload(rows))
    new_payload = payload(retick(rows, "0.00000100"))
    config = {
        "upstream": {
            "backoff_base": 0.1,
            "backoff_ceiling": 0.2,
            "timeout_total": 10.0,
            "timeout_read": 10.0,
        },
        "redis": {"socket_timeout": 5.0},
        "scheduler": {"check_interval": 5.0},
    }
    async with TcpProxy("127.0.0.1", server.port) as proxy:
        admin = direct_client(server.url)
        try:
            async with asyncio.timeout(45):
                h = await daemons.start(proxy.url(password=SECRET), fake.url, config=config)
                old = await first_snapshot(h, admin)
                size = len(old.symbols or b"") * 2 + sum(map(len, old.by_symbol.values()))

                # Slow the link so the MULTI takes about a second on the wire, and kill -9
                # the server when about a third of it went through.
                fake.set_payload(SPOT, new_payload)
                proxy.delay = 0.01
                mark = proxy.bytes_up
                h.d.signal(signal.SIGHUP)
                await proxy.wait_for(lambda: proxy.bytes_up - mark > size // 3)
                await asyncio.to_thread(server.kill)
                proxy.delay = 0.0
                await h.d.wait_event("redis.unavailable")
                await asyncio.to_thread(server.start)  # same dir: it loads the AOF
                clock = Stopwatch()
                reloaded = await read_snapshot(admin)
                assert reloaded.is_whole()
                assert reloaded.same_data(old)
                assert await read_metrics(admin) == {"refresh_success": 1}

                # The daemon retries by itself and writes the new snapshot whole.
                await h.d.wait_event("refresh.ok", n=2)
                recovery = clock()
                new = await read_snapshot(admin)
                assert new.is_whole()
                assert new.version != old.version
                assert new.by_symbol[b"C0000USDT"].count(b'"0.00000100"') >= 1
                assert await read_metrics(admin) == {"refresh_success": 2}

                # kill -9 right after an acknowledged snapshot: it is all there on restart.
                await asyncio.to_thread(server.kill)
                await asyncio.to_thread(server.start)
                assert (await read_snapshot(admin)).same_data(new)
                assert await read_metrics(admin) == {"refresh_success": 2}
                assert_running(h)
                assert await h.stop() == 0
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                await admin.aclose()
    bound = 0.2 + 3.0  # the longest backoff, a full 3,000-symbol cycle on 2 slow cores
    assert recovery < bound, recovery
    reliability.recovery(recovery, bound=bound)
    reliability.detail(transaction_bytes=size)


async def test_pooled_connections_killed(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Pooled connections killed (CLIENT KILL), idle and during a cycle",
        "the next command reconnects transparently: the cycle succeeds, no redis.unavailable, "
        "success counted once",
        group=GROUP,
    )
    async with asyncio.timeout(30):
        h = await daemons.start(server.url, fake.url)
        await first_snapshot(h, admin)
        # idle connections killed between cycles
        assert await kill_clients(admin) >= 1
        fake.set_payload(SPOT, CHANGED_PAYLOAD)
        clock = Stopwatch()
        assert await h.cycle() == ["accepted"]
        recovery = clock()
        changed = await read_snapshot(admin)
        assert changed.is_whole()
        assert b'"0.00000100"' in changed.by_symbol[b"C0000USDT"]
        # killed while the cycle waits for upstream: the commit meets a dead socket
        fake.set_payload(SPOT, payload(ROWS))
        fake.fail(SPOT, Fault.slow(0.4))
        token = h.begin()
        await fake.wait_for_requests(SPOT, 3)
        assert await kill_clients(admin) >= 1
        assert await h.finish(token) == ["accepted"]
        assert h.events("redis.unavailable") == []
        back = await read_snapshot(admin)
        assert back.is_whole()
        assert b'"0.00000100"' not in back.by_symbol[b"C0000USDT"]
        assert await read_metrics(admin) == {"refresh_success": 3}
        assert_running(h)
        assert await h.stop() == 0
    reliability.recovery(recovery, bound=1.0)
    assert recovery < 1.0


async def test_connection_cut_in_the_middle_of_the_snapshot_transaction(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Connection cut (RST) in the middle of the snapshot MULTI (proxy: cut after N bytes)",
        "Redis drops the half-sent transaction; redis-py retries it on a new connection; the "
        "new snapshot is written whole and counted once",
        group=GROUP,
    )
    rows = make_rows(2000)
    fake.set_payload(SPOT, payload(rows))
    async with TcpProxy("127.0.0.1", server.port) as proxy:
        async with asyncio.timeout(30):
            config = {"upstream": {"timeout_total": 10.0, "timeout_read": 10.0}}
            h = await daemons.start(proxy.url(password=SECRET), fake.url, config=config)
            old = await first_snapshot(h, admin)
            size = len(old.symbols or b"") * 2 + sum(map(len, old.by_symbol.values()))
            fake.set_payload(SPOT, payload(retick(rows, "0.001")))
            connections = proxy.connections
            proxy.cut_once_after(size // 2)
            clock = Stopwatch()
            assert await h.cycle() == ["accepted"]
            recovery = clock()
            assert proxy.cuts == 1
            assert proxy.connections > connections  # it reconnected
            new = await read_snapshot(admin)
            assert new.is_whole()
            assert new.version != old.version
            assert b'"0.001"' in new.by_symbol[b"C0000USDT"]
            assert await read_metrics(admin) == {"refresh_success": 2}
            assert_running(h)
            assert await h.stop() == 0
    reliability.recovery(recovery, bound=3.0)
    assert recovery < 3.0


async def test_client_pause_short_and_long(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Redis paused (CLIENT PAUSE): ALL shorter than socket_timeout; WRITE longer than "
        "the whole retry budget",
        "short: the cycle waits and succeeds; long: the cycle fails (redis.unavailable), "
        "nothing is applied late or counted twice, the next cycle writes",
        group=GROUP,
    )
    config = {"redis": {"socket_timeout": 0.5, "retry_attempts": 2}}
    async with asyncio.timeout(40):
        h = await daemons.start(server.url, fake.url, config=config)
        old = await first_snapshot(h, admin)

        # short: 300 ms of ALL, under the 0.5 s socket timeout
        fake.set_payload(SPOT, CHANGED_PAYLOAD)
        await admin.execute_command("CLIENT", "PAUSE", "300", "ALL")
        clock = Stopwatch()
        assert await h.cycle() == ["accepted"]
        short = clock()
        assert 0.15 < short < 1.5, short
        changed = await read_snapshot(admin)
        assert changed.is_whole()
        assert changed.version != old.version
        assert await read_metrics(admin) == {"refresh_success": 2}

        # long: WRITE paused for 8 s, far past every attempt's 0.5 s socket timeout (the
        # incremental write under WATCH, then up to 3 tries of the full write)
        fake.set_payload(SPOT, payload(ROWS))
        await admin.execute_command("CLIENT", "PAUSE", "8000", "WRITE")
        paused = Stopwatch()
        assert await h.cycle() == ["redis_down"]
        gave_up = paused()
        assert gave_up < 7.0  # it gave up before the 8 s pause ended: bounded by its timeouts
        assert_running(h)
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.ping()
        # The commit that timed out was not applied late and nothing was counted.
        assert (await read_snapshot(admin)).same_data(changed)
        assert await read_metrics(admin) == {"refresh_success": 2}
        clock.reset()
        assert await h.cycle() == ["accepted"]
        recovery = clock()
        final = await read_snapshot(admin)
        assert final.is_whole()
        assert final.version == old.version  # back to the original content
        assert await read_metrics(admin) == {"refresh_success": 3}
        assert_running(h)
        assert await h.stop() == 0
    reliability.recovery(recovery, bound=1.5)
    reliability.detail(short_pause_cycle_s=round(short, 3), long_pause_gave_up_s=round(gave_up, 2))
    assert recovery < 1.5


async def _debug_sleep(port: int, seconds: float) -> asyncio.Task[bytes]:
    """Start DEBUG SLEEP on a raw connection; the task returns the reply when it wakes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    def resp(*parts: str) -> bytes:
        out = [f"*{len(parts)}\r\n".encode()]
        out += [b"$%d\r\n%s\r\n" % (len(p.encode()), p.encode()) for p in parts]
        return b"".join(out)

    writer.write(resp("AUTH", SECRET) + resp("DEBUG", "SLEEP", str(seconds)))
    await writer.drain()

    async def finish() -> bytes:
        try:
            first = await reader.readline()
            second = await reader.readline()
            return first + second
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return asyncio.create_task(finish())


async def test_slow_redis_debug_sleep_during_the_commit(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Redis slow (DEBUG SLEEP past socket_timeout) during the snapshot commit",
        "the write times out and is retried (the timed-out attempt may still run once Redis "
        "wakes); the snapshot is whole and refresh_success is counted once",
        group=GROUP,
    )
    config = {"redis": {"socket_timeout": 0.5, "retry_attempts": 3}}
    async with asyncio.timeout(30):
        h = await daemons.start(server.url, fake.url, config=config)
        await first_snapshot(h, admin)
        await admin.config_resetstat()
        fake.set_payload(SPOT, CHANGED_PAYLOAD)
        fake.fail(SPOT, Fault.slow(0.3))  # the commit comes 0.3 s after the request
        token = h.begin()
        await fake.wait_for_requests(SPOT, 2)
        sleeper = await _debug_sleep(server.port, 1.0)
        clock = Stopwatch()
        assert await h.finish(token) == ["accepted"]
        recovery = clock()
        assert await sleeper == b"+OK\r\n+OK\r\n"
        stats = await admin.info("commandstats")
        execs = int(stats.get("cmdstat_exec", {}).get("calls", 0))
        assert execs >= 1
        assert await read_metrics(admin) == {"refresh_success": 2}  # counted once
        snap = await read_snapshot(admin)
        assert snap.is_whole()
        assert b'"0.00000100"' in snap.by_symbol[b"C0000USDT"]
        assert_running(h)
        assert await h.stop() == 0
    reliability.recovery(recovery, bound=2.0)
    reliability.detail(exec_calls=execs)
    assert recovery < 2.0


@pytest.mark.parametrize("how", ["readonly", "oom"])
async def test_redis_refusing_writes(
    how: str,
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    label = {
        "readonly": "Redis READONLY (became a replica of a dead master)",
        "oom": "Redis OOM (maxmemory 1, noeviction)",
    }[how]
    reliability.row(
        label,
        "reads work, the commit is refused and not retried: redis.write_refused, the served "
        "snapshot stays byte-identical, the daemon keeps running; writes resume after the fix",
        group=GROUP,
    )
    async with asyncio.timeout(30):
        h = await daemons.start(server.url, fake.url)
        old = await first_snapshot(h, admin)
        if how == "readonly":
            await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        else:
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")
        fake.set_payload(SPOT, CHANGED_PAYLOAD)
        mark = len(h.d.events)
        assert await h.cycle() == ["redis_down"]
        (refused,) = h.events("redis.write_refused", since=mark)
        assert ("ReadOnlyError" if how == "readonly" else "OutOfMemoryError") in refused["error"]
        assert refused["level"] == "error"
        assert (await read_snapshot(admin, multi=how != "oom")).same_data(old)
        assert await read_metrics(admin) == {"refresh_success": 1}
        assert_running(h)
        if how == "readonly":
            await admin.execute_command("REPLICAOF", "NO", "ONE")
        else:
            await admin.config_set("maxmemory", "0")
        clock = Stopwatch()
        assert await h.cycle() == ["accepted"]
        recovery = clock()
        new = await read_snapshot(admin)
        assert new.is_whole()
        assert new.version != old.version
        assert await read_metrics(admin) == {"refresh_success": 2}
        assert await h.stop() == 0
    reliability.recovery(recovery, bound=1.0)
    assert recovery < 1.0


async def test_password_changed_while_running(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Wrong password mid-run (requirepass changed, connections dropped)",
        "each cycle logs redis.auth_failed (level error, AuthenticationError), without the "
        "password; "
        "the daemon keeps running and recovers when the password is back",
        group=GROUP,
    )
    async with asyncio.timeout(30):
        h = await daemons.start(server.url, fake.url)
        old = await first_snapshot(h, admin)
        await admin.config_set("requirepass", "a-different-password")
        assert await kill_clients(admin) >= 1
        mark = len(h.d.events)
        assert await h.cycle() == ["redis_down"]
        assert await h.cycle() == ["redis_down"]
        failed = h.events("redis.auth_failed", since=mark)
        assert len(failed) == 2, h.d.output()
        assert all(e["level"] == "error" for e in failed)
        assert all("AuthenticationError" in e["error"] for e in failed), failed
        assert_running(h)
        assert (await read_snapshot(admin)).same_data(old)
        await admin.config_set("requirepass", SECRET)
        clock = Stopwatch()
        assert await h.cycle() == ["unchanged"]
        recovery = clock()
        assert await read_metrics(admin) == {"refresh_success": 2}
        assert await h.stop() == 0
    reliability.recovery(recovery, bound=1.0)
    assert recovery < 1.0


async def test_proxy_blackhole(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Redis unreachable through a blackhole (proxy accepts, reads, never answers)",
        "the cycle gives up within its timeouts (no hang), watchdog pings continue, "
        "the data is untouched, the next cycle after the path heals succeeds",
        group=GROUP,
    )
    socket_timeout, connect_timeout, attempts = 1.0, 0.5, 2
    config = {
        "redis": {
            "socket_timeout": socket_timeout,
            "connect_timeout": connect_timeout,
            "retry_attempts": attempts,
        }
    }
    async with TcpProxy("127.0.0.1", server.port) as proxy:
        async with asyncio.timeout(40):
            h = await daemons.start(
                proxy.url(password=SECRET), fake.url, config=config, watchdog_usec=400_000
            )
            old = await first_snapshot(h, admin)
            proxy.set_mode("blackhole")
            pings = h.notify.count("WATCHDOG", "1")
            started = time.monotonic()
            assert await h.cycle() == ["redis_down"]
            stuck = time.monotonic() - started
            during = [t for t in h.notify.times("WATCHDOG", "1") if t > started]
            assert_running(h)
            proxy.set_mode("pass")
            clock = Stopwatch()
            assert await h.cycle() == ["unchanged"]
            recovery = clock()
            assert (await read_snapshot(admin)).same_data(old)
            assert await read_metrics(admin) == {"refresh_success": 2}
            assert await h.stop() == 0
    # redis-py: one try plus `attempts` retries, each bounded by the socket timeout (a new
    # connection's handshake by connect + socket timeout), plus backoff: never a hang.
    bound = (attempts + 1) * (socket_timeout + connect_timeout) + 1.0
    assert stuck < bound, stuck
    # WATCHDOG_USEC 0.4 s -> a ping every 0.2 s, all through the stuck cycle
    assert len(during) >= int(stuck / 0.2) - 2, (len(during), stuck)
    assert h.notify.count("WATCHDOG", "1") > pings
    reliability.recovery(recovery, bound=1.0)
    reliability.detail(stuck_cycle_s=round(stuck, 2), watchdog_pings_during=len(during))
    assert recovery < 1.0


async def test_proxy_resets_every_connection(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Redis connections reset (RST) by the network: the pooled ones, then every new one",
        "pooled: the daemon reconnects on next use and keeps running; every new one too: the "
        "cycle fails fast (redis.unavailable, no upstream request), data untouched; the next "
        "cycle after the path heals succeeds",
        group=GROUP,
    )
    async with TcpProxy("127.0.0.1", server.port) as proxy:
        async with asyncio.timeout(30):
            h = await daemons.start(proxy.url(password=SECRET), fake.url)
            old = await first_snapshot(h, admin)
            assert h.d.proc is not None
            # RST the pooled connections; the cache watcher (every 0.1 s) uses one next
            connections = proxy.connections
            if proxy.reset_all() < 1:
                pytest.fail("no pooled connection to reset: the scenario no longer applies")
            reconnected = asyncio.create_task(
                proxy.wait_for(lambda: proxy.connections > connections)
            )
            died = asyncio.create_task(h.d.proc.wait())
            await asyncio.wait({reconnected, died}, return_when=asyncio.FIRST_COMPLETED)
            for task in (reconnected, died):
                task.cancel()
            await asyncio.gather(reconnected, died, return_exceptions=True)
            assert h.d.proc.returncode is None, h.d.output()
            # now every connection is reset as soon as it is opened
            connections = proxy.connections
            requests = fake.requests[SPOT]
            proxy.set_mode("reset")
            clock = Stopwatch()
            assert await h.cycle() == ["redis_down"]
            failed_in = clock()
            assert proxy.connections > connections  # it tried to reconnect, and was reset
            assert fake.requests[SPOT] == requests
            assert_running(h)
            proxy.set_mode("pass")
            clock.reset()
            assert await h.cycle() == ["unchanged"]
            recovery = clock()
            assert (await read_snapshot(admin)).same_data(old)
            assert await read_metrics(admin) == {"refresh_success": 2}
            assert await h.stop() == 0
    assert failed_in < 2.0, failed_in
    reliability.recovery(recovery, bound=1.0)
    reliability.detail(failed_in_s=round(failed_in, 2))
    assert recovery < 1.0


async def test_connection_cut_while_the_failure_record_is_watched(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Connection cut between WATCH and EXEC of a fenced write (recording a failed cycle)",
        "the watched transaction is retried on a new connection: the upstream failure is "
        "recorded (refresh_error +1, meta stale) and the cycle is not reported as Redis down",
        group=GROUP,
    )
    async with TcpProxy("127.0.0.1", server.port) as proxy:
        async with asyncio.timeout(30):
            h = await daemons.start(proxy.url(password=SECRET), fake.url)
            old = await first_snapshot(h, admin)
            fake.fail(SPOT, Fault.stall_body())  # the fetch times out after 1 s
            token = h.begin()
            await fake.wait_for_requests(SPOT, 2)
            # The failure record runs WATCH <lease key>, then GET <lease key> (is it still
            # ours?), then MULTI/EXEC: cut the connection as the GET goes out.
            lease_key = b"symbold:{spot}:leader"
            proxy.cut_once_on(b"$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(lease_key), lease_key))
            outcomes = await h.finish(token)
            if proxy.cuts != 1:
                pytest.fail("the lease GET never went out: the scenario no longer applies")
            assert outcomes == ["error"], [
                e for e in h.d.events if e.get("event", "").startswith(("refresh.", "redis."))
            ]
            assert (await read_snapshot(admin)).same_data(old)
            assert (await read_meta(admin))["stale"] == "1"
            assert await read_metrics(admin) == {"refresh_success": 1, "refresh_error": 1}
            assert_running(h)
            assert await h.stop() == 0
