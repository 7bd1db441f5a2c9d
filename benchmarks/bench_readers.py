"""Symbol lookups against a bare PING, the legacy path and the near-cache, in one run.

On the 2023-09 spot fixture (2,292 symbols), written by the daemon's own refresh cycle into a
private redis-server on a free loopback port, this measures per call, sync and async:

1. a bare PING round trip on the reader's own client (same pool, same connection);
2. ``get_symbol`` without the near-cache (one HGET + msgspec decode of one record);
3. the legacy lookup as the bot did it: GET the legacy warm-up's own blob (TRADING symbols with
   the few fields it picked, ``json.dumps``), ``json.loads`` it, scan for the symbol;
4. the same scan over symbold's listing (``symbols``, every field of every listed record):
   what a legacy caller pays if pointed at symbold's key unchanged;
5. ``get_symbol`` answered by the near-cache.

Each case runs in batches (many calls per timing, so the clock's own cost does not count),
round-robin with the others so drift hits all alike; the median batch over the rounds after
warm-up is reported. Targets (reported, never failed): lookup <= 1.3x PING; the legacy lookup
(its own lean blob) >= 10x a lookup; near-cache hit >= 30x faster than PING.

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
    symbold_keys,
    symbold_settings,
    table,
)

FIXTURE = "spot-exchangeinfo-2023-09.json"

# Calls per timed batch: enough that the timer's own cost vanishes in the average.
BATCH = {"ping": 200, "lookup": 200, "legacy": 5, "listing": 1, "hit": 20_000}
CASES = ("ping", "lookup", "legacy", "listing", "hit")
LABELS = {
    "ping": "PING round trip (same client)",
    "lookup": "get_symbol, no near-cache (1 HGET)",
    "legacy": "legacy: GET seed-style blob + json.loads + scan",
    "listing": "legacy scan over symbold's listing",
    "hit": "get_symbol, near-cache hit",
}
LOOKUP_MAX_PING = 1.3
LEGACY_MIN_LOOKUP = 10.0
PING_MIN_HIT = 30.0
LEGACY_KEY = "seed:symbols"  # where the legacy warm-up's blob is written for case 3


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
    legacy_bytes: int


def _write_snapshot(url: str, fixture: Path) -> Loaded:
    """One refresh cycle of the daemon over the fixture (a ``file:`` source), and the legacy
    warm-up's own blob of the same payload under ``LEGACY_KEY``."""
    from benchmarks.bench_refresh import seed_row
    from benchmarks.common import symbold_client, symbold_refresher, symbold_session

    base = fixture.resolve().as_uri()

    async def refresh() -> None:
        client = symbold_client(url)
        session = symbold_session(base, "")
        try:
            result = await symbold_refresher(client, session, base, "").refresh_once()
            if result.outcome != "accepted":
                raise RuntimeError(f"writing the snapshot: {result}")
        finally:
            await session.close()
            await client.aclose()

    run_async(refresh())
    spot = symbold_settings().markets.spot
    rank = {quote: n for n, quote in enumerate(spot.quote_priority)}
    rows = json.loads(fixture.read_bytes())["symbols"]
    trading = [r for r in rows if r.get("status") == "TRADING"]
    trading.sort(key=lambda r: (rank.get(r["quoteAsset"], len(rank)), r["symbol"]))
    legacy = json.dumps([seed_row(r) for r in trading])
    client = redis.Redis.from_url(url)
    try:
        client.set(LEGACY_KEY, legacy)
        listing: list[dict[str, Any]] = json.loads(client.get(symbold_keys().symbols))  # type: ignore[arg-type]
        count = client.hlen(symbold_keys().by_symbol)
        list_bytes = client.strlen(symbold_keys().symbols)
    finally:
        client.close()
    # Symbols spread over the whole listing, so the legacy scan is not flattered by position.
    names = random.Random(2023).sample([r["symbol"] for r in listing], 64)
    return Loaded(names, count, len(listing), list_bytes, len(legacy))


# ---------------------------------------------------------------------------------------------
# sync


def _legacy_sync(client: redis.Redis, key: str, name: str) -> dict[str, Any]:
    """The legacy lookup: the whole list, decoded, scanned."""
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
                _legacy_sync(client, LEGACY_KEY, names[i % n])

        def run_listing(count: int) -> None:
            for i in range(count):
                _legacy_sync(client, key, names[i % n])

        def run_hit(count: int) -> None:
            for i in range(count):
                hit(names[i % n])

        runners: dict[str, Callable[[int], None]] = {
            "ping": run_ping,
            "lookup": run_lookup,
            "legacy": run_legacy,
            "listing": run_listing,
            "hit": run_hit,
        }
        assert _legacy_sync(client, LEGACY_KEY, names[0])["symbol"] == names[0]
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

        async def legacy(name: str, where: str = LEGACY_KEY) -> dict[str, Any]:
            rows: list[dict[str, Any]] = json.loads(await client.get(where))  # type: ignore[arg-type]
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

        async def run_listing(count: int) -> None:
            for i in range(count):
                await legacy(names[i % n], key)

        async def run_hit(count: int) -> None:
            for i in range(count):
                await hit(names[i % n])

        runners: dict[str, Callable[[int], Awaitable[None]]] = {
            "ping": run_ping,
            "lookup": run_lookup,
            "legacy": run_legacy,
            "listing": run_listing,
            "hit": run_hit,
        }
        assert (await legacy(names[0]))["symbol"] == names[0]
        assert (await legacy(names[0], key))["symbol"] == names[0]
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
        ("symbold's listing scanned / lookup", "reported", "listing", "lookup", 0.0, False),
    ]
    missed: list[str] = []
    rows: list[list[object]] = []
    for label, target_text, num, den, target, at_most in checks:
        row: list[object] = [label, target_text]
        for mode in modes:
            value = results[mode].ratio(num, den)
            if target_text == "reported":
                row.append(f"{value:.2f}x")
                continue
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

    import hiredis

    with private_redis() as server:
        probe = server.client()
        try:
            version = probe.info("server")["redis_version"]
        finally:
            probe.close()
        with daemon_logging_to_devnull():
            data = _write_snapshot(server.url, fixture)
        print(
            f"fixture {FIXTURE}: {data.count} symbols, {data.listed} listed; symbold's listing"
            f" {data.list_bytes / 1e6:.2f} MB, the seed-style blob {data.legacy_bytes / 1e6:.2f} MB"
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
