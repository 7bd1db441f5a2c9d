"""Shared helpers for the benchmarks: where the inputs are, private servers, timing, tables.

- Inputs: the recorded payloads live outside the project (``../shared/fixtures/binance`` next
  to the checkout, or ``$SYMBOLD_BENCH_FIXTURES``); they are read in place, never copied into
  the project. A benchmark whose inputs are absent prints ``skipped: ... absent`` and exits 0.
- Servers: a private ``redis-server`` on a free loopback port (never the machine's 6379), and
  the fake Binance HTTP server in a *child process*, so the benchmark process's CPU time
  (``time.process_time``) counts the client side only.
- Timing: CPU time of this process and wall time per run; warm-up runs first, then the median
  of N runs. The garbage collector stays on inside timed regions (as in a deployment); a full
  collection runs before each run, off the clock.
- Memory: VmRSS / VmHWM of a process, and a reset of VmHWM, for RSS measured in child processes.
- The daemon: every import of ``daemon`` internals the benchmarks need is in the last section
  of this module (``symbold_*`` helpers), so a refactor that moves modules is fixed here once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import logging
import multiprocessing
import multiprocessing.connection
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("SYMBOLD_BENCH_SHARED", PROJECT_ROOT.parent / "shared"))
FIXTURES_DIR = Path(os.environ.get("SYMBOLD_BENCH_FIXTURES", SHARED_DIR / "fixtures" / "binance"))
MAKE_PAYLOAD = Path(
    os.environ.get("SYMBOLD_BENCH_MAKE_PAYLOAD", SHARED_DIR / "tools" / "make_payload.py")
)

DEFAULT_RUNS = 15
DEFAULT_WARMUP = 3


# ---------------------------------------------------------------------------------------------
# command line


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs",
        type=int,
        default=DEFAULT_RUNS,
        help=f"timed runs per case; the median is reported (default {DEFAULT_RUNS})",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=DEFAULT_WARMUP,
        help=f"untimed runs before the timed ones (default {DEFAULT_WARMUP})",
    )


def skipped(reason: str) -> int:
    """Print the skip line every benchmark uses and return exit status 0."""
    print(f"skipped: {reason}", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# event loop


def loop_name() -> str:
    try:
        return f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        return "asyncio (uvloop not installed)"


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (every async part of every variant)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


# ---------------------------------------------------------------------------------------------
# timing


@dataclass(frozen=True, slots=True)
class Sample:
    """One run: CPU seconds of this process (all its threads) and wall seconds."""

    cpu: float
    wall: float


@dataclass(frozen=True, slots=True)
class Stats:
    """Medians (in milliseconds) over the timed runs."""

    cpu_ms: float
    wall_ms: float
    runs: int
    cpu_min_ms: float
    cpu_max_ms: float

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Stats:
        cpus = [s.cpu * 1000.0 for s in samples]
        return cls(
            cpu_ms=statistics.median(cpus),
            wall_ms=statistics.median(s.wall * 1000.0 for s in samples),
            runs=len(samples),
            cpu_min_ms=min(cpus),
            cpu_max_ms=max(cpus),
        )


class Clock:
    """Start/stop pair for CPU and wall time: ``c = Clock(); ...; sample = c.stop()``."""

    __slots__ = ("_cpu", "_wall")

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.perf_counter()

    def stop(self) -> Sample:
        wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu
        return Sample(cpu=cpu, wall=wall)


Case = Callable[[int], Awaitable[object]]
"""One benchmarked case: ``await case(i)`` does run number ``i`` (0, 1, 2... across warm-up
and timed runs, so a case can alternate its inputs)."""


async def measure(
    cases: Mapping[str, Case],
    *,
    runs: int,
    warmup: int,
    before: Mapping[str, Case] | None = None,
) -> dict[str, Stats]:
    """Time several cases round-robin: run 1 of each, then run 2 of each, and so on.

    Interleaving means slow drift (CPU frequency, a noisy neighbour) hits every case alike,
    which is what ratios need. ``warmup`` untimed rounds come first. ``before[name](i)``, when
    given, prepares run ``i`` of that case off the clock. A full GC before each run keeps one
    run's garbage from being collected on another's clock.
    """
    before = before or {}
    samples: dict[str, list[Sample]] = {name: [] for name in cases}
    for i in range(warmup + runs):
        for name, case in cases.items():
            prepare = before.get(name)
            if prepare is not None:
                await prepare(i)
            gc.collect()
            clock = Clock()
            await case(i)
            sample = clock.stop()
            if i >= warmup:
                samples[name].append(sample)
    return {name: Stats.of(found) for name, found in samples.items()}


# ---------------------------------------------------------------------------------------------
# output


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i]) for i in range(len(row))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


# ---------------------------------------------------------------------------------------------
# private servers


@contextlib.contextmanager
def private_redis() -> Iterator[Any]:
    """A private redis-server on a free loopback port (tests.support.redis_server)."""
    from tests.support.redis_server import RedisServer

    with RedisServer() as server:
        yield server


def _serve_payloads(
    conn: multiprocessing.connection.Connection, payloads: dict[str, str], gzip_mode: str
) -> None:
    """Child process: serve ``payloads`` (URL path -> file) with FakeBinance until told to stop."""
    from tests.support.fake_binance import FakeBinance

    bodies = {path: Path(file).read_bytes() for path, file in payloads.items()}

    async def serve() -> None:
        async with FakeBinance() as fake:
            fake.gzip = gzip_mode  # type: ignore[assignment]
            for path, body in bodies.items():
                fake.set_payload(path, body)
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            loop.add_reader(conn.fileno(), stop.set)
            conn.send(fake.port)
            await stop.wait()
            loop.remove_reader(conn.fileno())

    try:
        run_async(serve())
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(f"error: {type(exc).__name__}: {exc}")
        raise


class PayloadServer:
    """FakeBinance (tests.support.fake_binance) on loopback, in a child process.

    Keeping the server out of this process means its CPU (and its gzip, when on) is not on the
    benchmark's clock, and on two CPUs it runs beside the client as a remote server would.
    """

    def __init__(self, payloads: dict[str, Path], *, gzip_mode: str = "auto") -> None:
        self.payloads = {path: str(file) for path, file in payloads.items()}
        self.gzip_mode = gzip_mode
        self.port = 0
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: multiprocessing.connection.Connection | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PayloadServer:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_serve_payloads,
            args=(child, self.payloads, self.gzip_mode),
            name="bench-fake-binance",
            daemon=True,
        )
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        if not parent.poll(60):
            self.close()
            raise RuntimeError("fake Binance server did not start within 60 s")
        try:
            message: object = parent.recv()
        except EOFError:
            message = f"exited with code {proc.exitcode} before it was ready"
        if not isinstance(message, int):
            self.close()
            raise RuntimeError(f"fake Binance server failed: {message}")
        self.port = message
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send("stop")
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5)
            self._proc = None


# ---------------------------------------------------------------------------------------------
# logging


@contextlib.contextmanager
def daemon_logging_to_devnull() -> Iterator[None]:
    """Configure the daemon's logging as in production (info, JSON) but into /dev/null.

    The refresh path logs a line per cycle; its cost belongs to the measurement, its output
    does not belong on the report. Restored afterwards so a later benchmark prints normally.
    """
    import structlog

    from daemon import logs

    with open(os.devnull, "w") as sink:
        logs.configure_logging(level="info", fmt="json", stream=sink)
        try:
            yield
        finally:
            structlog.reset_defaults()
            root = logging.getLogger()
            for handler in [h for h in root.handlers if h.get_name() == "symbold"]:
                root.removeHandler(handler)


def python_version() -> str:
    return sys.version.split()[0]


def machine() -> str:
    """CPU model and count, for the header of a report."""
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model})"


# ---------------------------------------------------------------------------------------------
# payload inputs


def variant_of(payload: bytes) -> bytes:
    """The same payload with the first tickSize changed (same length, so nothing else moves):
    a payload and its variant differ in exactly one row."""
    import re

    match = re.search(rb'"tickSize":"([0-9.]+)"', payload)
    if match is None:
        raise RuntimeError("payload has no tickSize to vary")
    value = match.group(1)
    at = next(i for i, c in enumerate(value) if c in b"123456789")  # first non-zero digit
    digit = b"3" if value[at : at + 1] == b"2" else b"2"
    changed = value[:at] + digit + value[at + 1 :]
    return payload[: match.start(1)] + changed + payload[match.end(1) :]


def make_payload(src: Path, dst: Path, *args: str) -> None:
    """Run the shared ``make_payload.py`` (``--copies N``, ``--permission-groups G``)."""
    import subprocess

    subprocess.run(
        [sys.executable, str(MAKE_PAYLOAD), str(src), str(dst), *args],
        check=True,
        stdout=subprocess.DEVNULL,
    )


# ---------------------------------------------------------------------------------------------
# memory of a process (Linux)


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# event-loop stall probe


class Ticker:
    """A task that wakes every ``period`` seconds and records how late each wake-up was:
    the longest lateness is the longest stretch the event loop could not run a task.

    ``worst`` is that stretch in wall time; ``worst_cpu`` is the CPU time this thread spent
    in the longest-running stretch (between two wake-ups), which is what the code itself
    costs: on a shared machine the wall figure also holds the time the OS ran someone else.
    """

    def __init__(self, period: float = 0.001) -> None:
        self.period = period
        self.worst = 0.0
        self.worst_cpu = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        period, perf, cpu = self.period, time.perf_counter, time.thread_time
        while True:
            started, used = perf(), cpu()
            await asyncio.sleep(period)
            late = perf() - started - period
            used = cpu() - used
            if late > self.worst:
                self.worst = late
            if used > self.worst_cpu:
                self.worst_cpu = used

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stall-ticker")
        await asyncio.sleep(self.period * 3)  # let it settle into its rhythm
        self.worst = self.worst_cpu = 0.0

    async def stop(self) -> tuple[float, float]:
        """Stop; the worst lateness and the worst CPU stretch, in ms (a wake-up in flight is
        waited for)."""
        await asyncio.sleep(self.period * 3)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return self.worst * 1000.0, self.worst_cpu * 1000.0


# ---------------------------------------------------------------------------------------------
# the daemon: every import of its internals lives below (fix them here when modules move)


def symbold_settings() -> Any:
    """The daemon's default settings (``daemon.config.settings.Settings``)."""
    from daemon.config.settings import Settings

    return Settings()


def symbold_market(base_url: str, path: str, market: str = "spot") -> Any:
    """A market's default settings, enabled, fetching ``base_url + path``."""
    import msgspec

    settings = symbold_settings()
    return msgspec.structs.replace(
        settings.markets.get(market), enabled=True, base_urls=(base_url,), path=path
    )


def symbold_client(redis_url: str) -> Any:
    """The asyncio Redis client the service builds (bytes, blocking pool, retry)."""
    from daemon.config.redis_target import parse_redis_url
    from daemon.redis.clients import ConnectionConfig

    config = ConnectionConfig(
        url=parse_redis_url(redis_url, "benchmark"), settings=symbold_settings().redis
    )
    return config.make_async(decode=False)


def symbold_session(base_url: str, path: str) -> Any:
    """The aiohttp session the service builds (call inside the running loop)."""
    from daemon.refresh.cycle import source_config
    from daemon.upstream.fetch import make_session

    return make_session(source_config(symbold_market(base_url, path), symbold_settings().upstream))


def symbold_refresher(
    client: Any, session: Any, base_url: str, path: str, *, market: str = "spot"
) -> Any:
    """A new ``MarketRefresher`` (empty memory: nothing held, no row memo), default keys."""
    from daemon.refresh.cycle import MarketRefresher

    return MarketRefresher.for_market(
        symbold_settings(),
        market,  # type: ignore[arg-type]
        client=client,
        session=session,
        market=symbold_market(base_url, path, market),
    )


def symbold_point_at(refresher: Any, base_url: str, path: str) -> None:
    """Make ``refresher`` fetch ``base_url + path`` from its next cycle on."""
    from daemon.refresh.cycle import source_config

    refresher.source = source_config(
        symbold_market(base_url, path, refresher.name), symbold_settings().upstream
    )


async def symbold_lead(refresher: Any, client: Any, ttl: float = 3600.0) -> Any:
    """Take the market's lease and fence the refresher's writes with it, as the service does
    at start-up when leases are on (the default). A long ttl, so it never lapses mid-run; no
    renewal task runs (its cost is a tiny script every ttl/3, not part of a cycle)."""
    from daemon.snapshot.lease import Lease

    lease = Lease(client, refresher.store.keys.leader, ttl=ttl)
    if not await lease.try_acquire():
        raise RuntimeError(f"lease {lease.key} is held by {await lease.holder()}")
    refresher.store.fence = lease.fence
    return lease


def symbold_keys(market: str = "spot") -> Any:
    """The default key names of a market (``MarketKeys``: symbols, last_good, by_symbol,
    meta, refreshed_at, metrics, changes, events, leader, ban_until...)."""
    from daemon.contract.keys import keys_for

    return keys_for(symbold_settings(), market)  # type: ignore[arg-type]
