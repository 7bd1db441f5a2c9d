"""The ``meta:rows`` key: digests of the upstream rows a stored snapshot was derived from.

A daemon that starts while Redis still holds a snapshot fetches, most of the time, the very
payload that snapshot came from. With the digest of each upstream row (in upstream order)
stored next to the snapshot, it compares the rows it fetched with them and, when every row is
the same, trusts what Redis holds instead of decoding and encoding every row again.

The value is one binary string, written in the snapshot's own MULTI::

    b"SRD1"                      magic and layout version
    1 byte  n, then n bytes      the snapshot version (meta's ``version``) it describes
    16 bytes                     fingerprint of how records were derived (settings, code)
    1 byte  r (0 or 16), r bytes the digest of that payload's bytes from its first row to its
                                 end, when known (its header then says all the payload says)
    16 bytes per upstream row    XXH3-128 of the row's bytes, in upstream order (before
                                 derivation 2 of the fingerprint: sha256, truncated)

It is a promise, kept by the writer: deriving a payload whose rows have exactly these digests,
under the same fingerprint, gives exactly the snapshot of that version (no row held back, no
row dropped). A value whose version is not meta's (an older daemon wrote the snapshot since)
or whose fingerprint differs describes nothing and is ignored. Readers of records never need
it; a daemon that does not know it leaves it alone.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = ["DIGEST_BYTES", "RowDigests", "decode_row_digests", "encode_row_digests"]

_MAGIC: Final = b"SRD1"
DIGEST_BYTES: Final = 16
"""Bytes per row digest (and of the fingerprint)."""


class RowDigests(msgspec.Struct, frozen=True):
    """A decoded ``meta:rows`` value. ``digests`` is the rows' digests concatenated (16 bytes
    each, upstream order): compared as one bytes value, never split into objects. A Struct,
    not a dataclass: cheaper to define at import."""

    version: str
    fingerprint: bytes
    digests: bytes
    region: bytes = b""

    @property
    def rows(self) -> int:
        return len(self.digests) // DIGEST_BYTES


def encode_row_digests(
    version: str, fingerprint: bytes, digests: bytes, region: bytes = b""
) -> bytes:
    """The stored value (see the module doc). `digests` is the concatenated row digests."""
    name = version.encode()
    if (
        len(name) > 255
        or len(fingerprint) != DIGEST_BYTES
        or len(digests) % DIGEST_BYTES
        or len(region) not in (0, DIGEST_BYTES)
    ):
        raise ValueError("row digests: bad version, fingerprint, region or digest length")
    return b"".join(
        (_MAGIC, bytes((len(name),)), name, fingerprint, bytes((len(region),)), region, digests)
    )


def decode_row_digests(raw: bytes | None) -> RowDigests | None:
    """The value `raw` describes; None when absent or not in this layout (then nothing is
    trusted: the daemon derives every row, as without the key)."""
    if not raw or not raw.startswith(_MAGIC) or len(raw) < len(_MAGIC) + 1:
        return None
    at = len(_MAGIC)
    size = raw[at]
    at += 1
    name = raw[at : at + size]
    at += size
    fingerprint = raw[at : at + DIGEST_BYTES]
    at += DIGEST_BYTES
    region_size = raw[at] if at < len(raw) else -1
    at += 1
    region = raw[at : at + region_size] if region_size > 0 else b""
    at += max(region_size, 0)
    digests = raw[at:]
    if (
        len(name) != size
        or len(fingerprint) != DIGEST_BYTES
        or region_size not in (0, DIGEST_BYTES)
        or len(region) != region_size
        or len(digests) % DIGEST_BYTES
    ):
        return None
    try:
        version = name.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not version:
        return None
    return RowDigests(version=version, fingerprint=fingerprint, digests=digests, region=region)
