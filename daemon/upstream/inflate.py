"""Inflating a gzip or deflate body with a cap on the inflated size (pure, no I/O).

:func:`inflate` is what ``fetch`` runs in a worker thread: zlib releases the GIL while it
works, so the event loop keeps running while a 17 MB body is inflated.
"""

from __future__ import annotations

import io
from typing import Final, cast

from zlib_ng import zlib_ng as zlib

__all__ = ["WBITS", "inflate", "zlib_header"]

# zlib_ng's stub declares `error` as an exception instance; it is the exception class.
_ZlibError: Final = cast(type[Exception], zlib.error)

# Inflated bytes per decompress() call.
_STEP: Final = 1024 * 1024


# zlib window bits per Content-Encoding: 16 + 15 reads a gzip member; 32 + 15 reads a zlib
# stream (or gzip: some servers label a zlib stream "deflate", others send it raw, see below).
WBITS: Final = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 32 + 15}


def inflate(data: bytes, wbits: int, cap: int) -> bytes | str | None:
    """`data` inflated; None when the result would exceed `cap` bytes; a message (str) when
    the stream is corrupt or ends early. Memory stays about the inflated size (never more
    than `cap` plus one step), whatever `data` expands to. Runs in a worker thread."""
    if wbits == 32 + 15 and data and not zlib_header(data):
        wbits = -zlib.MAX_WBITS  # "deflate" sent as a raw deflate stream (no zlib header)
    # Written a step at a time into one growing buffer that getvalue() hands over without a
    # copy: a single decompress() call would hold the body twice (its blocks, then the join).
    out = io.BytesIO()
    size = 0
    rest = data
    try:
        # A gzip body may hold several members one after another; each is inflated in turn.
        while rest:
            inflater = zlib.decompressobj(wbits)
            pending = rest
            while not inflater.eof:
                part = inflater.decompress(pending, _STEP)
                if not part and inflater.unconsumed_tail == pending:
                    break  # no input left that zlib can use: the stream was cut short
                pending = inflater.unconsumed_tail
                size += len(part)
                if size > cap:
                    out.close()
                    return None
                out.write(part)
            if not inflater.eof:
                return "compressed stream ends early"
            rest = inflater.unused_data
    except _ZlibError as exc:
        return f"corrupt compressed stream ({exc})"
    return out.getvalue()


def zlib_header(data: bytes) -> bool:
    # RFC 1950: compression method 8, and the first two bytes read big-endian divide by 31.
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
