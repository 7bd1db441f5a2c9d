"""Handing freed heap memory back to the operating system after a refresh.

A refresh allocates the payload, its rows and the new records, then frees most of it; glibc
keeps the freed pages in the process unless asked to return them. :func:`trim_heap` asks
(``malloc_trim(0)``) on glibc and does nothing elsewhere (musl, macOS) or when the C library
cannot be loaded.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, loaded once; None where there is none."""
    try:
        # Only glibc has malloc_trim; os.confstr answers without loading anything.
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return None
    except (ValueError, OSError):
        return None
    try:
        import ctypes

        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def trim_heap() -> bool:
    """Return free heap pages to the OS; True if glibc's ``malloc_trim`` ran."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
