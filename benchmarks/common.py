"""Shared helpers for the benchmarks: where the inputs are, private servers, timing, tables.

- Inputs: the recorded payloads live outside the project (``../shared/fixtures/binance`` next
  to the checkout, or ``$SYMBOLD_BENCH_FIXTURES``); they are read in place, never copied into
  the project. A benchmark whose inputs are absent prints ``skipped: ... absent`` and exits 0.
- Servers: a private ``redis-server`` on a free loopback port (never the machine's 6379), and
  the fake Binance HTTP server in a *child process*, so the benchmark process's CPU time
  (``time.process_time``) counts the client side only.
- Timing: CPU time of this process and wall time per run; warm-up runs first, then the median
  of N runs.
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
