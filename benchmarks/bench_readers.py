"""Symbol lookups against a bare PING, the legacy path and the near-cache, in one run.

On the 2023-09 spot fixture (2,292 symbols), written by the real snapshot writer into a private
redis-server on a free loopback port, this measures per call, sync and async:

1. a bare PING round trip on the reader's own client (same pool, same connection);
2. ``get_symbol`` without the near-cache (one HGET + msgspec decode of one record);
3. the legacy path: GET the whole list, ``json.loads`` it, scan for the symbol;
4. ``get_symbol`` answered by the near-cache.

Each case runs in batches (many calls per timing, so the clock's own cost does not count),
round-robin with the others so drift hits all alike; the median batch over the rounds after
warm-up is reported. Targets (reported, never failed): lookup <= 1.3x PING; lookup >= 50x
faster than legacy; near-cache hit >= 30x faster than PING.

``python -m benchmarks.bench_readers [--rounds N] [--warmup N]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from benchmarks.common import (
    FIXTURES_DIR,
    daemon_logging_to_devnull,
    loop_name,
    private_redis,
    python_version,
    run_async,
    skipped,
    table,
)

FIXTURE = "spot-exchangeinfo-2023-09.json"

# Calls per timed batch: enough that the timer's own cost vanishes in the average.
BATCH = {"ping": 200, "lookup": 200, "legacy": 1, "hit": 20_000}
CASES = ("ping", "lookup", "legacy", "hit")
LABELS = {
    "ping": "PING round trip (same client)",
    "lookup": "get_symbol, no near-cache (1 HGET)",
    "legacy": "legacy: GET list + json.loads + scan",
    "hit": "get_symbol, near-cache hit",
}
LOOKUP_MAX_PING = 1.3
LEGACY_MIN_LOOKUP = 50.0
PING_MIN_HIT = 30.0


@dataclass(frozen=True, slots=True)
class Result:
    """Median microseconds per call, by case."""

    us: dict[str, float]

    def ratio(self, num: str, den: str) -> float:
        return self.us[num] / self.us[den]


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks readers", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def _median_us(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1e6


# ---------------------------------------------------------------------------------------------
# snapshot


@dataclass(frozen=True, slots=True)
class Loaded:
    names: list[str]
    count: int
    listed: int
    list_bytes: int
    version: str


def _write_snapshot(url: str, payload: bytes) -> Loaded:
    """Normalize the fixture and commit it with the daemon's own writer."""
    from daemon.config.redis_target import parse_redis_url
    from daemon.config.settings import Settings
    from daemon.contract.keys import market_keys
    from daemon.contract.meta import SnapshotMeta
    from daemon.redis.clients import ConnectionConfig
    from daemon.snapshot import listing, normalize
    from daemon.snapshot.store import SnapshotStore, new_token

    spot = Settings().markets.spot
    norm = normalize.normalize(payload, market="spot")
    listed = listing.prioritize(
        norm.records,
        list_statuses=spot.list_statuses,
        quote_priority=spot.quote_priority,
        pinned=spot.pinned,
    )
    blobs = listing.build_snapshot(norm.records, listed)
    meta = SnapshotMeta(
        version=blobs.version,
        count=blobs.count,
        listed=blobs.listed,
        source=FIXTURE,
        server_time=norm.server_time,
        fetched_at=time.time(),
        duration_ms=0.0,
    )
    config = ConnectionConfig(url=parse_redis_url(url, "benchmark"), settings=Settings().redis)

    async def commit() -> None:
        client = config.make_async(decode=False)
        try:
            store = SnapshotStore(client, market_keys("spot"), cache_ttl=spot.cache_ttl)
            await store.commit(blobs, meta, diff=None, token=new_token())
        finally:
            await client.aclose()

    run_async(commit())
    # Symbols spread over the whole listing, so the legacy scan is not flattered by position.
    rng = random.Random(2023)
    names = rng.sample([r.symbol for r in listed], 64)
    return Loaded(names, blobs.count, blobs.listed, len(blobs.symbols_json), blobs.version)


# ---------------------------------------------------------------------------------------------
# sync


def _legacy_sync(client: redis.Redis, key: str, name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = json.loads(client.get(key))  # type: ignore[arg-type]
    return next(row for row in rows if row["symbol"] == name)


def _bench_sync(url: str, data: Loaded, rounds: int, warmup: int) -> Result:
    from daemon.readers import NearCacheOptions, SymbolReader

    names = data.names
    n = len(names)
    with (
        SymbolReader.from_url(url) as reader,
        SymbolReader.from_url(url, near_cache=NearCacheOptions(markets=("spot",))) as cached,
    ):
        client = reader.client
        key = reader.keys("spot").symbols
        if not cached.wait_until(lambda s: s.live, timeout=10):
            raise RuntimeError("near-cache subscriber did not come up")
        for name in names:  # fill the near-cache
            cached.get_symbol(name)
        get, hit, ping = reader.get_symbol, cached.get_symbol, client.ping

        def run_ping(count: int) -> None:
            for _ in range(count):
                ping()

        def run_lookup(count: int) -> None:
            for i in range(count):
                get(names[i % n])

        def run_legacy(count: int) -> None:
            for i in range(count):
                _legacy_sync(client, key, names[i % n])

        def run_hit(count: int) -> None:
            for i in range(count):
                hit(names[i % n])

        runners: dict[str, Callable[[int], None]] = {
            "ping": run_ping,
            "lookup": run_lookup,
            "legacy": run_legacy,
            "hit": run_hit,
        }
        assert _legacy_sync(client, key, names[0])["symbol"] == names[0]
        assert get(names[0]) == hit(names[0])
        samples: dict[str, list[float]] = {case: [] for case in CASES}
        for r in range(warmup + rounds):
            for case in CASES:
                count = BATCH[case]
                gc.collect()
                started = time.perf_counter()
                runners[case](count)
                elapsed = time.perf_counter() - started
                if r >= warmup:
                    samples[case].append(elapsed / count)
        if not cached.near_cache_status().live:
            raise RuntimeError("near-cache channel was lost during the run")
    return Result({case: _median_us(found) for case, found in samples.items()})


# ---------------------------------------------------------------------------------------------
# async


async def _bench_async(url: str, data: Loaded, rounds: int, warmup: int) -> Result:
    from daemon.readers import AsyncSymbolReader, NearCacheOptions

    names = data.names
    n = len(names)
    async with (
        AsyncSymbolReader.from_url(url) as reader,
        AsyncSymbolReader.from_url(url, near_cache=NearCacheOptions(markets=("spot",))) as cached,
    ):
        client = reader.client
        key = reader.keys("spot").symbols
        async with asyncio.timeout(10):
            await cached.wait_until(lambda s: s.live)
        for name in names:
            await cached.get_symbol(name)
        get, hit, ping = reader.get_symbol, cached.get_symbol, client.ping

        async def legacy(name: str) -> dict[str, Any]:
            rows: list[dict[str, Any]] = json.loads(await client.get(key))  # type: ignore[arg-type]
            return next(row for row in rows if row["symbol"] == name)

        async def run_ping(count: int) -> None:
            for _ in range(count):
                await ping()

        async def run_lookup(count: int) -> None:
            for i in range(count):
                await get(names[i % n])

        async def run_legacy(count: int) -> None:
            for i in range(count):
                await legacy(names[i % n])

        async def run_hit(count: int) -> None:
            for i in range(count):
                await hit(names[i % n])

        runners: dict[str, Callable[[int], Awaitable[None]]] = {
            "ping": run_ping,
            "lookup": run_lookup,
            "legacy": run_legacy,
            "hit": run_hit,
        }
        assert (await legacy(names[0]))["symbol"] == names[0]
        assert await get(names[0]) == await hit(names[0])
        samples: dict[str, list[float]] = {case: [] for case in CASES}
        for r in range(warmup + rounds):
            for case in CASES:
                count = BATCH[case]
                gc.collect()
                started = time.perf_counter()
                await runners[case](count)
                elapsed = time.perf_counter() - started
                if r >= warmup:
                    samples[case].append(elapsed / count)
        if not cached.near_cache_status().live:
            raise RuntimeError("near-cache channel was lost during the run")
    return Result({case: _median_us(found) for case, found in samples.items()})


# ---------------------------------------------------------------------------------------------
# report


def _us(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _verdict(value: float, target: float, at_most: bool) -> str:
    met = value <= target if at_most else value >= target
    return f"{value:.2f}x {'met' if met else 'MISSED'}"


def _report(results: dict[str, Result]) -> list[str]:
    modes = list(results)
    print(
        table(
            ["median per call, µs", *modes],
            [[LABELS[case], *(_us(results[m].us[case]) for m in modes)] for case in CASES],
        )
    )
    print()
    checks = [
        ("lookup / PING", f"<= {LOOKUP_MAX_PING}", "lookup", "ping", LOOKUP_MAX_PING, True),
        (
            "legacy / lookup",
            f">= {LEGACY_MIN_LOOKUP:g}",
            "legacy",
            "lookup",
            LEGACY_MIN_LOOKUP,
            False,
        ),
        ("PING / near-cache hit", f">= {PING_MIN_HIT:g}", "ping", "hit", PING_MIN_HIT, False),
    ]
    missed: list[str] = []
    rows: list[list[object]] = []
    for label, target_text, num, den, target, at_most in checks:
        row: list[object] = [label, target_text]
        for mode in modes:
            value = results[mode].ratio(num, den)
            verdict = _verdict(value, target, at_most)
            if verdict.endswith("MISSED"):
                missed.append(f"{mode} {label} = {value:.2f}x (target {target_text})")
            row.append(verdict)
        rows.append(row)
    print(table(["ratio", "target", *modes], rows))
    return missed


def main() -> int:
    args = _parse_args()
    fixture = Path(FIXTURES_DIR) / FIXTURE
    if not fixture.is_file():
        return skipped(f"{fixture} absent")
    payload = fixture.read_bytes()

    import hiredis

    with private_redis() as server:
        probe = server.client()
        try:
            version = probe.info("server")["redis_version"]
        finally:
            probe.close()
        data = _write_snapshot(server.url, payload)
        print(
            f"fixture {FIXTURE}: {data.count} symbols, {data.listed} listed, "
            f"symbols list {data.list_bytes / 1e6:.2f} MB"
        )
        print(
            f"redis-server {version} on 127.0.0.1 (private), Python {python_version()}, "
            f"redis-py {redis.__version__} + hiredis {hiredis.__version__}, "
            f"async on {loop_name()}"
        )
        print(
            f"{args.rounds} rounds after {args.warmup} warm-up; batches of "
            + ", ".join(f"{BATCH[c]} {c}" for c in CASES)
            + "; median batch average per call"
        )
        print()
        with daemon_logging_to_devnull():  # "channel live" lines are not part of the report
            results = {
                "sync": _bench_sync(server.url, data, args.rounds, args.warmup),
                "async": run_async(_bench_async(server.url, data, args.rounds, args.warmup)),
            }
    missed = _report(results)
    print()
    if missed:
        print("targets missed: " + "; ".join(missed))
    else:
        print("targets: all met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
