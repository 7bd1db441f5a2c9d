"""Three real `symbold run` processes on one Redis: one leader per market, takeover after
kill -9 and after SIGSTOP, fenced writes from a stale leader, forwarded SIGHUP, status."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from tests.support.daemon_proc import DaemonProcess, clean_env
from tests.support.fake_binance import SPOT, FakeBinance, Fault, small_exchange_info

TTL = 1.5
INTERVAL = 3.0
SYMBOLS = tuple(f"R{i:02d}USDT" for i in range(10))


def config(tmp_path: Path, fake_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[markets.spot]\nbase_urls = ["{fake_url}"]\ninterval = {INTERVAL}\njitter = 0.0\n'
        f"[lease]\nttl = {TTL}\n"
        "[upstream]\ntimeout_total = 5.0\n"
        "[scheduler]\nmin_refresh_gap = 0.0\ncheck_interval = 0.2\n"
    )
    return path


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.set_payload(SPOT, small_exchange_info(SYMBOLS))
        yield server


@pytest.fixture
async def trio(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> AsyncIterator[list[DaemonProcess]]:
    path = config(tmp_path, fake.url)
    daemons = [
        await DaemonProcess("run", env={"REDIS_URL": redis_url}, config=path).start()
        for _ in range(3)
    ]
    try:
        yield daemons
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.returncode is None:
                d.proc.send_signal(signal.SIGCONT)
        await asyncio.gather(*(d.close() for d in daemons))


async def first_to_log(daemons: list[DaemonProcess], name: str) -> DaemonProcess:
    """The first daemon whose log shows event `name` (waits for it)."""

    async def watch(d: DaemonProcess) -> DaemonProcess:
        await d.wait_event(name)
        return d

    tasks = [asyncio.create_task(watch(d)) for d in daemons]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return next(iter(done)).result()


async def leader_of(daemons: list[DaemonProcess]) -> DaemonProcess:
    """The one daemon that took the spot lease."""
    return await first_to_log(daemons, "lease.acquired")


def meta(redis_url: str) -> dict[str, str]:
    client = redis.Redis.from_url(redis_url)
    try:
        return {k.decode(): v.decode() for k, v in client.hgetall("symbold:{spot}:meta").items()}
    finally:
        client.close()


@pytest.mark.timeout(60)
async def test_one_refresh_per_interval_with_three_daemons(
    trio: list[DaemonProcess], fake: FakeBinance, redis_url: str
) -> None:
    async with asyncio.timeout(40):
        leader = await leader_of(trio)
        await fake.wait_for_requests(SPOT, 1)
        start = time.monotonic()
        await fake.wait_for_requests(SPOT, 4)  # three more intervals
        elapsed = time.monotonic() - start
        await leader.wait_for(
            lambda: leader.count("refresh.ok") + leader.count("refresh.unchanged") >= 4
        )
    followers = [d for d in trio if d is not leader]
    # requests came at the interval, not three times per interval
    assert elapsed >= 3 * INTERVAL * 0.9, elapsed
    assert fake.requests[SPOT] <= 1 + elapsed / INTERVAL + 1
    for f in followers:
        assert f.count("refresh.ok") + f.count("refresh.unchanged") == 0
        assert f.count("lease.following") == 1
    assert meta(redis_url)["writer"].split(":")[1] == str(leader.proc.pid if leader.proc else "")


@pytest.mark.timeout(60)
async def test_failover_after_kill_9_within_ttl_and_one_poll(
    trio: list[DaemonProcess], fake: FakeBinance, redis_url: str
) -> None:
    async with asyncio.timeout(40):
        leader = await leader_of(trio)
        await leader.wait_event("refresh.ok")
        assert leader.proc is not None
        leader.proc.kill()
        killed_at = time.monotonic()
        await leader.wait()
        followers = [d for d in trio if d is not leader]
        successor = await first_to_log(followers, "lease.leading")
        took = time.monotonic() - killed_at
        # the lease expires after TTL; a follower polls every TTL/3 (plus process scheduling)
        assert took <= TTL + TTL / 3 + 1.0, took
        # the new leader keeps the market fresh: its next refresh is due one interval after
        # the last one, not at once (one refresh per interval survives the failover)
        before = fake.requests[SPOT]
        await successor.wait_event("refresh.unchanged")
        assert fake.requests[SPOT] == before + 1
    assert meta(redis_url)["writer"].split(":")[1] == str(
        successor.proc.pid if successor.proc else ""
    )


@pytest.mark.timeout(60)
async def test_sigstopped_leader_is_replaced_and_its_late_write_is_fenced(
    trio: list[DaemonProcess], fake: FakeBinance, redis_url: str
) -> None:
    async with asyncio.timeout(45):
        leader = await leader_of(trio)
        await leader.wait_event("refresh.ok")
        assert leader.proc is not None
        # the leader's next fetch hangs until we let it go; freeze the leader meanwhile
        fake.fail(SPOT, Fault.slow(TTL * 3))
        leader.signal(signal.SIGHUP)
        await fake.wait_for_requests(SPOT, 2)
        leader.signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        followers = [d for d in trio if d is not leader]
        successor = await first_to_log(followers, "lease.leading")
        assert time.monotonic() - stopped_at <= TTL + TTL / 3 + 1.0
        # a new listing appears; the new leader publishes it (SIGHUP to refresh now)
        fake.set_payload(SPOT, small_exchange_info((*SYMBOLS, "NEWUSDT")))
        successor.signal(signal.SIGHUP)
        await successor.wait_event("refresh.ok")
        written = meta(redis_url)
        assert written["count"] == str(len(SYMBOLS) + 1)
        # the old leader wakes up with its stale reply in hand: Redis refuses its write
        leader.signal(signal.SIGCONT)
        await leader.wait_event("refresh.fenced")
        assert meta(redis_url)["version"] == written["version"]
        assert meta(redis_url)["writer"] == written["writer"]
        # and it turns follower instead of fighting for the lease
        await leader.wait_event("lease.following", n=1)


@pytest.mark.timeout(60)
async def test_sighup_on_a_follower_is_forwarded_and_status_names_the_leader(
    trio: list[DaemonProcess], fake: FakeBinance, redis_url: str
) -> None:
    async with asyncio.timeout(40):
        leader = await leader_of(trio)
        await leader.wait_event("refresh.ok")
        follower = next(d for d in trio if d is not leader)
        await follower.wait_event("lease.following")
        before = fake.requests[SPOT]
        follower.signal(signal.SIGHUP)
        await follower.wait_event("refresh.forwarded")
        await leader.wait_event("refresh.requested")
        await fake.wait_for_requests(SPOT, before + 1)
        assert follower.count("refresh.ok") + follower.count("refresh.unchanged") == 0
        status = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "daemon", "status", "--json"],
            env=clean_env({"REDIS_URL": redis_url}),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert status.returncode == 0, status.stderr
    spot = json.loads(status.stdout)["spot"]
    assert leader.proc is not None
    assert spot["leader"].split(":")[1] == str(leader.proc.pid)
    assert spot["daemon"]["pid"] == leader.proc.pid
