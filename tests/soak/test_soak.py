"""Soak: thousands of refresh cycles under a seeded mix of upstream faults and Redis chaos.

One in-process :class:`daemon.service.lifecycle.Service` (the same object `symbold run` runs,
on uvloop as there) refreshes the spot market back to back: a driver forces a refresh as soon as
the last one finished
(``min_refresh_gap = 0``), each time with an upstream reply drawn from a seeded mix of good
payloads (four versions), a 60% shrink, refused names and every fault the fake Binance
has. Meanwhile a chaos task restarts Redis (graceful and kill -9, both empty), kills the
daemon's connections (CLIENT KILL) and pauses the server (CLIENT PAUSE), and readers poll the
cache: each read is one MULTI of meta.version, symbols, last_good, a few by_symbol fields and
the hash's size, checked against what that version must look like.

Asserted and reported:
- zero partial reads (a read is empty -- Redis just restarted -- or one complete snapshot);
- success + error + rejected + skipped == cycles run (the Service's `on_cycle` callback and
  the loop's own counter agree), and in the final *exact phase* (chaos without restarts) the
  Redis metrics hash moved by exactly the in-process counts. Over the whole run the hash
  cannot be compared: a Redis restarted empty loses its counts (documented), and a write that
  timed out may have been applied after the daemon gave up on it;
- file descriptors, the daemon's Redis connections (CLIENT LIST) and RSS stay flat;
- p99 (and max) recovery time: from Redis back up after a restart to the first reader that
  sees a complete snapshot again;
- no "Task exception was never retrieved", no unhandled loop exception; ResourceWarning and
  every other warning are errors (pyproject's filterwarnings).

Duration: ``SYMBOLD_SOAK_SECONDS`` (default 60, the CI setting); seed: ``SYMBOLD_SOAK_SEED``.
A longer local run: ``SYMBOLD_SOAK_SECONDS=900 .venv/bin/pytest -m soak tests/soak -s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import math
import os
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff

from daemon.config.redis_target import parse_redis_url
from daemon.logs import configure_logging
from daemon.refresh.cycle import CycleResult
from daemon.service.lifecycle import Service
from tests.support.builders import make_rows, make_settings, open_refresher, payload, replace_row
from tests.support.builders import symbol_row as row_of
from tests.support.fake_binance import SPOT, FakeBinance, Fault, gzip_bomb_bytes
from tests.support.process_stats import open_fds, proc_status
from tests.support.redis_server import RedisServer
from tests.support.reliability_results import Recorder, record_soak
from tests.support.stored_snapshot import (
    BY_SYMBOL_KEY,
    LAST_GOOD_KEY,
    META_KEY,
    METRICS_KEY,
    SYMBOLS_KEY,
)

SECONDS = float(os.environ.get("SYMBOLD_SOAK_SECONDS", "60"))
SEED = int(os.environ.get("SYMBOLD_SOAK_SEED", "20261125"))
SECRET = "Soak-S3cret-pw"

# method="thread": a hang anywhere (even inside the event loop's C code) dumps every stack
# and ends the run, instead of waiting for CI's own limit.
pytestmark = [pytest.mark.soak, pytest.mark.timeout(int(SECONDS * 1.5) + 120, method="thread")]

# Bounds (the numbers the run is held to; docs/reliability.md prints them with the results).
FD_GROWTH_MAX = 8
RSS_GROWTH_MAX_MIB = 16.0
CLIENTS_MAX = 16  # [redis] max_connections: the pool's bound
RECOVERY_P99_MAX_S = 2.0
# Back to back: about 45 cycles/s alone on 2 cores, 26/s with a CPU hog beside it.
CYCLES_PER_S_MIN = 15

WATCHED = ["C0000USDT", "C0001FDUSD", "ONLYBUSDT", "C0050BTC"]
READERS = 4


# ============================================================================================
# payloads and what each version must look like


def _variants() -> dict[str, bytes]:
    base = make_rows(120)
    return {
        "A": payload(base),
        "B": payload(
            [
                *replace_row(base, "C0000USDT", tick_size="0.00000100"),
                row_of("ONLYBUSDT", "ONLYB", "USDT"),
            ]
        ),
        "C": payload(replace_row(base, "C0050BTC", step_size="1.00000000")),
        "D": payload(base[:110]),  # 8% fewer: within the shrink guard
        "shrunk": payload(base[:48]),  # 60% fewer: held back until confirmed
        "refused": payload(
            [
                *base,
                row_of("BAD\x07USDT", "BAD\x07", "USDT"),
                row_of("L" * 70 + "USDT", "L" * 70, "USDT"),
            ]
        ),
    }


@dataclass(frozen=True)
class Expected:
    symbols: bytes
    watched: tuple[bytes | None, ...]
    hlen: int
    count: bytes


async def learn(url: str, fake: FakeBinance, variants: dict[str, bytes]) -> dict[bytes, Expected]:
    """Commit every variant once to a scratch database and note what each version holds."""
    settings = make_settings(fake.url, {"guards.max_shrink": 1.0})
    client = redis.asyncio.Redis.from_url(url)
    expected: dict[bytes, Expected] = {}
    try:
        async with open_refresher(url, settings) as ref:
            for body in variants.values():
                fake.set_payload(SPOT, body)
                result = await ref.refresh_once()
                assert result.ok, result
                pipe = client.pipeline(transaction=True)
                pipe.hget(META_KEY, "version")
                pipe.get(SYMBOLS_KEY)
                pipe.hmget(BY_SYMBOL_KEY, WATCHED)
                pipe.hlen(BY_SYMBOL_KEY)
                pipe.hget(META_KEY, "count")
                version, symbols, watched, hlen, count = await pipe.execute()
                expected[version] = Expected(symbols, tuple(watched), hlen, count)
        await client.flushdb()
    finally:
        await client.aclose()
    assert len(expected) == 5  # "refused" is version A again: refused rows are not stored
    return expected


# ============================================================================================
# observers


@dataclass
class ReadStats:
    reads: int = 0
    complete: int = 0
    empty: int = 0
    unavailable: int = 0
    partial: int = 0
    examples: list[str] = field(default_factory=list)
    versions: Counter[bytes] = field(default_factory=Counter)


class Recovery:
    """Restart -> first complete read, measured by whichever reader gets there first."""

    def __init__(self) -> None:
        self.pending: tuple[float, asyncio.Event] | None = None
        self.samples: list[float] = []

    def restarted(self) -> asyncio.Event:
        done = asyncio.Event()
        self.pending = (time.monotonic(), done)
        return done

    def complete_read(self, started: float) -> None:
        if self.pending is None:
            return
        ready_at, done = self.pending
        if started >= ready_at:
            self.samples.append(time.monotonic() - ready_at)
            self.pending = None
            done.set()


class LogSink(io.TextIOBase):
    """Where the in-process daemon logs: counts events, keeps problems, checks the secret."""

    _EVENT = re.compile(r'"event": "([^"]+)"')

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.problems: list[str] = []
        self.redis_errors: list[str] = []
        self.leaks = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for line in text.splitlines():
            found = self._EVENT.search(line)
            self.events[found.group(1) if found else "<other>"] += 1
            if SECRET in line:
                self.leaks += 1
            if found and found.group(1).startswith("redis.") and len(self.redis_errors) < 10:
                self.redis_errors.append(line[:600])
            if (
                "never retrieved" in line
                or "Traceback" in line
                or "Unclosed" in line
                or "service.task_crashed" in line
            ) and len(self.problems) < 20:
                self.problems.append(line[:2000])
        return len(text)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


# ============================================================================================
# the soak


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        yield server


async def test_soak(
    redis_factory: type[RedisServer], fake: FakeBinance, reliability: Recorder
) -> None:
    reliability.row(
        f"Soak: {SECONDS:g} s of back-to-back cycles, seeded upstream faults, Redis restarts / "
        "kill -9 / CLIENT KILL / CLIENT PAUSE, 4 readers",
        "zero partial reads; outcomes add up; Redis counters exact in the exact phase; fds, "
        "connections and RSS flat; p99 recovery bounded; no stray task exceptions",
        group="Soak",
    )
    rng = random.Random(SEED)
    server = redis_factory(password=SECRET).start()
    url = server.url
    variants = _variants()
    expected = await learn(server.url_db(9), fake, variants)
    bomb = 4 * 1024 * 1024
    gzip_bomb_bytes(bomb)  # built (and cached) before the clock starts

    sink = LogSink()
    redis_url = parse_redis_url(url, "test")
    configure_logging("info", "json", stream=sink, secrets=redis_url.secrets())  # type: ignore[arg-type]
    # pytest's log capture keeps every record in memory: it would be the RSS we measure.
    root = logging.getLogger()
    foreign = [h for h in root.handlers if h.get_name() != "symbold"]
    for handler in foreign:
        root.removeHandler(handler)
    settings = make_settings(
        fake.url,
        {
            "markets.spot.interval": 1.0,
            "markets.spot.jitter": 0.0,
            "upstream.timeout_total": 0.3,
            "upstream.timeout_connect": 0.2,
            "upstream.timeout_read": 0.3,
            "upstream.backoff_base": 0.01,
            "upstream.backoff_ceiling": 0.05,
            "upstream.ban_fallback": 0.5,
            "upstream.max_body_bytes": 1024 * 1024,
            "redis.connect_timeout": 0.5,
            "redis.socket_timeout": 0.5,
            "redis.retry_attempts": 2,
            "redis.retry_backoff_base": 0.01,
            "redis.retry_backoff_cap": 0.05,
            "scheduler.min_refresh_gap": 0.0,
            "scheduler.check_interval": 0.05,
            "scheduler.shutdown_timeout": 2.0,
            # Back-to-back fetches (15+ a second, with Redis restarted empty every few seconds)
            # are what the shared weight budget exists to stop: charged, most cycles would be
            # skipped. The soak is about the cycle under faults, so its fetches are not charged.
            "budget.own_fetches": False,
        },
    )

    loop = asyncio.get_running_loop()
    blocking = ThreadPoolExecutor(max_workers=1, thread_name_prefix="soak-redis")
    loop_errors: list[str] = []
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(str(ctx.get("message"))))

    outcomes: Counter[tuple[str, str]] = Counter()
    phase = "chaos"
    cycle_done = asyncio.Event()
    last: list[str] = [""]

    def on_cycle(result: CycleResult) -> None:
        kind: str = result.outcome
        last[0] = kind
        if kind == "error" and result.redis_down:
            kind = "error_redis_down"
        outcomes[(phase, kind)] += 1
        cycle_done.set()

    service = Service(settings, redis_url, on_cycle=on_cycle)
    service_task = asyncio.create_task(service.run(install_signals=False), name="service")
    stop = asyncio.Event()
    recovery = Recovery()
    stats = [ReadStats() for _ in range(READERS)]
    samples: list[tuple[float, int, int, int]] = []  # (t, fds, rss_kib, daemon connections)
    chaos_log: Counter[str] = Counter()
    admin = redis.asyncio.Redis.from_url(
        url,
        socket_timeout=3,
        socket_connect_timeout=1,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 2),
    )

    async def read_loop(i: int) -> None:
        st = stats[i]
        client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=3,
            socket_connect_timeout=1,
            client_name=f"soak-reader-{i}",
            retry=redis.asyncio.retry.Retry(NoBackoff(), 1),
        )
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    pipe = client.pipeline(transaction=True)
                    pipe.hget(META_KEY, "version")
                    pipe.get(SYMBOLS_KEY)
                    pipe.get(LAST_GOOD_KEY)
                    pipe.hmget(BY_SYMBOL_KEY, WATCHED)
                    pipe.hlen(BY_SYMBOL_KEY)
                    pipe.hget(META_KEY, "count")
                    version, symbols, last_good, watched, hlen, count = await pipe.execute()
                except (redis.RedisError, OSError):
                    st.unavailable += 1
                    await asyncio.sleep(0.01)
                    continue
                st.reads += 1
                want = expected.get(version) if version is not None else None
                if version is None and symbols is None and last_good is None and hlen == 0:
                    st.empty += 1
                elif want is not None and (symbols, last_good, tuple(watched), hlen, count) == (
                    want.symbols,
                    want.symbols,
                    want.watched,
                    want.hlen,
                    want.count,
                ):
                    st.complete += 1
                    st.versions[version] += 1
                    recovery.complete_read(started)
                else:
                    st.partial += 1
                    if len(st.examples) < 10:
                        st.examples.append(
                            f"version={version!r} symbols={symbols is not None} "
                            f"last_good={last_good is not None} hlen={hlen} count={count!r} "
                            f"watched_ok={want is not None and tuple(watched) == want.watched}"
                        )
                await asyncio.sleep(0.002 + 0.003 * i)
        finally:
            await client.aclose()

    faults: list[tuple[float, Any]] = [
        (0.05, "shrunk"),
        (0.03, "refused"),
        (0.04, Fault.status(500)),
        (0.04, Fault.html_502()),
        (0.04, Fault.truncated()),
        (0.04, Fault.corrupt_gzip()),
        (0.04, Fault.invalid_json()),
        (0.03, Fault.wrong_shape("list")),
        (0.03, Fault.empty_symbols()),
        (0.04, Fault.reset()),
        (0.03, Fault.reset(mid_body=True)),
        (0.02, Fault.slow(0.5)),
        (0.01, Fault.rate_limited(retry_after=1)),
        (0.01, Fault.gzip_bomb(bomb)),
    ]
    normal = ["A", "A", "B", "C", "D"]

    def arm() -> None:
        draw = rng.random()
        for p, what in faults:
            if draw < p:
                if isinstance(what, str):
                    fake.set_mode(SPOT, None)
                    fake.set_payload(SPOT, variants[what])
                else:
                    fake.set_mode(SPOT, what)
                return
            draw -= p
        fake.set_mode(SPOT, None)
        fake.set_payload(SPOT, variants[rng.choice(normal)])

    driving = asyncio.Event()
    driving.set()

    async def drive() -> None:
        while not stop.is_set():
            await driving.wait()
            arm()
            cycle_done.clear()
            service.request_refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cycle_done.wait(), 2.0)
            if last[0] == "skipped":
                await asyncio.sleep(0.1)  # a ban runs: do not spin on forced, skipped cycles
            elif rng.random() < 0.05:
                await asyncio.sleep(rng.uniform(0.06, 0.2))  # idle: let the watcher run too

    async def quiesce() -> None:
        """Stop driving and end on a good cycle; the loop then idles for `interval`."""
        driving.clear()
        for _ in range(100):
            fake.set_mode(SPOT, None)
            fake.set_payload(SPOT, variants["A"])
            before = sum(v for (ph, k), v in outcomes.items() if k in ("accepted", "unchanged"))
            cycle_done.clear()
            service.request_refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cycle_done.wait(), 2.0)
            after = sum(v for (ph, k), v in outcomes.items() if k in ("accepted", "unchanged"))
            if after > before and service.loops[0].idle.is_set():
                return
            await asyncio.sleep(0.6)  # a ban may be running out (Retry-After 1)
        raise AssertionError("could not end on a good cycle")

    async def settled() -> tuple[dict[bytes, bytes], int]:
        """Quiesce, then read the metrics hash at a moment no cycle can straddle: the loop
        idle before and after the read and no cycle finished in between. The caller switches
        the phase label right after (no await in between)."""
        for _ in range(20):
            await quiesce()
            idle, done = service.loops[0].idle, sum(outcomes.values())
            if not idle.is_set():
                continue
            metrics = await admin.hgetall(METRICS_KEY)
            if idle.is_set() and sum(outcomes.values()) == done:
                return metrics, sink.events["refresh.fallback"]
        raise AssertionError("the daemon never settled")

    async def restart(kill: bool) -> None:
        # In a thread of our own: stopping and starting a server blocks, the daemon must not.
        if kill:
            await loop.run_in_executor(blocking, server.kill)
            await loop.run_in_executor(blocking, server.start)
        else:
            await loop.run_in_executor(blocking, server.restart)
        done = recovery.restarted()
        try:
            await asyncio.wait_for(done.wait(), 10.0)
        except TimeoutError:
            chaos_log["restart_not_recovered"] += 1
            recovery.pending = None

    async def chaos(restarts: bool, until: float) -> None:
        while not stop.is_set() and time.monotonic() < until:
            await asyncio.sleep(rng.uniform(0.8, 2.5))
            if time.monotonic() >= until:
                return
            draw = rng.random()
            try:
                if restarts and draw < 0.30:
                    chaos_log["restart"] += 1
                    await restart(kill=False)
                elif restarts and draw < 0.45:
                    chaos_log["kill_9"] += 1
                    await restart(kill=True)
                elif draw < 0.75:
                    chaos_log["client_kill"] += 1
                    for c in await admin.client_list():
                        if c.get("name") == "symbold":
                            with contextlib.suppress(redis.ResponseError):
                                await admin.client_kill_filter(_id=c["id"])
                else:
                    # exact phase: shorter than the daemon's 0.5 s socket timeout
                    ms = rng.randint(100, 1500) if restarts else rng.randint(50, 300)
                    chaos_log["client_pause"] += 1
                    await admin.execute_command("CLIENT", "PAUSE", str(ms), "ALL")
            except (redis.RedisError, OSError) as exc:
                chaos_log[f"chaos_error_{type(exc).__name__}"] += 1

    async def sample() -> None:
        while not stop.is_set():
            clients = -1
            with contextlib.suppress(redis.RedisError, OSError):
                clients = sum(1 for c in await admin.client_list() if c.get("name") == "symbold")
            samples.append((time.monotonic(), open_fds(), proc_status()["VmRSS"], clients))
            await asyncio.sleep(0.5)

    t0 = time.monotonic()
    helpers: list[asyncio.Task[Any]] = []
    try:
        await asyncio.wait_for(service.started.wait(), 10)
        helpers = [
            *(asyncio.create_task(read_loop(i)) for i in range(READERS)),
            asyncio.create_task(drive()),
            asyncio.create_task(sample()),
        ]
        chaos_end = t0 + SECONDS * 0.8
        await chaos(restarts=True, until=chaos_end)

        # exact phase: no restarts; every count must reach Redis exactly once
        m0, fallback0 = await settled()
        phase = "exact"
        driving.set()
        await chaos(restarts=False, until=t0 + SECONDS)
        m1, fallback1 = await settled()
        phase = "after"
        final_clients = sum(1 for c in await admin.client_list() if c.get("name") == "symbold")
    finally:
        stop.set()
        service.request_stop()
        code = await asyncio.wait_for(service_task, 15)
        loop_cycles = service.loops[0].cycles if service.loops else -1
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await admin.aclose()
        blocking.shutdown(wait=True)
        gc.collect()
        loop.set_exception_handler(previous_handler)
        for handler in foreign:
            root.addHandler(handler)
    elapsed = time.monotonic() - t0

    # ---- accounting -------------------------------------------------------------------------
    def total(ph: str | None, *kinds: str) -> int:
        return sum(v for (p, k), v in outcomes.items() if (ph is None or p == ph) and k in kinds)

    kinds = ("accepted", "unchanged", "error", "error_redis_down", "rejected", "skipped")
    cycles = sum(outcomes.values())
    assert {k for _, k in outcomes} <= set(kinds), outcomes
    success = total(None, "accepted", "unchanged")
    errors = total(None, "error", "error_redis_down")
    rejected = total(None, "rejected")
    skipped = total(None, "skipped")

    def delta(field_name: str) -> int:
        key = field_name.encode()
        return int(m1.get(key, 0)) - int(m0.get(key, 0))

    exact = {
        "refresh_success": total("exact", "accepted", "unchanged"),
        "refresh_error": total("exact", "error"),
        "refresh_rejected": total("exact", "rejected"),
        "fallback_used": fallback1 - fallback0,
    }
    redis_exact = {name: delta(name) for name in exact}

    # ---- flatness ---------------------------------------------------------------------------
    warm = [s for s in samples if s[0] >= t0 + SECONDS * 0.15]
    assert len(warm) >= 4, samples
    base_fds, base_rss = warm[0][1], warm[0][2]
    last_quarter = warm[len(warm) * 3 // 4 :]
    fd_growth = max(s[1] for s in last_quarter) - base_fds
    rss_growth_mib = (max(s[2] for s in last_quarter) - base_rss) / 1024
    peak_clients = max(s[3] for s in samples)

    reads = sum(s.reads for s in stats)
    partial = sum(s.partial for s in stats)
    p99 = percentile(recovery.samples, 0.99)
    summary = {
        "seconds": round(elapsed, 1),
        "event_loop": f"{type(loop).__module__}.{type(loop).__name__}",
        "seed": SEED,
        "cycles": cycles,
        "cycles_per_s": round(cycles / elapsed, 1),
        "cycles_per_s_min": CYCLES_PER_S_MIN,
        "success": success,
        "error": errors,
        "error_redis_down": total(None, "error_redis_down"),
        "rejected": rejected,
        "skipped": skipped,
        "exact_phase_cycles": total("exact", *kinds),
        "exact_phase_redis_down": total("exact", "error_redis_down"),
        "exact_phase_in_process": exact,
        "exact_phase_redis_delta": redis_exact,
        "upstream_requests": fake.requests[SPOT],
        "chaos": dict(chaos_log),
        "reads": reads,
        "complete_reads": sum(s.complete for s in stats),
        "empty_reads": sum(s.empty for s in stats),
        "unavailable_reads": sum(s.unavailable for s in stats),
        "partial_reads": partial,
        "versions_seen": len(set().union(*(s.versions for s in stats))),
        "restarts_measured": len(recovery.samples),
        "recovery_p50_s": round(percentile(recovery.samples, 0.5), 3),
        "recovery_p99_s": round(p99, 3),
        "recovery_max_s": round(max(recovery.samples, default=math.nan), 3),
        "fd_growth": fd_growth,
        "fd_bound": FD_GROWTH_MAX,
        "rss_start_mib": round(base_rss / 1024, 1),
        "rss_growth_mib": round(rss_growth_mib, 1),
        "rss_bound_mib": RSS_GROWTH_MAX_MIB,
        "peak_daemon_connections": peak_clients,
        "final_daemon_connections": final_clients,
        "connections_bound": CLIENTS_MAX,
        "log_events": dict(sink.events.most_common(12)),
        "loop_exceptions": loop_errors[:5],
        "secret_leaks": sink.leaks,
        "redis_errors": sink.redis_errors[:5],
        "exit_code": code,
    }
    record_soak(summary)
    reliability.recovery(p99, bound=RECOVERY_P99_MAX_S)
    reliability.detail(**{k: summary[k] for k in ("cycles", "reads", "partial_reads")})
    print("\nsoak summary:", summary)

    # ---- assertions -------------------------------------------------------------------------
    assert code == 0
    assert type(loop).__module__.startswith("uvloop")  # as in production
    assert partial == 0, [s.examples for s in stats]
    assert cycles == success + errors + rejected + skipped
    assert loop_cycles == cycles, (loop_cycles, cycles)  # the loop's own count agrees
    assert cycles >= CYCLES_PER_S_MIN * SECONDS, cycles  # really back to back
    assert redis_exact == exact, (redis_exact, exact)
    # A CLIENT KILL in the exact phase never fails a cycle as "Redis down": commands are
    # retried on a new connection, and a watched transaction cut after WATCH is rebuilt
    # (tests/reliability/test_redis_faults.py::
    # test_connection_cut_while_the_failure_record_is_watched).
    assert total("exact", "error_redis_down") == 0, (outcomes, sink.redis_errors)
    assert min(exact.values()) >= 0
    assert exact["refresh_success"] > 0
    assert sum(s.complete for s in stats) > 10 * SECONDS
    assert chaos_log["restart"] + chaos_log["kill_9"] >= 3, chaos_log
    assert chaos_log["restart_not_recovered"] == 0, chaos_log
    assert p99 < RECOVERY_P99_MAX_S, recovery.samples
    assert fd_growth <= FD_GROWTH_MAX, samples
    assert rss_growth_mib <= RSS_GROWTH_MAX_MIB, samples
    assert 0 < peak_clients <= CLIENTS_MAX
    assert final_clients <= 4
    assert loop_errors == []
    assert sink.problems == []
    assert sink.leaks == 0
    assert sink.events["service.task_crashed"] == 0
