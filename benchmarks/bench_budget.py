"""The budget's acquire against a bare PING, and acquires per second across 8 processes.

On a private redis-server on a free loopback port, per call, sync and async:

1. a bare PING round trip on the budget's own client (same pool, same connection): the
   baseline of the target;
2. ``acquire(1)`` (one EVALSHA charging REQUEST_WEIGHT; limits far above the load);
3. for comparison only, PING sent the way ``acquire`` sends its command (encoded once,
   written on a connection of the same pool): what the round trip alone costs on that path.

Round-robin batches, median batch average per call. Then 8 processes each call the sync
``acquire(1)`` in a loop for a few seconds; the total rate is reported. Target (reported,
never failed): acquire <= 1.5x PING.

``python -m benchmarks budget [--rounds N] [--warmup N] [--seconds S]``
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis

from benchmarks.common import loop_name, private_redis, python_version, run_async, table

BATCH = 200
PING_PACKED = b"*1\r\n$4\r\nPING\r\n"
ACQUIRE_MAX_PING = 1.5
PROCESSES = 8
# Far above anything the benchmark reaches: every acquire is granted.
LIMITS = (
    '[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":100000000}]'
)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks budget", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first")
    parser.add_argument("--seconds", type=float, default=3.0, help="multi-process run length")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def _prepare(url: str) -> None:
    from daemon.budget import WeightBudget
    from daemon.contract.keys import market_keys

    client = redis.Redis.from_url(url)
    client.hset(market_keys("spot").meta, "rate_limits", LIMITS)
    client.close()
    with WeightBudget.from_url(url) as budget:
        budget.start_fresh()


def _bench_sync(url: str, rounds: int, warmup: int) -> dict[str, float]:
    from daemon.budget import WeightBudget
    from daemon.budget._sync import _send_packed

    with WeightBudget.from_url(url) as budget:
        client = budget._clients.get()
        acquire, ping = budget.acquire, client.ping
        acquire(1)
        runners: dict[str, Callable[[], None]] = {
            "ping": lambda: [ping() for _ in range(BATCH)] and None,
            "acquire": lambda: [acquire(1) for _ in range(BATCH)] and None,
            "packed": lambda: [_send_packed(client, PING_PACKED) for _ in range(BATCH)] and None,
        }
        samples: dict[str, list[float]] = {k: [] for k in runners}
        for r in range(warmup + rounds):
            for name, run in runners.items():
                gc.collect()
                t = time.perf_counter()
                run()
                if r >= warmup:
                    samples[name].append((time.perf_counter() - t) / BATCH)
    return {k: statistics.median(v) * 1e6 for k, v in samples.items()}


async def _bench_async(url: str, rounds: int, warmup: int) -> dict[str, float]:
    from daemon.budget import AsyncWeightBudget
    from daemon.budget._async import _send_packed

    async with AsyncWeightBudget.from_url(url) as budget:
        client = budget._clients.get()
        acquire, ping = budget.acquire, client.ping
        await acquire(1)

        async def run_ping() -> None:
            for _ in range(BATCH):
                await ping()

        async def run_acquire() -> None:
            for _ in range(BATCH):
                await acquire(1)

        async def run_packed() -> None:
            for _ in range(BATCH):
                await _send_packed(client, PING_PACKED)

        runners: dict[str, Callable[[], Awaitable[None]]] = {
            "ping": run_ping,
            "acquire": run_acquire,
            "packed": run_packed,
        }
        samples: dict[str, list[float]] = {k: [] for k in runners}
        for r in range(warmup + rounds):
            for name, run in runners.items():
                gc.collect()
                t = time.perf_counter()
                await run()
                if r >= warmup:
                    samples[name].append((time.perf_counter() - t) / BATCH)
    return {k: statistics.median(v) * 1e6 for k, v in samples.items()}


def _worker(url: str, start: float, seconds: float, out: Any) -> None:
    from daemon.budget import WeightBudget

    with WeightBudget.from_url(url) as budget:
        budget.acquire(1)
        time.sleep(max(0.0, start - time.monotonic()))  # begin together
        n, end = 0, start + seconds
        while time.monotonic() < end:
            budget.acquire(1)
            n += 1
    out.put(n)


def _bench_processes(url: str, seconds: float) -> float:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start = time.monotonic() + 3.0
    procs = [ctx.Process(target=_worker, args=(url, start, seconds, out)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(10)
    return total / seconds


def main() -> int:
    args = _parse_args()
    with private_redis() as server:
        probe = server.client()
        version = probe.info("server")["redis_version"]
        probe.close()
        _prepare(server.url)
        print(
            f"redis-server {version} on 127.0.0.1 (private), Python {python_version()}, "
            f"redis-py {redis.__version__}, async on {loop_name()}"
        )
        print(f"{args.rounds} rounds after {args.warmup} warm-up; batches of {BATCH} calls")
        print()
        results = {
            "sync": _bench_sync(server.url, args.rounds, args.warmup),
            "async": run_async(_bench_async(server.url, args.rounds, args.warmup)),
        }
        rate = _bench_processes(server.url, args.seconds)
    modes = list(results)
    print(
        table(
            ["median per call, µs", *modes],
            [
                ["PING round trip (same client)", *(f"{results[m]['ping']:.1f}" for m in modes)],
                ["acquire(1) (1 EVALSHA)", *(f"{results[m]['acquire']:.1f}" for m in modes)],
                [
                    "PING pre-encoded (acquire path)",
                    *(f"{results[m]['packed']:.1f}" for m in modes),
                ],
            ],
        )
    )
    print()
    missed = []
    row: list[object] = ["acquire / PING", f"<= {ACQUIRE_MAX_PING}"]
    for m in modes:
        ratio = results[m]["acquire"] / results[m]["ping"]
        met = ratio <= ACQUIRE_MAX_PING
        row.append(f"{ratio:.2f}x {'met' if met else 'MISSED'}")
        if not met:
            missed.append(f"{m} acquire / PING = {ratio:.2f}x")
    info: list[object] = ["acquire / pre-encoded PING", "(info)"]
    info += [f"{results[m]['acquire'] / results[m]['packed']:.2f}x" for m in modes]
    print(table(["ratio", "target", *modes], [row, info]))
    print()
    print(
        f"{PROCESSES} processes, sync acquire(1) in a loop for {args.seconds:g} s: "
        f"{rate:,.0f} acquires/s"
    )
    print()
    print("targets missed: " + "; ".join(missed) if missed else "targets: all met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
