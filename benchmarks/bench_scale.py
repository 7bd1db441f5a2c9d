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
   near-cache) in a tight loop against the 10x spot snapshot while this process alternates idle
   windows with windows of back-to-back 10x three-market refresh cycles (content changing every
   cycle, so the write path runs). p50 and p99 per window kind (target: p99 while refreshing
   <= 1.5x idle), and Redis's SLOWLOG of the commands that held the server for >= 1 ms
   meanwhile (what a lookup can queue behind).

Targets are reported, never enforced; the exit status is non-zero only on an error.

``python -m benchmarks scale [--runs N] [--warmup N] [--later-cycles N] [--idle S] [--busy S]``
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
import subprocess
import sys
import tempfile
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
WINDOW_PAIRS = 3  # idle/busy window pairs in part 4 (then one more idle window)
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


SLOWLOG_US = 1000  # Redis commands slower than this (µs of execution) are logged in part 4


def slowlog_start(redis_srv: Any) -> None:
    client = redis_srv.client()
    try:
        client.config_set("slowlog-log-slower-than", SLOWLOG_US)
        client.config_set("slowlog-max-len", 4096)
        client.slowlog_reset()
    finally:
        client.close()


def slowlog_summary(redis_srv: Any) -> list[list[object]]:
    """Per command: how many executions took >= SLOWLOG_US, their median and longest."""
    client = redis_srv.client()
    try:
        entries = client.slowlog_get(4096)
    finally:
        client.close()
    by_command: dict[str, list[int]] = {}
    for entry in entries:
        command = entry.get("command", b"")
        if isinstance(command, bytes):
            command = command.decode(errors="replace")
        name = str(command).split(" ", 1)[0].upper() or "?"
        by_command.setdefault(name, []).append(int(entry["duration"]))
    rows: list[list[object]] = []
    for name, durations in sorted(by_command.items(), key=lambda kv: -max(kv[1])):
        durations.sort()
        rows.append(
            [
                name,
                len(durations),
                f"{durations[len(durations) // 2] / 1000:.1f}",
                f"{durations[-1] / 1000:.1f}",
            ]
        )
    return rows


async def part_readers(
    env: Env, redis_srv: Any, inputs: Inputs, opts: Options, missed: Missed
) -> None:
    payloads = inputs.at(COPIES)
    rnd = env.round(redis_srv.url_db(DB_READERS), payloads)
    await rnd.run(0)  # the 10x snapshots the readers read
    stored: list[bytes] = await rnd.client.hkeys(rnd.refreshers[0].store.keys.by_symbol)  # type: ignore[assignment]
    names = random.Random(2023).sample(sorted(n.decode() for n in stored), READER_NAMES)

    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=_reader_child, args=(child, redis_srv.url_db(DB_READERS), names), name="bench-reader"
    )
    proc.start()
    child.close()
    phases: list[tuple[str, int, int]] = []
    cycle_ms: list[float] = []
    try:
        ready = await loop.run_in_executor(None, parent.poll, 60)
        message = parent.recv() if ready else "no answer within 60 s"
        if message != "ready":
            raise RuntimeError(f"reader child failed: {message}")
        await asyncio.to_thread(slowlog_start, redis_srv)
        i = 1
        for pair in range(WINDOW_PAIRS + 1):
            started = time.monotonic_ns()
            await asyncio.sleep(opts.idle_s)
            phases.append(("idle", started, time.monotonic_ns()))
            if pair == WINDOW_PAIRS:
                break
            started = time.monotonic_ns()
            while time.monotonic_ns() - started < opts.busy_s * 1e9:
                t0 = time.perf_counter()
                await rnd.run(i)
                cycle_ms.append((time.perf_counter() - t0) * 1000.0)
                i += 1
            phases.append(("busy", started, time.monotonic_ns()))
        parent.send("stop")
        starts_raw = await loop.run_in_executor(None, parent.recv_bytes)
        lats_raw = await loop.run_in_executor(None, parent.recv_bytes)
    finally:
        parent.close()
        await loop.run_in_executor(None, proc.join, 30)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
    slow = await asyncio.to_thread(slowlog_summary, redis_srv)

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
    kinds = ("idle", "busy")
    windowed = [(kind, got) for (kind, _, _), got in zip(phases, per_window, strict=True)]
    merged = {k: [x for kind, got in windowed if kind == k for x in got] for k in kinds}
    seconds = {k: sum((e - s) / 1e9 for kind, s, e in phases if kind == k) for k in kinds}
    idle, busy = (
        Latency.of(merged["idle"], seconds["idle"]),
        Latency.of(merged["busy"], seconds["busy"]),
    )
    rows: list[list[object]] = []
    for label, st in (("idle (daemon sleeping)", idle), ("refreshing back to back", busy)):
        rows.append(
            [
                label,
                f"{st.count:,}",
                f"{st.count / st.seconds:,.0f}",
                f"{st.p50:.1f}",
                f"{st.p99:.1f}",
                f"{st.p999:.1f}",
                f"{st.worst:,.0f}",
            ]
        )
    print(table([*LATENCY_HEADERS], rows))
    for k in kinds:
        windows = [Latency.of(got, 0.0) for kind, got in windowed if kind == k]
        print(
            f"  {k} windows one by one: p50 "
            + " / ".join(f"{x.p50:.1f}" for x in windows)
            + " µs; p99 "
            + " / ".join(f"{x.p99:.1f}" for x in windows)
            + " µs"
        )
    cycle_ms.sort()
    print(
        f"  refreshing: {len(cycle_ms)} back-to-back rounds of the {COPIES}x three-market payloads"
        f" (one row changed per market per round), median round {cycle_ms[len(cycle_ms) // 2]:.0f}"
        " ms"
    )
    median_ratio, p99_ratio = busy.p50 / idle.p50, busy.p99 / idle.p99
    print()
    print(
        table(
            ["refreshing / idle", "ratio", "target", "verdict"],
            [
                ["median lookup", f"{median_ratio:.2f}x", "reported", ""],
                [
                    "p99 lookup",
                    f"{p99_ratio:.2f}x",
                    f"<= {P99_SAME:g}x",
                    "met" if p99_ratio <= P99_SAME else "MISSED",
                ],
                ["p99.9 lookup", f"{busy.p999 / idle.p999:.2f}x", "reported", ""],
                ["longest lookup", f"{busy.worst / idle.worst:.2f}x", "reported", ""],
            ],
        )
    )
    missed.check(
        p99_ratio <= P99_SAME,
        f"reader p99 while refreshing {p99_ratio:.2f}x idle (target <= {P99_SAME:g}x)",
    )
    print()
    if slow:
        print(
            f"Redis commands that ran >= {SLOWLOG_US / 1000:g} ms during the windows (SLOWLOG:"
            " execution time only; a reader's lookup queued behind one waits that long):"
        )
        print(table(["command", "count", "median ms", "longest ms"], slow))
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
    # Options meant for other benchmarks (python -m benchmarks passes them to all) are ignored.
    args, _ = parser.parse_known_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.later_cycles < 1:
        parser.error("--runs and --later-cycles must be >= 1, --warmup >= 0")
    if args.idle <= 0 or args.busy <= 0:
        parser.error("--idle and --busy must be > 0")
    return Options(args.runs, args.warmup, args.later_cycles, args.idle, args.busy)


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

        section(
            f"3. peak RSS of a {COPIES}x three-market refresh, in a fresh child process"
            f" ({opts.later} later cycles, one row changed per market each)"
        )
        report = await asyncio.to_thread(
            run_rss_child, web_url, redis_srv.url_db(DB_RSS), inputs.at(COPIES), opts.later
        )
        part_rss(report, inputs.at(COPIES), missed)
        await asyncio.to_thread(flush_all, redis_srv)

        section(
            f"4. reader lookups (another process) while the daemon side refreshes the {COPIES}x"
            f" payloads back to back ({WINDOW_PAIRS} x {opts.busy_s:g} s refreshing between"
            f" {WINDOW_PAIRS + 1} x {opts.idle_s:g} s idle)"
        )
        await part_readers(env, redis_srv, inputs, opts, missed)
    finally:
        await env.aclose()


if __name__ == "__main__":
    sys.exit(main())
