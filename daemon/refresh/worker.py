"""The one worker thread that runs every market's refresh CPU work off the event loop.

The thread runs at a lower CPU priority than the rest of the process (:data:`NICE`): on a
host where the bot's processes read the snapshot on their hot path, a refresh's decoding and
normalizing should wait for a free CPU rather than delay a reader's lookup (or Redis serving
it). The event loop keeps the process's own priority; it still waits for the GIL while the
worker holds it, and a busy host that preempts the worker then delays the loop (see NICE).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

from daemon.allocator import fix_mmap_threshold

__all__ = ["NICE", "off_loop", "thread_nice"]

T = TypeVar("T")

NICE: Final = 5
"""How much nicer (lower priority) than its process the worker thread runs (Linux; capped at
19). Nice 5 weighs about a third of a nice-0 task when both want one CPU, and takes all of an
idle one. Measured with ``python -m benchmarks scale`` part 4 (10x payloads of three markets
refreshed back to back on a 2-CPU host that other jobs kept busy; README, Performance): a
reader process's p99 lookup, each busy window against the idle ones beside it, rose a median
1.3-8.3x with the worker at nice 0, 1.2-1.3x at nice 5 and 0.6-1.4x at nice 10. Nice 10 was
not kept: a busy host preempts the worker while it holds the GIL (a msgspec call keeps it), so
the loop's longest wall stall in those runs was 105-150 ms at nice 10 against 55-90 ms at nice
0 and 5, and ``tests/refresh/test_loop_stall.py`` (a /healthz answer within 100 ms during a
17 MB cycle) failed in 3 of 15 runs at nice 10 on that host, in none of 8 at nice 5 or 6 at 0.
An increment needs no privilege (only a decrement does), so it also works under systemd's
``Nice=`` (the thread then runs at that plus this, at most 19)."""

# One worker thread for every market's CPU work, created on first use. One, not the default
# pool: glibc gives each thread that allocates its own malloc arena, and records built by a
# different pool thread each cycle left several payloads' worth of freed arenas in RSS.
# The pid it was made in: a forked child (a Celery prefork worker) has no such thread, so it
# makes its own instead of queueing work nobody would run.
_cpu: concurrent.futures.ThreadPoolExecutor | None = None
_cpu_pid = 0


# Blocks this large and larger come from mmap: a freed 17 MB body or listing then goes back to
# the OS instead of staying as a hole in the heap (measured: about 0.6 payloads more kept
# after each later cycle without it).
_MMAP_THRESHOLD = 1024 * 1024

_MAX_NICE = 19


def thread_nice() -> int | None:
    """The calling thread's own nice value (Linux); None where threads have none of their own."""
    if sys.platform != "linux":
        return None
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _lower_priority() -> None:
    """Worker thread initializer: raise this thread's nice value by :data:`NICE`.

    Linux only: there the nice value belongs to each thread, and PRIO_PROCESS with a thread
    id changes that thread alone. Elsewhere a thread id is no process id, so nothing is
    changed. A failure (a seccomp filter, a sandbox) leaves the thread as it was: priority is
    an optimization, the work still runs.
    """
    if sys.platform != "linux":
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(_MAX_NICE, current + NICE))
    except OSError:
        pass


async def off_loop(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in the refresh worker thread; the loop runs meanwhile."""
    global _cpu, _cpu_pid
    if _cpu is None or _cpu_pid != os.getpid():
        fix_mmap_threshold(_MMAP_THRESHOLD)
        _cpu = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="symbold-refresh", initializer=_lower_priority
        )
        _cpu_pid = os.getpid()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_cpu, functools.partial(fn, *args, **kwargs))
