"""The one worker thread that runs every market's refresh CPU work off the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from daemon.allocator import fix_mmap_threshold

__all__ = ["off_loop"]

T = TypeVar("T")

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


async def off_loop(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in the refresh worker thread; the loop runs meanwhile."""
    global _cpu, _cpu_pid
    if _cpu is None or _cpu_pid != os.getpid():
        fix_mmap_threshold(_MMAP_THRESHOLD)
        _cpu = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="symbold-refresh")
        _cpu_pid = os.getpid()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_cpu, functools.partial(fn, *args, **kwargs))
