"""Inflating a gzip or deflate body with a cap on the inflated size (pure, no I/O).

:func:`inflate` is what ``fetch`` runs in a worker thread: zlib releases the GIL while it
works, so the event loop keeps running while a 17 MB body is inflated.
"""

from __future__ import annotations

import zlib
from typing import Final

__all__ = ["WBITS", "inflate", "zlib_header"]


# zlib window bits per Content-Encoding: 16 + 15 reads a gzip member; 32 + 15 reads a zlib
# stream (or gzip: some servers label a zlib stream "deflate", others send it raw, see below).
WBITS: Final = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 32 + 15}


def inflate(data: bytes, wbits: int, cap: int) -> bytes | str | None:
    """`data` inflated; None when the result would exceed `cap` bytes; a message (str) when
    the stream is corrupt or ends early. Memory stays about `cap`, whatever `data` expands to:
    zlib stops at ``max_length``. Runs in a worker thread."""
    if wbits == 32 + 15 and data and not zlib_header(data):
        wbits = -zlib.MAX_WBITS  # "deflate" sent as a raw deflate stream (no zlib header)
    parts: list[bytes] = []
    size = 0
    rest = data
    try:
        # A gzip body may hold several members one after another; each is inflated in turn.
        while rest:
            inflater = zlib.decompressobj(wbits)
            part = inflater.decompress(rest, cap + 1 - size)
            size += len(part)
            if size > cap or inflater.unconsumed_tail:
                return None
            parts.append(part)
            if not inflater.eof:
                return "compressed stream ends early"
            rest = inflater.unused_data
    except zlib.error as exc:
        return f"corrupt compressed stream ({exc})"
    return parts[0] if len(parts) == 1 else b"".join(parts)


def zlib_header(data: bytes) -> bool:
    # RFC 1950: compression method 8, and the first two bytes read big-endian divide by 31.
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
