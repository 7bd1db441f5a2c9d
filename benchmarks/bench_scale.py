"""Scale benchmark: 10x the symbols and all three markets at once, in one run.

Inputs: the recorded spot payload (2023-09, 2,292 symbols) and USD-M payload (2025-12, 660
symbols) from ``../shared/fixtures/binance``, read in place. At run time, in a temp dir, the
shared ``make_payload.py`` writes the 10x versions (``--copies 10``) and a compact 1x USD-M (the
recorded one is pretty-printed, so 1x and 10x would not be like for like). No COIN-M response was
ever recorded, so a COIN-M-like payload is derived from the USD-M one (quote ``USD``,
``contractType`` PERPETUAL, ``marginAsset`` = base, ``contractSize``, ``contractStatus``, in
Binance's futures format). Every payload also gets a variant that differs in one tickSize.

Servers: a private redis-server on loopback and the fake Binance in a child process (gzip as
Binance sends it), as in ``bench_refresh``; the client side runs on uvloop, with the lease on
(every write fenced) as in production.

1. Cycle time, spot 1x vs 10x: the first cycle on an empty Redis (fresh refreshers over an
   emptied database, lease taken, prepared off the clock) and a steady cycle whose content
   changed in one row (two variants alternate, as bench_refresh's "symbold steady, one row
   changed"). CPU time of this process and wall time, medians; the 10x/1x ratio should be
   <= ~10 (no worse than linear). CPU ms per MB of payload is shown: the cost follows the
   payload's bytes, not its symbol count (see bench_refresh's two sizes of the same symbols).
2. All three markets at once: three refreshers sharing one aiohttp session and one Redis client
   (as the service builds them), one concurrent round (``gather``), at 1x and 10x.
3. Peak RSS: the 10x three-market refresh in a fresh child process. Idle RSS after imports and
   setup, and after a first cycle (the steady state holds the row memo and the held snapshot);
   then the peak (VmHWM, reset before each cycle through ``/proc/self/clear_refs``) during later
   cycles. Target: peak <= idle + 2x the payload size (the three payloads' bytes).
4. Readers during back-to-back refreshes: a child process runs ``SymbolReader.get_symbol`` (no
   near-cache) in a tight loop against the 10x spot snapshot while this process takes turns
   between idle windows and busy windows of three kinds: steady 10x three-market cycles back
   to back (one listed row changed per market per round, so the write path runs) with the
   worker thread at the process's priority (as before it was niced) and as shipped
   (``daemon.refresh.worker.NICE``), and restarts (fresh refreshers over the stored snapshot,
   content changed: read whole, written whole). p50 and p99 per window kind, pooled and each
   busy window against the idle windows beside it (target: the shipped steady kind's pooled
   p99 <= 1.5x idle); the CPU each party used per window kind (reader, redis-server, the
   daemon's loop and worker threads, the fake upstream, and the rest of the host); and Redis's
   SLOWLOG per window kind: the commands that held the server for >= 1 ms (what a lookup can
   queue behind). Binance is remote in production, so the fake upstream serves bodies
   gzipped in advance and runs at nice 19 (``--upstream-nice``); the reader is not pinned.

Targets are reported, never enforced; the exit status is non-zero only on an error.

``python -m benchmarks scale [--runs N] [--warmup N] [--later-cycles N] [--idle S] [--busy S]
[--pairs N] [--upstream-nice N] [--parts 1,2,3,4]``
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import gc
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
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
    PayloadServer,
    Stats,
    daemon_logging_to_devnull,
    loop_name,
    measure,
    mib,
    private_redis,
    proc_status,
    python_version,
    reset_peak,
    run_async,
    skipped,
    symbold_client,
    symbold_lead,
    symbold_point_at,
    symbold_refresher,
    symbold_session,
    table,
    variant_of,
)

MarketName = str

SPOT_FIXTURE = "spot-exchangeinfo-2023-09.json"
USDM_FIXTURE = "usdm-futures-exchangeinfo-2025-12.json"
COPIES = 10
SCALES = (1, COPIES)
MARKETS: tuple[MarketName, ...] = ("spot", "usdm", "coinm")
UPSTREAM_PATH = {
    "spot": "/api/v3/exchangeInfo",
    "usdm": "/fapi/v1/exchangeInfo",
    "coinm": "/dapi/v1/exchangeInfo",
}

# Targets (reported, never enforced).
LINEAR = float(COPIES)  # 10x the symbols: cycle time at most 10x
LINEAR_SLACK = 1.05  # run-to-run noise allowed on top of exactly linear
RSS_PAYLOADS = 2.0  # peak RSS <= idle + 2x the payload bytes
P99_SAME = 1.5  # reader p99 while refreshing back to back <= 1.5x idle

DEFAULT_RUNS = 11
DEFAULT_WARMUP = 2
DEFAULT_LATER = 5
DEFAULT_IDLE_S = 1.5
DEFAULT_BUSY_S = 2.5
DEFAULT_PAIRS = 6  # part 4: busy windows of each kind, each after an idle one (then one more)
DEFAULT_UPSTREAM_NICE = 19  # part 4: the fake upstream's nice value (Binance is remote)
PARTS = (1, 2, 3, 4)
READER_NAMES = 256
LATENCY_HEADERS = (
    "get_symbol, 10x spot, no near-cache",
    "lookups",
    "per s",
    "p50 µs",
    "p99 µs",
    "p99.9 µs",
    "max µs",
)

# Databases of the private server, one per use so nothing sees another's keys.
DB_SPOT_COLD = {1: 1, COPIES: 2}
DB_SPOT_STEADY = {1: 3, COPIES: 4}
DB_ALL_COLD = {1: 5, COPIES: 6}
DB_ALL_STEADY = {1: 7, COPIES: 8}
DB_RSS = 9
DB_READERS = 10


# ---------------------------------------------------------------------------------------------
# inputs


def coinm_row(row: dict[str, Any]) -> dict[str, Any]:
    """A COIN-M perpetual row (``/dapi/v1/exchangeInfo`` shape) made from a USD-M row.

    COIN-M contracts are quoted in USD, margined in the base coin and sized in contracts
    (``contractSize`` USD each), so LOT_SIZE is whole contracts and there is no MIN_NOTIONAL.
    Binance names the status ``contractStatus`` there; ``status`` is kept as well.
    """
    base = row["baseAsset"]
    filters: list[dict[str, Any]] = []
    for f in row.get("filters", []):
        kind = f.get("filterType")
        if kind == "MIN_NOTIONAL":
            continue
        if kind == "LOT_SIZE":
            f = {"stepSize": "1", "filterType": kind, "maxQty": "1000000", "minQty": "1"}
        elif kind == "MARKET_LOT_SIZE":
            f = {"stepSize": "1", "filterType": kind, "maxQty": "60000", "minQty": "1"}
        filters.append(f)
    return {
        "symbol": f"{base}USD_PERP",
        "pair": f"{base}USD",
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": row.get("onboardDate", 1597042800000),
        "contractStatus": row["status"],
        "status": row["status"],
        "contractSize": 100 if base == "BTC" else 10,
        "marginAsset": base,
        "maintMarginPercent": row.get("maintMarginPercent", "2.5000"),
        "requiredMarginPercent": row.get("requiredMarginPercent", "5.0000"),
        "baseAsset": base,
        "quoteAsset": "USD",
        "pricePrecision": row.get("pricePrecision", 1),
        "quantityPrecision": 0,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "equalQtyPrecision": 4,
        "maxMoveOrderLimit": row.get("maxMoveOrderLimit", 10000),
        "triggerProtect": row.get("triggerProtect", "0.0500"),
        "underlyingType": row.get("underlyingType", "COIN"),
        "underlyingSubType": row.get("underlyingSubType", []),
        "liquidationFee": row.get("liquidationFee", "0.010000"),
        "marketTakeBound": row.get("marketTakeBound", "0.30"),
        "filters": filters,
        "orderTypes": row.get("orderTypes", []),
        "timeInForce": row.get("timeInForce", []),
    }


def derive_coinm(usdm: bytes) -> bytes:
    """A COIN-M-like exchangeInfo from a USD-M one: one ``<BASE>USD_PERP`` per base asset."""
    data = json.loads(usdm)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in data["symbols"]:
        new = coinm_row(row)
        if new["symbol"] in seen:  # e.g. BTCUSDT and BTCUSDC share a base
            continue
        seen.add(new["symbol"])
        rows.append(new)
    out = {
        "timezone": data.get("timezone", "UTC"),
        "serverTime": data.get("serverTime"),
        "rateLimits": data.get("rateLimits", []),
        "exchangeFilters": [],
        "symbols": rows,
    }
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()


class _Status(msgspec.Struct):
    status: str = ""


class _StatusRows(msgspec.Struct):
    symbols: list[_Status]


@dataclass(frozen=True, slots=True)
class Payload:
    """One market's payload at one scale, and its one-tickSize variant, as files."""

    market: MarketName
    scale: int
    a: Path
    b: Path
    size: int
    rows: int
    trading: int

    @property
    def path_a(self) -> str:
        return f"/x{self.scale}a{UPSTREAM_PATH[self.market]}"

    @property
    def path_b(self) -> str:
        return f"/x{self.scale}b{UPSTREAM_PATH[self.market]}"


def describe(market: MarketName, scale: int, a: Path, tmp: Path) -> Payload:
    data = a.read_bytes()
    b = tmp / f"{market}-{scale}x-variant-b.json"
    b.write_bytes(variant_of(data))
    rows = msgspec.json.decode(data, type=_StatusRows).symbols
    return Payload(
        market=market,
        scale=scale,
        a=a,
        b=b,
        size=len(data),
        rows=len(rows),
        trading=sum(1 for r in rows if r.status == "TRADING"),
    )


def make_payloads(jobs: Sequence[tuple[Path, Path, int]]) -> None:
    """Run make_payload.py for each (source, destination, copies), two at a time (2 CPUs)."""
    pending = list(jobs)
    running: list[subprocess.Popen[bytes]] = []
    try:
        while pending or running:
            while pending and len(running) < 2:
                src, dst, copies = pending.pop(0)
                running.append(
                    subprocess.Popen(
                        [sys.executable, MAKE_PAYLOAD, src, dst, "--copies", str(copies)],
                        stdout=subprocess.DEVNULL,
                    )
                )
            proc = running.pop(0)
            if proc.wait() != 0:
                raise RuntimeError(f"make_payload.py failed ({proc.args!r})")
    finally:
        for proc in running:
            proc.kill()
            proc.wait()


@dataclass(frozen=True, slots=True)
class Inputs:
    payloads: dict[tuple[MarketName, int], Payload]

    def get(self, market: MarketName, scale: int) -> Payload:
        return self.payloads[(market, scale)]

    def at(self, scale: int) -> list[Payload]:
        return [self.payloads[(m, scale)] for m in MARKETS]


def prepare_inputs(tmp: Path) -> Inputs:
    spot = FIXTURES_DIR / SPOT_FIXTURE
    usdm = FIXTURES_DIR / USDM_FIXTURE
    files: dict[tuple[MarketName, int], Path] = {
        ("spot", 1): spot,  # the recorded payload is compact already (make_payload -> same bytes)
        ("spot", COPIES): tmp / f"spot-{COPIES}x.json",
        ("usdm", 1): tmp / "usdm-1x.json",
        ("usdm", COPIES): tmp / f"usdm-{COPIES}x.json",
        ("coinm", 1): tmp / "coinm-1x.json",
        ("coinm", COPIES): tmp / f"coinm-{COPIES}x.json",
    }
    make_payloads([(spot, files[("spot", COPIES)], COPIES), (usdm, files[("usdm", 1)], 1)])
    coinm = derive_coinm(files[("usdm", 1)].read_bytes())
    files[("coinm", 1)].write_bytes(coinm)
    make_payloads(
        [
            (usdm, files[("usdm", COPIES)], COPIES),
            (files[("coinm", 1)], files[("coinm", COPIES)], COPIES),
        ]
    )
    payloads = {key: describe(key[0], key[1], path, tmp) for key, path in files.items()}
    return Inputs(payloads)


# ---------------------------------------------------------------------------------------------
# clients and refreshers


@dataclass
class Env:
    """Builds what the service builds: one Redis client and one session per daemon."""

    web_url: str
    closers: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    def client(self, url: str) -> redis.asyncio.Redis:
        client: redis.asyncio.Redis = symbold_client(url)
        self.closers.append(client.aclose)
        return client

    def session(self) -> aiohttp.ClientSession:
        session: aiohttp.ClientSession = symbold_session(self.web_url, UPSTREAM_PATH["spot"])
        self.closers.append(session.close)
        return session

    def refresher(
        self, p: Payload, client: redis.asyncio.Redis, session: aiohttp.ClientSession
    ) -> Any:
        return symbold_refresher(client, session, self.web_url, p.path_a, market=p.market)

    def round(self, url: str, payloads: Sequence[Payload]) -> Round:
        client, session = self.client(url), self.session()
        return Round(
            self.web_url,
            client,
            [self.refresher(p, client, session) for p in payloads],
            list(payloads),
        )

    def cold(self, url: str, flush: Callable[[], object], payloads: Sequence[Payload]) -> ColdRound:
        # The process-wide client and session survive a restart in this picture (rebuilt at
        # start-up, off the clock); the refreshers and the data do not.
        client, session = self.client(url), self.session()
        return ColdRound(
            client,
            make=lambda: [self.refresher(p, client, session) for p in payloads],
            flush=flush,
        )

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()
        self.closers.clear()


def _check(results: Sequence[Any], what: str) -> None:
    bad = [r for r in results if r.outcome != "accepted"]
    if bad:
        raise RuntimeError(f"{what}: expected accepted, got {bad}")


@dataclass
class Round:
    """One concurrent round of refresh cycles (one per market, lease on as in production);
    the variants alternate, so every round after the first sees one changed row per market
    (the steady write path)."""

    web_url: str
    client: redis.asyncio.Redis
    refreshers: list[Any]
    payloads: list[Payload]
    leading: bool = False

    async def run(self, i: int) -> None:
        if not self.leading:
            for refresher in self.refreshers:
                await symbold_lead(refresher, self.client)
            self.leading = True
        for refresher, p in zip(self.refreshers, self.payloads, strict=True):
            symbold_point_at(refresher, self.web_url, p.path_b if i % 2 else p.path_a)
        results = await asyncio.gather(*(r.refresh_once() for r in self.refreshers))
        _check(results, "refresh round")


@dataclass
class ColdRound:
    """The first round on an empty Redis: fresh refreshers over an emptied database, lease
    taken, all prepared by ``before()`` off the clock."""

    client: redis.asyncio.Redis
    make: Callable[[], list[Any]]
    flush: Callable[[], object]
    refreshers: list[Any] = field(default_factory=list)

    async def before(self, i: int) -> None:
        self.refreshers = []
        self.flush()
        self.refreshers = self.make()
        for refresher in self.refreshers:
            await symbold_lead(refresher, self.client)

    async def run(self, i: int) -> None:
        results = await asyncio.gather(*(r.refresh_once() for r in self.refreshers))
        _check(results, "first round")


# ---------------------------------------------------------------------------------------------
# parts 1 and 2: cycle time at 1x and 10x


def _linear_verdict(ratio: float) -> str:
    return "met" if ratio <= LINEAR * LINEAR_SLACK else "MISSED"


@dataclass
class Missed:
    items: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.items.append(what)


def scale_tables(
    title: str,
    symbols: dict[int, int],
    sizes: dict[int, int],
    kinds: Sequence[tuple[str, dict[int, Stats]]],
    missed: Missed,
) -> None:
    rows: list[list[object]] = []
    for kind, by_scale in kinds:
        for scale in SCALES:
            st = by_scale[scale]
            rows.append(
                [
                    f"{kind}, {scale}x",
                    f"{symbols[scale]:,}",
                    st.cpu_ms,
                    st.wall_ms,
                    f"{st.cpu_min_ms:.1f}..{st.cpu_max_ms:.1f}",
                    f"{st.cpu_ms / (sizes[scale] / 1e6):.2f}",
                ]
            )
    print(
        table(
            [f"{title} (median)", "symbols", "CPU ms", "wall ms", "CPU min..max", "CPU ms/MB"],
            rows,
        )
    )
    print()
    ratio_rows: list[list[object]] = []
    target = f"<= {LINEAR:g}x"
    for kind, by_scale in kinds:
        one, ten = by_scale[1], by_scale[COPIES]
        cpu, wall = ten.cpu_ms / one.cpu_ms, ten.wall_ms / one.wall_ms
        fastest = ten.cpu_min_ms / one.cpu_min_ms
        ratio_rows.append(
            [
                kind,
                f"{cpu:.2f}x",
                f"{fastest:.2f}x",
                f"{wall:.2f}x",
                target,
                f"CPU {_linear_verdict(cpu)}, wall {_linear_verdict(wall)}",
            ]
        )
        missed.check(cpu <= LINEAR * LINEAR_SLACK, f"{title}, {kind}: CPU {COPIES}x/1x {cpu:.2f}x")
        missed.check(
            wall <= LINEAR * LINEAR_SLACK, f"{title}, {kind}: wall {COPIES}x/1x {wall:.2f}x"
        )
    print(
        table(
            [
                f"{COPIES}x / 1x",
                "CPU (median)",
                "CPU (fastest)",
                "wall (median)",
                "target",
                "verdict",
            ],
            ratio_rows,
        )
    )
    print(
        f"  (linear = {LINEAR:g}x; 'met' allows {100 * (LINEAR_SLACK - 1):.0f}% run-to-run noise"
        f" on top, i.e. <= {LINEAR * LINEAR_SLACK:.1f}x)"
    )


FIRST = "first cycle, empty Redis"
STEADY = "steady cycle (one row changed)"


async def part_cycles(
    env: Env,
    redis_srv: Any,
    inputs: Inputs,
    opts: Options,
    missed: Missed,
    *,
    markets: Sequence[MarketName],
    dbs: tuple[dict[int, int], dict[int, int]],
    title: str,
) -> None:
    cold_dbs, steady_dbs = dbs
    cases: dict[str, Case] = {}
    before: dict[str, Case] = {}
    flushers: list[redis.Redis] = []
    try:
        for scale in SCALES:
            payloads = [inputs.get(m, scale) for m in markets]
            flusher = redis_srv.client(cold_dbs[scale])
            flushers.append(flusher)
            cold = env.cold(redis_srv.url_db(cold_dbs[scale]), flusher.flushdb, payloads)
            cases[f"first {scale}"] = cold.run
            before[f"first {scale}"] = cold.before
            cases[f"steady {scale}"] = env.round(redis_srv.url_db(steady_dbs[scale]), payloads).run
        results = await measure(cases, runs=opts.runs, warmup=opts.warmup, before=before)
    finally:
        for flusher in flushers:
            flusher.close()
    symbols = {s: sum(inputs.get(m, s).rows for m in markets) for s in SCALES}
    sizes = {s: sum(inputs.get(m, s).size for m in markets) for s in SCALES}
    scale_tables(
        title,
        symbols,
        sizes,
        [
            (FIRST, {s: results[f"first {s}"] for s in SCALES}),
            (STEADY, {s: results[f"steady {s}"] for s in SCALES}),
        ],
        missed,
    )


# ---------------------------------------------------------------------------------------------
# part 3: peak RSS in a fresh child process


def _rss_child(
    conn: multiprocessing.connection.Connection,
    web_url: str,
    redis_url: str,
    plan: list[Payload],
    later: int,
) -> None:
    """Child process: set up the three 10x refreshers, run cycles, report memory figures."""
    try:
        with daemon_logging_to_devnull():
            report = run_async(_rss_main(web_url, redis_url, plan, later))
        conn.send(report)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(f"error: {type(exc).__name__}: {exc}")
        raise


async def _rss_main(
    web_url: str, redis_url: str, plan: list[Payload], later: int
) -> dict[str, Any]:
    env = Env(web_url)
    try:
        rnd = env.round(redis_url, plan)
        await rnd.client.ping()  # the connection pool holds one live connection, as when idle
        for refresher in rnd.refreshers:
            await symbold_lead(refresher, rnd.client)
        rnd.leading = True
        report: dict[str, Any] = {}
        gc.collect()
        report["setup"] = proc_status()
        report["reset"] = reset_peak()
        await rnd.run(0)
        report["first_peak"] = proc_status()["VmHWM"]
        gc.collect()
        report["steady"] = proc_status()
        peaks: list[int] = []
        for i in range(1, later + 1):
            reset_peak()
            await rnd.run(i)
            peaks.append(proc_status()["VmHWM"])
            gc.collect()
        report["later_peaks"] = peaks
        report["after"] = proc_status()
        report["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return report
    finally:
        await env.aclose()


def run_rss_child(
    web_url: str, redis_url: str, payloads: Sequence[Payload], later: int
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    plan = list(payloads)
    proc = ctx.Process(
        target=_rss_child, args=(child, web_url, redis_url, plan, later), name="bench-rss"
    )
    proc.start()
    child.close()
    try:
        if not parent.poll(120):
            raise RuntimeError("the RSS child did not report within 120 s")
        try:
            message: object = parent.recv()
        except EOFError:
            message = f"exited with code {proc.exitcode}"
        if not isinstance(message, dict):
            raise RuntimeError(f"RSS child failed: {message}")
        return message
    finally:
        parent.close()
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


def part_rss(report: dict[str, Any], payloads: Sequence[Payload], missed: Missed) -> None:
    size = sum(p.size for p in payloads)
    allowance = RSS_PAYLOADS * size
    setup, steady = report["setup"]["VmRSS"], report["steady"]["VmRSS"]
    first_peak, later = report["first_peak"], report["later_peaks"]
    later_peak = max(later)
    print(
        f"payloads: {' + '.join(f'{p.market} {mib(p.size)}' for p in payloads)}"
        f" = {mib(size)} ({size:,} bytes); {RSS_PAYLOADS:g}x = {mib(int(allowance))}"
    )
    if not report["reset"]:
        print("  (the kernel refused to reset VmHWM: each peak is the process's peak so far)")

    def over(value: int, idle: int) -> str:
        sign = "+" if value >= idle else "-"
        return f"{sign}{mib(abs(value - idle))} = {(value - idle) / size:.2f}x"

    rows: list[list[object]] = [
        ["idle after imports + setup", mib(setup), "", ""],
        ["peak during the first cycle", mib(first_peak), over(first_peak, setup), ""],
        ["idle after the first cycle (steady state)", mib(steady), over(steady, setup), ""],
        [
            f"peak during later cycles (max of {len(later)})",
            mib(later_peak),
            over(later_peak, setup),
            over(later_peak, steady),
        ],
        [
            "idle after the later cycles",
            mib(report["after"]["VmRSS"]),
            over(report["after"]["VmRSS"], setup),
            over(report["after"]["VmRSS"], steady),
        ],
    ]
    print(
        table(
            [
                f"RSS, {COPIES}x, 3 markets, fresh process",
                "RSS",
                "over setup idle (x payloads)",
                "over steady idle (x payloads)",
            ],
            rows,
        )
    )
    print(f"  peak of each later cycle (VmHWM reset before it): {', '.join(mib(p) for p in later)}")
    later_ok = later_peak - steady <= allowance
    first_ok = first_peak - setup <= allowance
    print(
        table(
            ["peak RSS", "growth over idle", "target", "verdict"],
            [
                [
                    "later cycle vs steady idle",
                    f"{(later_peak - steady) / size:.2f}x payloads",
                    f"<= {RSS_PAYLOADS:g}x",
                    "met" if later_ok else "MISSED",
                ],
                [
                    "first cycle vs idle after setup",
                    f"{(first_peak - setup) / size:.2f}x payloads",
                    f"<= {RSS_PAYLOADS:g}x",
                    "met" if first_ok else "MISSED",
                ],
            ],
        )
    )
    print(
        f"  the first cycle's growth that stays after it (steady state: row memo, records, their"
        f" JSON, held snapshot): {mib(steady - setup)} = {(steady - setup) / size:.2f}x payloads"
    )
    print(
        f"  (ru_maxrss of the child, {mib(report['ru_maxrss'])}, is not used: Linux carries the"
        " parent's peak over the spawn's fork+exec into it; VmHWM starts afresh at exec)"
    )
    missed.check(
        later_ok,
        f"RSS peak of a later cycle {(later_peak - steady) / size:.2f}x payloads over steady idle",
    )
    missed.check(
        first_ok,
        f"RSS peak of the first cycle {(first_peak - setup) / size:.2f}x payloads over setup idle",
    )


# ---------------------------------------------------------------------------------------------
# part 4: reader latency while refreshing


def _reader_child(
    conn: multiprocessing.connection.Connection, redis_url: str, names: list[str]
) -> None:
    """Child process: get_symbol in a tight loop until told to stop; send the samples."""
    try:
        from daemon.readers import SymbolReader

        with daemon_logging_to_devnull(), SymbolReader.from_url(redis_url) as reader:
            get = reader.get_symbol
            for name in names:
                if get(name) is None:
                    raise RuntimeError(f"reader: {name} not in the snapshot")
            for _ in range(2000):  # warm the connection and the code paths
                get(names[0])
            starts, lats = array.array("q"), array.array("q")
            n, i = len(names), 0
            clock, poll = time.monotonic_ns, conn.poll
            add_start, add_lat = starts.append, lats.append
            gc.collect()
            conn.send("ready")
            while not poll():
                for _ in range(64):
                    t0 = clock()
                    get(names[i % n])
                    t1 = clock()
                    add_start(t0)
                    add_lat(t1 - t0)
                    i += 1
        conn.send_bytes(starts.tobytes())
        conn.send_bytes(lats.tobytes())
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(f"error: {type(exc).__name__}: {exc}")
        raise


def _pct(values: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanoseconds, in µs."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))] / 1000.0


@dataclass
class Latency:
    count: int
    seconds: float
    p50: float
    p99: float
    p999: float
    worst: float

    @classmethod
    def of(cls, lats: list[int], seconds: float) -> Latency:
        lats = sorted(lats)
        return cls(
            count=len(lats),
            seconds=seconds,
            p50=_pct(lats, 0.50),
            p99=_pct(lats, 0.99),
            p999=_pct(lats, 0.999),
            worst=lats[-1] / 1000.0 if lats else float("nan"),
        )


HOST_OTHER_NOISY = 0.25  # part 4: more CPU than this on other work and the run is flagged
SLOWLOG_US = 1000  # Redis commands slower than this (µs of execution) are logged in part 4


def slowlog_start(redis_srv: Any) -> None:
    client = redis_srv.client()
    try:
        client.config_set("slowlog-log-slower-than", SLOWLOG_US)
        client.config_set("slowlog-max-len", 4096)
        client.slowlog_reset()
    finally:
        client.close()


SlowLog = dict[tuple[str, str], list[int]]


def slowlog_take(redis_srv: Any, into: SlowLog) -> None:
    """Move the SLOWLOG's entries into `into` (per command and key: execution µs), then reset
    it. Called between windows, so each window kind gets its own."""
    client = redis_srv.client()
    try:
        entries = client.slowlog_get(4096)
        client.slowlog_reset()
    finally:
        client.close()
    for entry in entries:
        command = entry.get("command", b"")
        if isinstance(command, bytes):
            command = command.decode(errors="replace")
        words = str(command).split(" ", 2)
        name = words[0].upper() or "?"
        if name == "SLOWLOG":
            continue
        # A script's text is its first argument (spaces and newlines in it): no key to show.
        key = "(script)" if name in ("EVAL", "EVALSHA") else words[1] if len(words) > 1 else ""
        into.setdefault((name, key), []).append(int(entry["duration"]))


def slowlog_rows(kind: str, log: SlowLog, seconds: float) -> list[list[object]]:
    """Per command and key: how many executions took >= SLOWLOG_US, their median, longest and
    sum (the key tells which write it was: the listing's two copies, the renamed hash...)."""
    rows: list[list[object]] = []
    for (name, key), durations in sorted(log.items(), key=lambda kv: -max(kv[1])):
        durations.sort()
        rows.append(
            [
                kind,
                name,
                key,
                len(durations),
                f"{durations[len(durations) // 2] / 1000:.1f}",
                f"{durations[-1] / 1000:.1f}",
                f"{sum(durations) / 1000 / seconds:.1f}",
            ]
        )
    return rows


# CPU accounting: clock ticks of user + system time, per process (or thread) and for the host.
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _ticks(stat_path: str) -> int:
    """utime + stime of a /proc/<pid>[/task/<tid>]/stat file (0 once it is gone)."""
    try:
        with open(stat_path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), after the name


def _host_busy_ticks() -> int:
    """Ticks every CPU of the host spent on anything but idle and iowait (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return 0
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return sum(values) - values[3] - values[4]


@dataclass
class CpuMeter:
    """CPU time of the parties of part 4, summed over the windows of each kind.

    ``daemon loop`` is the event loop's thread (redis-py packing, aiohttp, the fenced MULTI),
    ``daemon worker`` the refresh worker thread (inflate, decode, normalize), ``daemon other``
    the rest of this process (its other threads); ``host other`` is whatever else the host ran
    (other jobs on a shared machine, the kernel's softirq work), the host's busy time minus
    every party listed."""

    paths: dict[str, str]
    totals: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def read(self) -> dict[str, int]:
        got = {name: _ticks(path) for name, path in self.paths.items()}
        got["host"] = _host_busy_ticks()
        return got

    def add(self, kind: str, before: dict[str, int], after: dict[str, int], s: float) -> None:
        used = {name: (after[name] - before[name]) * _TICK_S for name in after}
        used["daemon other"] = (
            used.pop("daemon process") - used["daemon loop"] - used.get("daemon worker", 0.0)
        )
        used["host other"] = used.pop("host") - sum(used.values())
        into = self.totals.setdefault(kind, {})
        for name, value in used.items():
            into[name] = into.get(name, 0.0) + value
        self.seconds[kind] = self.seconds.get(kind, 0.0) + s

    def table(self, kinds: Sequence[str]) -> str:
        names = list(self.totals[kinds[0]])
        rows: list[list[object]] = []
        for name in names:
            rows.append(
                [name] + [f"{100 * self.totals[k][name] / self.seconds[k]:.0f}%" for k in kinds]
            )
        rows.append(
            ["host, all"]
            + [
                f"{100 * sum(self.totals[k].values()) / self.seconds[k]:.0f}%"
                f" of {100 * (os.cpu_count() or 1)}%"
                for k in kinds
            ]
        )
        return table(["CPU, % of one CPU (mean over windows)", *kinds], rows)


LOOP_TICK_S = 0.005  # part 4: the loop watch's tick (coarse, so it barely adds work)


@dataclass
class LoopWatch:
    """The daemon loop's longest stall: how late a ticker task in it woke, the worst per
    window (wall time: waiting for the GIL, held by the worker thread, counts, and so does
    waiting for a CPU). A niced worker preempted while it holds the GIL would show here."""

    worst: float = 0.0
    last: float = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.last = loop.time()
        while True:
            await asyncio.sleep(LOOP_TICK_S)
            now = loop.time()
            self.worst = max(self.worst, now - self.last - LOOP_TICK_S)
            self.last = now

    def take(self) -> float:
        """The worst stall since the last take; the next one counts from now (what ran
        between windows, e.g. the collection before an idle window, is in no window)."""
        worst, self.worst = self.worst, 0.0
        self.last = asyncio.get_running_loop().time()
        return worst


def _upstream_pid() -> int | None:
    """The fake Binance child (benchmarks.common.PayloadServer names it)."""
    for child in multiprocessing.active_children():
        if child.name == "bench-fake-binance":
            return child.pid
    return None


def _set_nice(tid: int, value: int) -> bool:
    """Set a thread's (or process's) nice value; False when not allowed (lowering it needs
    CAP_SYS_NICE or RLIMIT_NICE)."""
    try:
        os.setpriority(os.PRIO_PROCESS, tid, value)
    except OSError:
        return False
    return True


# The busy windows take turns between kinds, so each is measured in the same run against the
# same idle windows: steady cycles back to back with the worker thread at the process's own
# priority (as before the worker was niced) and as shipped (daemon.refresh.worker.NICE), and
# restarts (what every deploy or failover does: fresh refreshers, nothing in memory, over the
# stored snapshot whose content differs, so it is read whole and written whole).
BUSY_SAME = "refreshing, worker at nice {nice}"
BUSY_NICE = "refreshing, worker at nice {nice} (shipped)"
RESTART = "restarts, worker at nice {nice} (shipped)"


async def part_readers(
    env: Env, redis_srv: Any, inputs: Inputs, opts: Options, missed: Missed
) -> None:
    from daemon.refresh.worker import off_loop, thread_nice

    payloads = inputs.at(COPIES)
    rnd = env.round(redis_srv.url_db(DB_READERS), payloads)
    await rnd.run(0)  # the 10x snapshots the readers read
    stored: list[bytes] = await rnd.client.hkeys(rnd.refreshers[0].store.keys.by_symbol)  # type: ignore[assignment]
    names = random.Random(2023).sample(sorted(n.decode() for n in stored), READER_NAMES)

    # The worker thread's own nice value as shipped, and the process's (what "before" was).
    worker_tid = await off_loop(threading.get_native_id)
    shipped_nice = await off_loop(thread_nice)
    base_nice = os.getpriority(os.PRIO_PROCESS, 0)
    busy_same, busy_nice = BUSY_SAME.format(nice=base_nice), BUSY_NICE.format(nice=shipped_nice)
    restart = RESTART.format(nice=shipped_nice)
    # Lowering a nice value needs privilege; without it only the shipped kind is measured.
    compare = shipped_nice is not None and shipped_nice != base_nice
    if compare:
        compare = _set_nice(worker_tid, base_nice) and _set_nice(worker_tid, shipped_nice or 0)
    busy_kinds = [busy_same, busy_nice, restart] if compare else [busy_nice, restart]
    restart_session = env.session()
    retired: list[Any] = []

    async def restart_round(i: int) -> None:
        """Fresh refreshers (a restarted daemon: no held snapshot, no row memo) fetch the
        other variant; the steady windows then go on with them, as the new process would. The
        fence is the old one's (taking the lease anew is not what is measured)."""
        fresh = [env.refresher(p, rnd.client, restart_session) for p in payloads]
        for new, old, p in zip(fresh, rnd.refreshers, payloads, strict=True):
            new.store.fence = old.store.fence
            symbold_point_at(new, env.web_url, p.path_b if i % 2 else p.path_a)
        _check(await asyncio.gather(*(r.refresh_once() for r in fresh)), "restart round")
        retired.append(rnd.refreshers)  # freed between windows, not inside one
        rnd.refreshers = fresh

    # In production Binance is remote: its CPU is not on this host. The fake upstream serves
    # the bodies gzipped once in advance (prime()), and runs at --upstream-nice so what it
    # still spends (sending MBs over loopback) yields to the reader, as a remote server's would.
    upstream = _upstream_pid()
    upstream_nice = None
    if upstream is not None and _set_nice(upstream, opts.upstream_nice):
        upstream_nice = opts.upstream_nice

    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=_reader_child, args=(child, redis_srv.url_db(DB_READERS), names), name="bench-reader"
    )
    proc.start()
    child.close()
    assert proc.pid is not None
    paths = {
        "reader": f"/proc/{proc.pid}/stat",
        "redis-server": f"/proc/{redis_srv.proc.pid}/stat",
        "daemon loop": f"/proc/self/task/{threading.get_native_id()}/stat",
        "daemon worker": f"/proc/self/task/{worker_tid}/stat",
        "daemon process": "/proc/self/stat",
    }
    if upstream is not None:
        paths["fake upstream"] = f"/proc/{upstream}/stat"
    meter = CpuMeter(paths)
    phases: list[tuple[str, int, int]] = []
    cycle_ms: dict[str, list[float]] = {k: [] for k in busy_kinds}
    slow: dict[str, SlowLog] = {k: {} for k in ["idle", *busy_kinds]}
    watch = LoopWatch()
    stalls: dict[str, list[float]] = {k: [] for k in ["idle", *busy_kinds]}
    watching = asyncio.create_task(watch.run())
    try:
        ready = await loop.run_in_executor(None, parent.poll, 60)
        message = parent.recv() if ready else "no answer within 60 s"
        if message != "ready":
            raise RuntimeError(f"reader child failed: {message}")
        await asyncio.to_thread(slowlog_start, redis_srv)
        i = 1
        for w in range(opts.pairs * len(busy_kinds) + 1):
            retired.clear()
            gc.collect()  # the last window's garbage, off every window's clock
            before, started, _ = meter.read(), time.monotonic_ns(), watch.take()
            await asyncio.sleep(opts.idle_s)
            phases.append(("idle", started, time.monotonic_ns()))
            stalls["idle"].append(watch.take())
            meter.add("idle", before, meter.read(), (phases[-1][2] - started) / 1e9)
            await asyncio.to_thread(slowlog_take, redis_srv, slow["idle"])
            if w == opts.pairs * len(busy_kinds):
                break
            kind = busy_kinds[w % len(busy_kinds)]
            if compare:
                _set_nice(worker_tid, base_nice if kind == busy_same else shipped_nice or 0)
            before, started, _ = meter.read(), time.monotonic_ns(), watch.take()
            while time.monotonic_ns() - started < opts.busy_s * 1e9:
                t0 = time.perf_counter()
                await (restart_round(i) if kind == restart else rnd.run(i))
                cycle_ms[kind].append((time.perf_counter() - t0) * 1000.0)
                i += 1
            phases.append((kind, started, time.monotonic_ns()))
            stalls[kind].append(watch.take())
            meter.add(kind, before, meter.read(), (phases[-1][2] - started) / 1e9)
            await asyncio.to_thread(slowlog_take, redis_srv, slow[kind])
        parent.send("stop")
        starts_raw = await loop.run_in_executor(None, parent.recv_bytes)
        lats_raw = await loop.run_in_executor(None, parent.recv_bytes)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        if compare:
            _set_nice(worker_tid, shipped_nice or 0)
        parent.close()
        await loop.run_in_executor(None, proc.join, 30)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)

    starts, lats = array.array("q"), array.array("q")
    starts.frombytes(starts_raw)
    lats.frombytes(lats_raw)
    # Each lookup goes to the window it started in (none started outside one but the last few).
    per_window: list[list[int]] = [[] for _ in phases]
    w = 0
    for start, lat in zip(starts, lats, strict=True):
        while w < len(phases) and start >= phases[w][2]:
            w += 1
        if w == len(phases):
            break
        if start >= phases[w][1]:
            per_window[w].append(lat)
    kinds = ["idle", *busy_kinds]
    windowed = [(kind, got) for (kind, _, _), got in zip(phases, per_window, strict=True)]
    merged = {k: [x for kind, got in windowed if kind == k for x in got] for k in kinds}
    seconds = {k: sum((e - s) / 1e9 for kind, s, e in phases if kind == k) for k in kinds}
    stats = {k: Latency.of(merged[k], seconds[k]) for k in kinds}
    labels = {"idle": "idle (daemon sleeping)"}
    rows: list[list[object]] = []
    for k in kinds:
        st = stats[k]
        rows.append(
            [
                labels.get(k, k),
                f"{st.count:,}",
                f"{st.count / st.seconds:,.0f}",
                f"{st.p50:.1f}",
                f"{st.p99:.1f}",
                f"{st.p999:.1f}",
                f"{st.worst:,.0f}",
            ]
        )
    print(table([*LATENCY_HEADERS], rows))
    per = {k: [Latency.of(got, 0.0) for kind, got in windowed if kind == k] for k in kinds}
    for k in kinds:
        print(
            f"  {k}, windows one by one: p99 "
            + " / ".join(f"{x.p99:.0f}" for x in per[k])
            + " µs (p50 "
            + " / ".join(f"{x.p50:.0f}" for x in per[k])
            + ")"
        )
    # Each busy window against the mean p99 of the idle windows on either side of it: drift
    # in the host's load over the run then cancels out of the ratio.
    local: dict[str, list[float]] = {k: [] for k in busy_kinds}
    for w, (kind, _) in enumerate(windowed):
        if kind != "idle":
            neighbours = [Latency.of(windowed[j][1], 0.0).p99 for j in (w - 1, w + 1)]
            local[kind].append(Latency.of(windowed[w][1], 0.0).p99 / statistics.fmean(neighbours))
    for k in busy_kinds:
        ms = sorted(cycle_ms[k])
        what = (
            "first cycles of fresh refreshers over the stored snapshot, content changed"
            if k == restart
            else "steady cycles, one listed row changed per market per round"
        )
        print(
            f"  {k}: {len(ms)} back-to-back rounds of the {COPIES}x three-market payloads"
            f" ({what}), median round {ms[len(ms) // 2]:.0f} ms"
        )
    shown = "0 (renice failed)" if upstream_nice is None else str(upstream_nice)
    print(
        "  the reader is not pinned to a CPU (nor is anything else), as in a deployment; the"
        f" fake upstream runs at nice {shown} and serves bodies gzipped in advance"
    )
    for k in kinds:
        print(
            f"  {k}, loop's longest stall, windows one by one: "
            + " / ".join(f"{1000 * x:.0f}" for x in stalls[k])
            + " ms"
        )
    print(
        "  the daemon loop's longest stall per window (a "
        f"{LOOP_TICK_S * 1000:g} ms ticker's lateness, wall ms), median of windows / worst: "
        + "; ".join(
            f"{k} {1000 * statistics.median(stalls[k]):.1f} / {1000 * max(stalls[k]):.1f}"
            for k in kinds
        )
    )
    print()
    print(meter.table(kinds))
    # Other work on the host (other jobs, a shared VM's neighbours) preempts the reader and
    # redis-server in idle and busy windows alike, and then the ratios measure that noise.
    noisy = max(meter.totals[k]["host other"] / meter.seconds[k] for k in kinds)
    if noisy > HOST_OTHER_NOISY:
        print(
            f"  NOTE: the host ran other work at up to {100 * noisy:.0f}% of a CPU during the"
            " windows (host other): the ratios below carry that noise; compare runs on a quiet"
            " host"
        )
    print()
    target_kind = busy_nice
    ratio_rows: list[list[object]] = []
    for k in busy_kinds:
        busy, idle = stats[k], stats["idle"]
        p99_ratio = busy.p99 / idle.p99
        shipped = k == target_kind
        ratio_rows += [
            [f"{k} / idle", "median lookup", f"{busy.p50 / idle.p50:.2f}x", "reported", ""],
            [
                "",
                "p99 lookup",
                f"{p99_ratio:.2f}x",
                f"<= {P99_SAME:g}x" if shipped else "reported",
                ("met" if p99_ratio <= P99_SAME else "MISSED") if shipped else "",
            ],
            [
                "",
                "p99, each window / idle beside it",
                f"{statistics.median(local[k]):.2f}x median",
                "reported",
                f"{min(local[k]):.2f}..{max(local[k]):.2f}",
            ],
            ["", "p99.9 lookup", f"{busy.p999 / idle.p999:.2f}x", "reported", ""],
            ["", "longest lookup", f"{busy.worst / idle.worst:.2f}x", "reported", ""],
        ]
        if shipped:
            missed.check(
                p99_ratio <= P99_SAME,
                f"reader p99 while refreshing ({k}) {p99_ratio:.2f}x idle (target"
                f" <= {P99_SAME:g}x)",
            )
    print(table(["windows", "lookup", "ratio", "target", "verdict / range"], ratio_rows))
    if not compare:
        print(
            f"  (the worker at nice {base_nice} was not measured: lowering a thread's nice value"
            " needs CAP_SYS_NICE)"
        )
    print()
    slow_rows = [row for k in kinds for row in slowlog_rows(k, slow[k], seconds[k])]
    if slow_rows:
        print(
            f"Redis commands that ran >= {SLOWLOG_US / 1000:g} ms, per window kind (SLOWLOG:"
            " execution time only, a command inside MULTI counted alone; a reader's lookup"
            " queued behind one waits that long). A string's old value is freed when it is"
            " overwritten, in the command, whatever lazyfree says (Redis 7 frees strings"
            " inline); a hash's old value too, unless it is UNLINKed first:"
        )
        print(
            table(
                ["windows", "command", "key", "count", "median ms", "longest ms", "ms per s"],
                slow_rows,
            )
        )
    else:
        print(f"no Redis command ran >= {SLOWLOG_US / 1000:g} ms during the windows (SLOWLOG)")


# ---------------------------------------------------------------------------------------------
# main


@dataclass
class Options:
    runs: int
    warmup: int
    later: int
    idle_s: float
    busy_s: float
    pairs: int = DEFAULT_PAIRS
    upstream_nice: int = DEFAULT_UPSTREAM_NICE
    parts: tuple[int, ...] = PARTS


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks scale",
        description="10x the symbols and all three markets at once: time, RSS, reader latency.",
    )
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs per case")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed runs first")
    parser.add_argument(
        "--later-cycles", type=int, default=DEFAULT_LATER, help="cycles after the first (RSS)"
    )
    parser.add_argument("--idle", type=float, default=DEFAULT_IDLE_S, help="idle window, s")
    parser.add_argument("--busy", type=float, default=DEFAULT_BUSY_S, help="refresh window, s")
    parser.add_argument(
        "--pairs", type=int, default=DEFAULT_PAIRS, help="part 4: busy windows of each kind"
    )
    parser.add_argument(
        "--upstream-nice",
        type=int,
        default=DEFAULT_UPSTREAM_NICE,
        help="part 4: nice value of the fake upstream (0: compete with the reader as a peer)",
    )
    parser.add_argument(
        "--parts",
        default=",".join(map(str, PARTS)),
        help="which parts to run, e.g. 4 or 1,2 (default: all)",
    )
    # Options meant for other benchmarks (python -m benchmarks passes them to all) are ignored.
    args, _ = parser.parse_known_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.later_cycles < 1:
        parser.error("--runs and --later-cycles must be >= 1, --warmup >= 0")
    if args.idle <= 0 or args.busy <= 0:
        parser.error("--idle and --busy must be > 0")
    if args.pairs < 1 or not 0 <= args.upstream_nice <= 19:
        parser.error("--pairs must be >= 1, --upstream-nice 0..19")
    try:
        parts = tuple(sorted({int(p) for p in args.parts.split(",") if p.strip()}))
    except ValueError:
        parts = ()
    if not parts or not set(parts) <= set(PARTS):
        parser.error(f"--parts takes numbers among {PARTS}")
    return Options(
        args.runs,
        args.warmup,
        args.later_cycles,
        args.idle,
        args.busy,
        args.pairs,
        args.upstream_nice,
        parts,
    )


def prime(web_url: str, payloads: Sequence[Payload]) -> None:
    """Fetch every path once, so the fake server's gzip of each body is cached before any
    timing (it is the server's cost, but it would stretch a wall time)."""

    async def fetch_all() -> None:
        async with aiohttp.ClientSession() as session:
            for p in payloads:
                for path in (p.path_a, p.path_b):
                    async with session.get(web_url + path) as resp:
                        resp.raise_for_status()
                        await resp.read()

    run_async(fetch_all())


def flush_all(redis_srv: Any) -> None:
    client = redis_srv.client()
    try:
        client.flushall()
    finally:
        client.close()


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="symbold-bench-scale-") as name:
        yield Path(name)


def section(title: str) -> None:
    print()
    print(title)
    print()


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    for needed in (FIXTURES_DIR / SPOT_FIXTURE, FIXTURES_DIR / USDM_FIXTURE):
        if not needed.is_file():
            return skipped(f"recorded payload {needed} absent")
    if not MAKE_PAYLOAD.is_file():
        return skipped(f"{MAKE_PAYLOAD} absent")

    started = time.perf_counter()
    missed = Missed()
    with temp_dir() as tmp:
        inputs = prepare_inputs(tmp)
        every = list(inputs.payloads.values())
        served = {p.path_a: p.a for p in every} | {p.path_b: p.b for p in every}
        with (
            private_redis() as redis_srv,
            PayloadServer(served) as web,
            daemon_logging_to_devnull(),
        ):
            probe = redis_srv.client()
            try:
                version = probe.info("server").get("redis_version", "?")
            finally:
                probe.close()
            print(
                f"scale benchmark: Python {python_version()}, {loop_name()}, redis-server"
                f" {version} (private, 127.0.0.1:{redis_srv.port}), {os.cpu_count()} CPUs;"
                " fake Binance in a child process, gzip as Binance sends it"
            )
            print(
                f"{opts.runs} timed runs after {opts.warmup} warm-up, cases interleaved; CPU ="
                " this process's CPU time (the server and Redis are other processes)"
            )
            print()
            print(
                table(
                    ["payload (generated at run time)", "scale", "symbols", "TRADING", "bytes"],
                    [
                        [
                            f"{p.market} ({p.a.name})",
                            f"{p.scale}x",
                            f"{p.rows:,}",
                            f"{p.trading:,}",
                            f"{p.size:,}",
                        ]
                        for p in every
                    ],
                )
            )
            print(
                "  coinm: derived from usdm (quote USD, PERPETUAL, marginAsset = base,"
                " contractSize, contractStatus), one per base asset"
            )
            prime(web.url, every)
            run_async(run_parts(web.url, redis_srv, inputs, opts, missed))
            flush_all(redis_srv)

    print()
    if missed.items:
        print("targets missed: " + "; ".join(missed.items))
    else:
        print("targets: all met")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


async def run_parts(
    web_url: str, redis_srv: Any, inputs: Inputs, opts: Options, missed: Missed
) -> None:
    env = Env(web_url)
    try:
        if 1 in opts.parts:
            section(f"1. spot, 1x vs {COPIES}x symbols: one market's cycle")
            await part_cycles(
                env,
                redis_srv,
                inputs,
                opts,
                missed,
                markets=("spot",),
                dbs=(DB_SPOT_COLD, DB_SPOT_STEADY),
                title="spot cycle",
            )
            await env.aclose()
            await asyncio.to_thread(flush_all, redis_srv)

        if 2 in opts.parts:
            section(
                f"2. spot + usdm + coinm refreshed concurrently (one loop, one session, one Redis"
                f" client), 1x vs {COPIES}x"
            )
            await part_cycles(
                env,
                redis_srv,
                inputs,
                opts,
                missed,
                markets=MARKETS,
                dbs=(DB_ALL_COLD, DB_ALL_STEADY),
                title="3-market round",
            )
            await env.aclose()
            await asyncio.to_thread(flush_all, redis_srv)

        if 3 in opts.parts:
            section(
                f"3. peak RSS of a {COPIES}x three-market refresh, in a fresh child process"
                f" ({opts.later} later cycles, one row changed per market each)"
            )
            report = await asyncio.to_thread(
                run_rss_child, web_url, redis_srv.url_db(DB_RSS), inputs.at(COPIES), opts.later
            )
            part_rss(report, inputs.at(COPIES), missed)
            await asyncio.to_thread(flush_all, redis_srv)

        if 4 in opts.parts:
            section(
                f"4. reader lookups (another process) while the daemon side refreshes the"
                f" {COPIES}x payloads back to back ({opts.pairs} x {opts.busy_s:g} s refreshing"
                f" of each kind, each after {opts.idle_s:g} s idle, one more idle at the end)"
            )
            await part_readers(env, redis_srv, inputs, opts, missed)
    finally:
        await env.aclose()


if __name__ == "__main__":
    sys.exit(main())
