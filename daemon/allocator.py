"""glibc's allocator controls, for the daemon's long-lived process; no-ops elsewhere.

A refresh allocates the payload, its rows and the new records, then frees most of it; glibc
keeps freed pages in the process unless asked to return them (:func:`trim_heap`), and serves a
block from the heap rather than from mmap once its dynamic mmap threshold has grown past the
block's size (:func:`fix_mmap_threshold`). Both do nothing where the C library is not glibc
(musl, macOS) or cannot be loaded. Only the daemon calls these: they change the whole process.
"""

from __future__ import annotations

import functools
import os
from typing import Any

__all__ = ["fix_mmap_threshold", "trim_heap"]

# glibc's mallopt parameter number for the mmap threshold.
_M_MMAP_THRESHOLD = -3


@functools.cache
def _glibc() -> Any | None:
    """The loaded glibc (once); None where there is none."""
    try:
        # os.confstr answers without loading anything (ctypes.util.find_library would start
        # an ldconfig process).
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return None
    except (ValueError, OSError):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None)
    except OSError:
        return None


def trim_heap() -> bool:
    """Return free heap pages to the OS; True if glibc's ``malloc_trim(0)`` ran."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def fix_mmap_threshold(size: int) -> bool:
    """Serve blocks of `size` bytes and more from mmap for good, so that a freed multi-MB
    buffer goes back to the OS (glibc otherwise raises the threshold to the size of each such
    block freed, up to 32 MB, after which those blocks come from the heap and their holes stay
    in RSS). True if glibc took it."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, size))
