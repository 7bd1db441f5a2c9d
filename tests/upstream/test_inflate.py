"""daemon.upstream.inflate: gzip (one or more members), zlib and raw deflate inflated with a
cap on the inflated size; a cut or corrupt stream is named, never half-returned."""

from __future__ import annotations

import gzip
import zlib

import pytest

from daemon.upstream.inflate import WBITS, inflate

pytestmark = pytest.mark.timeout(30)


def _gzip_members(*parts: bytes) -> bytes:
    return b"".join(gzip.compress(part) for part in parts)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


GZ, DF = WBITS["gzip"], WBITS["deflate"]


@pytest.mark.parametrize(
    ("encoded", "wbits", "cap", "expected"),
    [
        pytest.param(gzip.compress(b"x" * 1000), GZ, 1000, b"x" * 1000, id="gzip"),
        pytest.param(_gzip_members(b"ab", b"cd"), GZ, 10, b"abcd", id="2-members"),
        pytest.param(zlib.compress(b"y" * 99), DF, 99, b"y" * 99, id="zlib"),
        pytest.param(_raw_deflate(b"z" * 50), DF, 50, b"z" * 50, id="raw-deflate"),
        pytest.param(gzip.compress(b"x" * 1001), GZ, 1000, None, id="over-cap"),
        pytest.param(_gzip_members(b"a" * 6, b"b" * 6), GZ, 11, None, id="members-over"),
        pytest.param(gzip.compress(b"x" * 5000)[:-30], GZ, 10**6, "ends early", id="cut"),
        pytest.param(b"\x1f\x8b not gzip at all", GZ, 10**6, "corrupt", id="corrupt"),
    ],
)
def test_inflate(encoded: bytes, wbits: int, cap: int, expected: bytes | str | None) -> None:
    got = inflate(encoded, wbits, cap)
    if isinstance(expected, str):
        assert isinstance(got, str)
        assert expected in got
    else:
        assert got == expected
