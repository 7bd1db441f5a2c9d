"""The one worker thread that runs every market's refresh CPU work off the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["off_loop"]

T = TypeVar("T")

# One worker thread for every market's CPU work, created on first use. One, not the default
# pool: glibc gives each thread that allocates its own malloc arena, and records built by a
# different pool thread each cycle left several payloads' worth of freed arenas in RSS.
# The pid it was made in: a forked child (a Celery prefork worker) has no such thread, so it
# makes its own instead of queueing work nobody would run.
_cpu: concurrent.futures.ThreadPoolExecutor | None = None
_cpu_pid = 0


# glibc's mallopt parameter number for the mmap threshold, and the value we fix it at.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1024 * 1024


def _fixed_mmap_threshold() -> None:
    """Keep glibc serving blocks of 1 MB and more from mmap, so a freed multi-MB body or
    listing goes back to the OS. By default glibc raises that threshold to the size of each
    such block freed (up to 32 MB), after which a 17 MB body comes from the heap and its hole
    stays in RSS (measured: about 0.6 payloads more kept after each later cycle). A no-op
    where the C library is not glibc."""
    try:
        # Only glibc has this mallopt parameter; os.confstr answers without loading anything
        # (ctypes.util.find_library would start an ldconfig process).
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    except (OSError, ValueError, AttributeError):
        pass


async def off_loop(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in the refresh worker thread; the loop runs meanwhile."""
    global _cpu, _cpu_pid
    if _cpu is None or _cpu_pid != os.getpid():
        _fixed_mmap_threshold()
        _cpu = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="symbold-refresh")
        _cpu_pid = os.getpid()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_cpu, functools.partial(fn, *args, **kwargs))
