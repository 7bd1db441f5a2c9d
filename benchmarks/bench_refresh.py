"""Refresh benchmark: symbold's refresh path against the legacy design and a floor.

Every case fetches the same recorded spot payload (2023-09, 3.6 MB, 2,292 symbols) from a
fake Binance over loopback HTTP (aiohttp server in a child process, gzip as Binance sends it)
and writes into a private redis-server, on uvloop:

- ``symbold cold``: ``MarketRefresher.refresh_once()`` while the content changes every run
  (two payload variants that differ in one tickSize alternate), so every run takes the full
  path: fetch, normalize, prioritize, build_snapshot, diff, full MULTI commit. This is the case
  the targets are about.
- ``symbold steady``: the same payload every run (the "unchanged" path: same work up to the
  version check, then a small commit that only renews TTL, timestamp and meta).
- ``symbold after restart``: a new refresher over an emptied database each run (prepared off
  the clock): the first cycle of a restarted daemon, whatever a design keeps in memory.
- ``seed-style``: the legacy design: aiohttp fetch, stdlib ``json.loads``, filter TRADING, sort
  by quote rank then symbol, pick tick/step/min-notional into dicts, ``json.dumps``, then on a
  plain synchronous redis client three SETs and an INCR.
- ``floor``: about the least a correct refresher can do: fetch, split rows with msgspec into
  ``list[Raw]``, read each row's symbol with a one-field struct, one MULTI writing a hash of
  symbol -> raw row bytes.

Targets (reported, never enforced): symbold/floor <= 1.3x and seed/symbold >= 2.5x, on the
median CPU time of this process. Then the same at modern size (440 permission groups per row,
about 17 MB, generated at run time) with a 1 ms ticker task that measures how long the event
loop stalls, and a per-step breakdown of the symbold path (its functions called one by one,
interleaved with the other cases so the sum can be set against ``refresh_once``).

Options: ``--runs N`` (default 15), ``--warmup N``, ``--big-runs N`` (modern size, default 5),
``--no-modern``, ``--gzip never``. Inputs are read from ``../shared`` (see ``common``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import redis
import redis.asyncio

from benchmarks.common import (
    FIXTURES_DIR,
    MAKE_PAYLOAD,
    Case,
    Clock,
    PayloadServer,
    Sample,
    Stats,
    add_common_args,
    daemon_logging_to_devnull,
    loop_name,
    measure,
    mib,
    private_redis,
    python_version,
    run_async,
    skipped,
    table,
)
from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import MarketSettings, Settings
from daemon.contract.keys import MarketKeys, market_keys
from daemon.contract.meta import SnapshotMeta
from daemon.redis.clients import ConnectionConfig
from daemon.refresh.cycle import MarketRefresher, source_config
from daemon.snapshot import listing, normalize
from daemon.snapshot.diff import diff_snapshots
from daemon.snapshot.store import SnapshotStore, new_token
from daemon.upstream.fetch import SourceConfig, fetch, make_session

FIXTURE = "spot-exchangeinfo-2023-09.json"
PERMISSION_GROUPS = 440

SPOT = "/api/v3/exchangeInfo"
PATH_A = SPOT
PATH_B = "/variant-b" + SPOT
PATH_MODERN_A = "/modern-a" + SPOT
PATH_MODERN_B = "/modern-b" + SPOT

TARGET_VS_FLOOR = 1.3  # symbold / floor, at most
TARGET_VS_SEED = 2.5  # seed / symbold, at least

DEFAULT_BIG_RUNS = 5
TICK = 0.001  # the stall probe's period, seconds

# Databases of the private server, one per case so no case sees another's keys.
DB_COLD, DB_STEADY, DB_SEED, DB_FLOOR, DB_BREAKDOWN, DB_RESTART = 1, 2, 3, 4, 5, 6
DB_BIG_SYMBOLD, DB_BIG_SEED, DB_BIG_FLOOR, DB_BIG_BREAKDOWN = 7, 8, 9, 10


# ---------------------------------------------------------------------------------------------
# inputs


def variant_of(payload: bytes) -> bytes:
    """The same payload with the first tickSize changed (same length, so nothing else moves)."""
    match = re.search(rb'"tickSize":"([0-9.]+)"', payload)
    if match is None:
        raise RuntimeError("payload has no tickSize to vary")
    value = match.group(1)
    at = next(i for i, c in enumerate(value) if c in b"123456789")  # first non-zero digit
    digit = b"3" if value[at : at + 1] == b"2" else b"2"
    changed = value[:at] + digit + value[at + 1 :]
    return payload[: match.start(1)] + changed + payload[match.end(1) :]


@dataclass(frozen=True, slots=True)
class Payload:
    """One payload and its one-tickSize variant, as files the server reads."""

    a: Path
    b: Path
    size: int
    symbols: int
    trading: int


def describe_payload(a: Path, b: Path) -> Payload:
    data = a.read_bytes()
    rows = msgspec.json.decode(data, type=_StatusRows).symbols
    return Payload(
        a=a,
        b=b,
        size=len(data),
        symbols=len(rows),
        trading=sum(1 for r in rows if r.status == "TRADING"),
    )


class _Status(msgspec.Struct):
    status: str = ""


class _StatusRows(msgspec.Struct):
    symbols: list[_Status]


def prepare_recorded(tmp: Path) -> Payload:
    source = FIXTURES_DIR / FIXTURE
    b = tmp / "spot-2023-09-variant-b.json"
    b.write_bytes(variant_of(source.read_bytes()))
    return describe_payload(source, b)


def prepare_modern(tmp: Path) -> Payload:
    """Generate the ~17 MB modern-size payload with the shared tool (and its variant)."""
    a = tmp / f"spot-modern-{PERMISSION_GROUPS}.json"
    subprocess.run(
        [
            sys.executable,
            str(MAKE_PAYLOAD),
            str(FIXTURES_DIR / FIXTURE),
            str(a),
            "--permission-groups",
            str(PERMISSION_GROUPS),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    b = tmp / f"spot-modern-{PERMISSION_GROUPS}-variant-b.json"
    b.write_bytes(variant_of(a.read_bytes()))
    return describe_payload(a, b)


# ---------------------------------------------------------------------------------------------
# the cases


@dataclass
class Symbold:
    """The real refresh path, alternating between two sources when ``cold``."""

    refresher: MarketRefresher
    sources: tuple[SourceConfig, SourceConfig]
    expect: str

    async def run(self, i: int) -> None:
        self.refresher.source = self.sources[i % 2]
        result = await self.refresher.refresh_once()
        # The first run of a case is always "accepted"; after that the outcome is the case's.
        if result.outcome != self.expect and not (i == 0 and result.outcome == "accepted"):
            raise RuntimeError(f"symbold refresh: expected {self.expect}, got {result}")


@dataclass
class SymboldRestart:
    """The path of a daemon's first cycle after a restart over an emptied Redis: a new
    refresher (nothing held in memory) and an empty database each run, both prepared by
    ``before()`` off the clock. Shows the full cold cost whatever caching a design adds."""

    make: Callable[[], MarketRefresher]
    flush: Callable[[], object]
    refresher: MarketRefresher | None = None

    async def before(self, i: int) -> None:
        self.flush()
        self.refresher = self.make()

    async def run(self, i: int) -> None:
        assert self.refresher is not None
        result = await self.refresher.refresh_once()
        if result.outcome != "accepted":
            raise RuntimeError(f"symbold refresh after restart: expected accepted, got {result}")


@dataclass
class SeedStyle:
    """The legacy design (stdlib JSON, plain dicts, sync redis client)."""

    session: aiohttp.ClientSession
    urls: tuple[str, str]
    client: redis.Redis
    prefix: str
    quote_priority: tuple[str, ...]
    cache_ttl: int = 3600

    async def run(self, i: int) -> None:
        async with self.session.get(self.urls[i % 2]) as resp:
            resp.raise_for_status()
            body = await resp.read()
        data = json.loads(body)
        rank = {quote: n for n, quote in enumerate(self.quote_priority)}
        unknown = len(rank)
        trading = [s for s in data["symbols"] if s.get("status") == "TRADING"]
        trading.sort(key=lambda s: (rank.get(s["quoteAsset"], unknown), s["symbol"]))
        out: list[dict[str, Any]] = []
        for s in trading:
            tick = step = min_notional = None
            for f in s.get("filters", ()):
                kind = f.get("filterType")
                if kind == "PRICE_FILTER":
                    tick = f.get("tickSize")
                elif kind == "LOT_SIZE":
                    step = f.get("stepSize")
                elif kind in ("NOTIONAL", "MIN_NOTIONAL"):
                    min_notional = f.get("minNotional")
            out.append(
                {
                    "symbol": s["symbol"],
                    "base": s["baseAsset"],
                    "quote": s["quoteAsset"],
                    "status": s["status"],
                    "tick_size": tick,
                    "step_size": step,
                    "min_notional": min_notional,
                }
            )
        blob = json.dumps(out)
        # As the legacy task did: blocking calls, straight from the coroutine.
        self.client.set(f"{self.prefix}:symbols", blob, ex=self.cache_ttl)
        self.client.set(f"{self.prefix}:last_good", blob)
        self.client.set(f"{self.prefix}:refreshed_at", time.time())
        self.client.incr(f"{self.prefix}:refresh_success")


class _Rows(msgspec.Struct):
    symbols: list[msgspec.Raw]


class _Name(msgspec.Struct):
    symbol: str


@dataclass
class Floor:
    """Fetch, split rows, one MULTI with a hash of symbol -> raw row."""

    session: aiohttp.ClientSession
    urls: tuple[str, str]
    client: redis.asyncio.Redis
    key: str
    expect_rows: int
    rows_decoder: msgspec.json.Decoder[_Rows] = field(
        default_factory=lambda: msgspec.json.Decoder(_Rows)
    )
    name_decoder: msgspec.json.Decoder[_Name] = field(
        default_factory=lambda: msgspec.json.Decoder(_Name)
    )

    async def run(self, i: int) -> None:
        async with self.session.get(self.urls[i % 2]) as resp:
            resp.raise_for_status()
            body = await resp.read()
        decode_name = self.name_decoder.decode
        by_symbol = {
            decode_name(row).symbol: memoryview(row)
            for row in self.rows_decoder.decode(body).symbols
        }
        if len(by_symbol) != self.expect_rows:
            raise RuntimeError(f"floor: {len(by_symbol)} rows, expected {self.expect_rows}")
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key, mapping=by_symbol)  # type: ignore[arg-type]
        await pipe.execute()


# ---------------------------------------------------------------------------------------------
# the environment: servers, clients, refreshers


@dataclass
class Env:
    redis_server: Any
    web: PayloadServer
    settings: Settings = field(default_factory=Settings)
    closers: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    sync_clients: list[redis.Redis] = field(default_factory=list)

    def redis_url(self, db: int) -> str:
        url: str = self.redis_server.url_db(db)
        return url

    def flush_all(self) -> None:
        client = self.redis_server.client()
        try:
            client.flushall()
        finally:
            client.close()

    def market(self, path: str) -> MarketSettings:
        defaults = self.settings.markets.spot
        return MarketSettings(
            enabled=True,
            base_urls=(self.web.url,),
            path=path,
            cache_ttl=defaults.cache_ttl,
            list_statuses=defaults.list_statuses,
            quote_priority=defaults.quote_priority,
            pinned=defaults.pinned,
        )

    def source(self, path: str) -> SourceConfig:
        return source_config(self.market(path), self.settings.upstream)

    def symbold_client(self, db: int) -> redis.asyncio.Redis:
        """The client the service builds (bytes, blocking pool, retry), on ``db``."""
        url = parse_redis_url(self.redis_url(db), "benchmark")
        client = ConnectionConfig(url=url, settings=self.settings.redis).make_async(decode=False)
        self.closers.append(client.aclose)
        return client

    def symbold_session(self) -> aiohttp.ClientSession:
        session = make_session(self.source(PATH_A))
        self.closers.append(session.close)
        return session

    def plain_session(self) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession()
        self.closers.append(session.close)
        return session

    def refresher(
        self,
        db: int,
        paths: tuple[str, str],
        *,
        client: redis.asyncio.Redis | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> tuple[MarketRefresher, MarketKeys]:
        s = self.settings
        keys = market_keys("spot", prefix="bench")
        refresher = MarketRefresher.for_market(
            s,
            "spot",
            client=client if client is not None else self.symbold_client(db),
            session=session if session is not None else self.symbold_session(),
            market=self.market(paths[0]),
            keys=keys,
        )
        return refresher, keys

    def symbold_restart(self, db: int, path: str) -> SymboldRestart:
        # The process-wide client and session survive (as they would be rebuilt at start-up,
        # off the clock); the refresher and the data do not.
        client, session = self.symbold_client(db), self.symbold_session()
        flusher = self.redis_server.client(db)
        self.sync_clients.append(flusher)
        return SymboldRestart(
            make=lambda: self.refresher(db, (path, path), client=client, session=session)[0],
            flush=flusher.flushdb,
        )

    def symbold(self, db: int, paths: tuple[str, str], *, expect: str) -> Symbold:
        refresher, _ = self.refresher(db, paths)
        sources = (self.source(paths[0]), self.source(paths[1]))
        return Symbold(refresher, sources, expect)

    def breakdown(self, db: int, paths: tuple[str, str], *, warmup: int) -> Breakdown:
        refresher, _ = self.refresher(db, paths)
        return Breakdown(refresher, (self.source(paths[0]), self.source(paths[1])), warmup)

    def seed(self, db: int, paths: tuple[str, str]) -> SeedStyle:
        # Plain from_url, as the legacy module built it.
        client = redis.Redis.from_url(self.redis_url(db))
        self.sync_clients.append(client)
        return SeedStyle(
            session=self.plain_session(),
            urls=(self.web.url + paths[0], self.web.url + paths[1]),
            client=client,
            prefix="bench:seed",
            quote_priority=self.settings.markets.spot.quote_priority,
        )

    def floor(self, db: int, paths: tuple[str, str], rows: int) -> Floor:
        client = redis.asyncio.Redis.from_url(self.redis_url(db))
        self.closers.append(client.aclose)
        return Floor(
            session=self.plain_session(),
            urls=(self.web.url + paths[0], self.web.url + paths[1]),
            client=client,
            key="bench:floor:by_symbol",
            expect_rows=rows,
        )

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()
        for client in self.sync_clients:
            client.close()


# ---------------------------------------------------------------------------------------------
# breakdown: the refresh path's functions timed one by one


STEPS = ("read_state", "fetch", "normalize", "prioritize", "build_snapshot", "diff", "commit")


@dataclass
class Breakdown:
    """The steps of a full (content changed) cycle run by hand, each on its own clock.

    It is a case like the others, so it runs interleaved with ``refresh_once`` and the two can
    be compared; the per-step samples of the timed runs (``i >= warmup``) are kept.
    """

    refresher: MarketRefresher
    sources: tuple[SourceConfig, SourceConfig]
    warmup: int
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {step: [] for step in STEPS})
    previous: listing.SnapshotBlobs | None = None
    memo: normalize.RowMemo = field(default_factory=normalize.RowMemo)

    async def run(self, i: int) -> None:
        refresher, market = self.refresher, self.refresher.market
        store: SnapshotStore = refresher.store
        took: dict[str, Sample] = {}

        clock = Clock()
        await store.read_state()
        took["read_state"] = clock.stop()

        clock = Clock()
        fetched = await fetch(refresher.session, self.sources[i % 2])
        took["fetch"] = clock.stop()

        clock = Clock()
        norm = normalize.normalize(fetched.body, market=refresher.name, memo=self.memo)
        took["normalize"] = clock.stop()

        clock = Clock()
        listed = listing.prioritize(
            norm.records,
            list_statuses=market.list_statuses,
            quote_priority=market.quote_priority,
            pinned=market.pinned,
        )
        took["prioritize"] = clock.stop()

        clock = Clock()
        blobs = listing.build_snapshot(norm.records, listed, norm.encoded)
        took["build_snapshot"] = clock.stop()

        clock = Clock()
        previous = self.previous
        diff = diff_snapshots(previous.by_symbol, blobs.by_symbol) if previous else None
        took["diff"] = clock.stop()

        meta = SnapshotMeta(
            version=blobs.version,
            count=blobs.count,
            listed=blobs.listed,
            source=fetched.url,
            server_time=norm.server_time,
            fetched_at=time.time(),
            duration_ms=0.0,
        )
        clock = Clock()
        await store.commit(blobs, meta, diff=diff, token=new_token(), previous=previous)
        took["commit"] = clock.stop()

        self.previous = blobs
        if i >= self.warmup:
            for step, sample in took.items():
                self.samples[step].append(sample)

    def stats(self) -> dict[str, Stats]:
        return {step: Stats.of(found) for step, found in self.samples.items()}


def breakdown_table(steps: Mapping[str, Stats], whole_cpu_ms: float, whole_wall_ms: float) -> str:
    """Per-step medians, as a share of the end-to-end ``refresh_once`` median."""

    def share(cpu_ms: float) -> str:
        return f"{100.0 * cpu_ms / whole_cpu_ms:.0f}%"

    rows: list[list[object]] = [
        [step, st.cpu_ms, st.wall_ms, share(st.cpu_ms)] for step, st in steps.items()
    ]
    pb_cpu = steps["prioritize"].cpu_ms + steps["build_snapshot"].cpu_ms
    pb_wall = steps["prioritize"].wall_ms + steps["build_snapshot"].wall_ms
    sum_cpu = sum(st.cpu_ms for st in steps.values())
    sum_wall = sum(st.wall_ms for st in steps.values())
    rows += [
        ["(prioritize + build_snapshot)", pb_cpu, pb_wall, share(pb_cpu)],
        ["sum of the steps", sum_cpu, sum_wall, share(sum_cpu)],
        ["refresh_once, end to end", whole_cpu_ms, whole_wall_ms, "100%"],
        [
            "rest (logging, guards, freeing, glue)",
            whole_cpu_ms - sum_cpu,
            whole_wall_ms - sum_wall,
            share(whole_cpu_ms - sum_cpu),
        ],
    ]
    return table(["step (median)", "CPU ms", "wall ms", "of e2e CPU"], rows)


# ---------------------------------------------------------------------------------------------
# event-loop stall probe


class Ticker:
    """A task that wakes every ``period`` seconds and records how late each wake-up was."""

    def __init__(self, period: float = TICK) -> None:
        self.period = period
        self.worst = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        period = self.period
        perf = time.perf_counter
        while True:
            started = perf()
            await asyncio.sleep(period)
            late = perf() - started - period
            self.ticks += 1
            if late > self.worst:
                self.worst = late

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stall-ticker")
        await asyncio.sleep(self.period * 3)  # let it settle into its rhythm
        self.worst, self.ticks = 0.0, 0

    async def stop(self) -> float:
        """Stop and return the worst lateness in ms (a wake-up in flight is waited for)."""
        await asyncio.sleep(self.period * 3)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return self.worst * 1000.0


@dataclass
class StallStats:
    cpu_ms: float
    wall_ms: float
    stall_median_ms: float
    stall_worst_ms: float
    ticks: int


async def measure_with_ticker(
    cases: Mapping[str, Case], *, runs: int, warmup: int
) -> dict[str, StallStats]:
    """Like ``measure`` (round-robin, GC before each run), with the ticker running alongside."""
    samples: dict[str, list[tuple[Sample, float, int]]] = {name: [] for name in cases}
    for i in range(warmup + runs):
        for name, case in cases.items():
            gc.collect()
            ticker = Ticker()
            await ticker.start()
            clock = Clock()
            await case(i)
            sample = clock.stop()
            worst = await ticker.stop()
            if i >= warmup:
                samples[name].append((sample, worst, ticker.ticks))
    out: dict[str, StallStats] = {}
    for name, found in samples.items():
        stats = Stats.of([s for s, _, _ in found])
        stalls = sorted(w for _, w, _ in found)
        out[name] = StallStats(
            cpu_ms=stats.cpu_ms,
            wall_ms=stats.wall_ms,
            stall_median_ms=stalls[len(stalls) // 2],
            stall_worst_ms=stalls[-1],
            ticks=sorted(t for _, _, t in found)[len(found) // 2],
        )
    return out


async def idle_stall(seconds: float = 0.2) -> float:
    """The probe's own worst lateness on an idle loop, for scale."""
    ticker = Ticker()
    await ticker.start()
    await asyncio.sleep(seconds)
    return await ticker.stop()


# ---------------------------------------------------------------------------------------------
# report


def ratio_line(label: str, num: Stats, den: Stats) -> str:
    return (
        f"  {label} = {num.cpu_ms / den.cpu_ms:.2f}x"
        f"  [min {num.cpu_min_ms / den.cpu_min_ms:.2f}x; wall {num.wall_ms / den.wall_ms:.2f}x]"
    )


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


@dataclass
class Options:
    runs: int
    warmup: int
    big_runs: int
    modern: bool
    gzip: str


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks refresh",
        description="Refresh path: symbold vs the legacy seed design vs a floor (one run).",
    )
    add_common_args(parser)
    parser.add_argument(
        "--big-runs",
        type=int,
        default=DEFAULT_BIG_RUNS,
        help=f"timed runs at modern size (default {DEFAULT_BIG_RUNS}, after 1 warm-up)",
    )
    parser.add_argument(
        "--no-modern", action="store_true", help="skip the ~17 MB modern-size payload part"
    )
    parser.add_argument(
        "--gzip",
        choices=("auto", "never"),
        default="auto",
        help="auto: gzip when the client asks, as Binance does (default); never: identity",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.big_runs < 1:
        parser.error("--runs and --big-runs must be >= 1, --warmup >= 0")
    return Options(
        runs=args.runs,
        warmup=args.warmup,
        big_runs=args.big_runs,
        modern=not args.no_modern,
        gzip=args.gzip,
    )


def stats_rows(results: Mapping[str, Stats]) -> list[list[object]]:
    return [
        [name, st.cpu_ms, st.wall_ms, f"{st.cpu_min_ms:.1f}..{st.cpu_max_ms:.1f}"]
        for name, st in results.items()
    ]


COLD = "symbold cold (content changes)"
STEADY = "symbold steady (unchanged)"
SEED = "seed-style (legacy design)"
FLOOR = "floor (Raw rows, one MULTI)"
STEPWISE = "symbold, step by step"
RESTART = "symbold after restart (empty Redis)"


async def run_recorded(env: Env, payload: Payload, opts: Options) -> None:
    paths = (PATH_A, PATH_B)
    steps = env.breakdown(DB_BREAKDOWN, paths, warmup=opts.warmup)
    cases: dict[str, Case] = {
        COLD: env.symbold(DB_COLD, paths, expect="accepted").run,
        STEADY: env.symbold(DB_STEADY, (PATH_A, PATH_A), expect="unchanged").run,
        SEED: env.seed(DB_SEED, paths).run,
        FLOOR: env.floor(DB_FLOOR, paths, payload.symbols).run,
        STEPWISE: steps.run,
    }
    restart = env.symbold_restart(DB_RESTART, PATH_A)
    cases[RESTART] = restart.run
    results = await measure(
        cases, runs=opts.runs, warmup=opts.warmup, before={RESTART: restart.before}
    )
    shown = {name: st for name, st in results.items() if name != STEPWISE}
    print(table(["case (median)", "CPU ms", "wall ms", "CPU min..max"], stats_rows(shown)))

    cold, steady, seed, floor = results[COLD], results[STEADY], results[SEED], results[FLOOR]
    vs_floor = cold.cpu_ms / floor.cpu_ms
    vs_seed = seed.cpu_ms / cold.cpu_ms
    print()
    print("ratios of median CPU time [of the fastest runs; of median wall time]:")
    print(
        ratio_line("symbold/floor", cold, floor)
        + f"  target <= {TARGET_VS_FLOOR}x: {verdict(vs_floor <= TARGET_VS_FLOOR)}"
    )
    print(
        ratio_line("seed/symbold ", seed, cold)
        + f"  target >= {TARGET_VS_SEED}x: {verdict(vs_seed >= TARGET_VS_SEED)}"
    )
    print(
        f"  (for reference) symbold steady/floor = {steady.cpu_ms / floor.cpu_ms:.2f}x,"
        f" seed/symbold steady = {seed.cpu_ms / steady.cpu_ms:.2f}x"
    )
    print()
    print(
        "breakdown of the symbold cold path (the same functions called one by one, interleaved"
        " with the runs above):"
    )
    print(breakdown_table(steps.stats(), cold.cpu_ms, cold.wall_ms))


async def run_modern(env: Env, payload: Payload, opts: Options) -> None:
    paths = (PATH_MODERN_A, PATH_MODERN_B)
    idle = await idle_stall()
    warmup = 1
    steps = env.breakdown(DB_BIG_BREAKDOWN, paths, warmup=warmup)
    cases: dict[str, Case] = {
        "symbold cold": env.symbold(DB_BIG_SYMBOLD, paths, expect="accepted").run,
        "seed-style": env.seed(DB_BIG_SEED, paths).run,
        "floor": env.floor(DB_BIG_FLOOR, paths, payload.symbols).run,
        STEPWISE: steps.run,
    }
    results = await measure_with_ticker(cases, runs=opts.big_runs, warmup=warmup)
    rows = [
        [name, st.cpu_ms, st.wall_ms, st.stall_median_ms, st.stall_worst_ms]
        for name, st in results.items()
        if name != STEPWISE
    ]
    print(table(["case (median)", "CPU ms", "wall ms", "stall ms", "worst stall ms"], rows))
    sym, flo, seed = results["symbold cold"], results["floor"], results["seed-style"]
    print(
        "  stall: how late a 1 ms ticker task in the same loop woke, at worst, during one run"
        f" (median over runs, and worst run); on an idle loop: {idle:.2f} ms"
    )
    print(
        f"  longest event-loop stall during a symbold refresh: {sym.stall_median_ms:.1f} ms"
        f" (median run), {sym.stall_worst_ms:.1f} ms (worst run)"
    )
    print(
        f"  symbold/floor = {sym.cpu_ms / flo.cpu_ms:.2f}x CPU,"
        f" seed/symbold = {seed.cpu_ms / sym.cpu_ms:.2f}x CPU"
        " (for scale; the targets are on the 2023-09 payload)"
    )
    print()
    print("breakdown at modern size (interleaved likewise, ticker running):")
    print(breakdown_table(steps.stats(), sym.cpu_ms, sym.wall_ms))


async def bench(opts: Options, recorded: Payload, modern: Payload | None, redis_srv: Any) -> None:
    paths = {PATH_A: recorded.a, PATH_B: recorded.b}
    if modern is not None:
        paths |= {PATH_MODERN_A: modern.a, PATH_MODERN_B: modern.b}
    with PayloadServer(paths, gzip_mode=opts.gzip) as web:
        env = Env(redis_server=redis_srv, web=web)
        try:
            print(
                f"payload: {FIXTURE}, {mib(recorded.size)}, {recorded.symbols} symbols"
                f" ({recorded.trading} TRADING); {opts.runs} timed runs after {opts.warmup}"
                " warm-up, cases interleaved"
            )
            print()
            await run_recorded(env, recorded, opts)
            env.flush_all()
            if modern is not None:
                print()
                print(
                    f"modern size: make_payload --permission-groups {PERMISSION_GROUPS}:"
                    f" {mib(modern.size)} ({modern.size:,} bytes), {modern.symbols} symbols;"
                    f" {opts.big_runs} timed runs after 1 warm-up"
                )
                print()
                await run_modern(env, modern, opts)
        finally:
            await env.aclose()
            env.flush_all()


def redis_version(server: Any) -> str:
    client = server.client()
    try:
        info = client.info("server")
        return f"{info.get('redis_version', '?')}"
    finally:
        client.close()


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="symbold-bench-") as name:
        yield Path(name)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if not FIXTURES_DIR.is_dir():
        return skipped(f"recorded payloads folder {FIXTURES_DIR} absent")
    if not (FIXTURES_DIR / FIXTURE).is_file():
        return skipped(f"recorded payload {FIXTURES_DIR / FIXTURE} absent")

    started = time.perf_counter()
    with temp_dir() as tmp:
        recorded = prepare_recorded(tmp)
        modern: Payload | None = None
        if opts.modern and not MAKE_PAYLOAD.is_file():
            print(f"modern size skipped: {MAKE_PAYLOAD} absent")
        elif opts.modern:
            modern = prepare_modern(tmp)
        with private_redis() as redis_srv, daemon_logging_to_devnull():
            print(
                f"refresh benchmark: Python {python_version()}, {loop_name()},"
                f" redis-server {redis_version(redis_srv)} (private, 127.0.0.1:{redis_srv.port}),"
                f" {os.cpu_count()} CPUs; fake Binance in a child process, gzip={opts.gzip}"
            )
            run_async(bench(opts, recorded, modern, redis_srv))
    print()
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
