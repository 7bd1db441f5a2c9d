"""``file:`` sources: a saved payload is read from disk, under the same cap as a reply, by its
size, and a missing file falls back to the next (HTTP) host.

Against the fake Binance on loopback, never Binance itself (fixtures: conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest

from daemon.upstream.fetch import (
    AllHostsFailed,
    BadBody,
    BodyTooLarge,
    FileSourceError,
    RateLimited,
    ServerError,
    TransportError,
    UnexpectedStatus,
    UpstreamError,
    UpstreamTimeout,
    fetch,
)
from tests.support.fake_binance import SPOT, FakeBinance, small_exchange_info
from tests.support.fixtures import FIXTURES
from tests.upstream.sources import make_cfg

SPOT_2023 = FIXTURES / "spot-exchangeinfo-2023-09.json"


async def test_file_url_reads_a_saved_payload(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    source = SPOT_2023 if SPOT_2023.exists() else None
    if source is None:
        saved = tmp_path / "saved payload.json"  # a space: the URL must be percent-decoded
        saved.write_bytes(small_exchange_info())
        source = saved
    result = await fetch(session, make_cfg(source.as_uri()))
    assert result.body == source.read_bytes()
    assert result.status == 200
    assert result.used_weight is None
    assert result.url.startswith("file:///")


async def test_file_url_with_space_in_path(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    saved = tmp_path / "saved payload.json"
    saved.write_bytes(b'{"symbols":[]}')
    result = await fetch(session, make_cfg(saved.as_uri()))
    assert result.body == b'{"symbols":[]}'


async def test_missing_file_falls_back_to_http(
    tmp_path: Path, fake: FakeBinance, session: aiohttp.ClientSession
) -> None:
    missing = (tmp_path / "nope.json").as_uri()
    result = await fetch(session, make_cfg(missing, fake.url))
    assert result.url == fake.url + SPOT
    (failure,) = result.attempts
    assert failure.kind == "file"
    assert "No such file" in failure.message
    with pytest.raises(AllHostsFailed) as info:
        await fetch(session, make_cfg(missing))
    assert not info.value.retryable


async def test_file_over_cap(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    saved = tmp_path / "big.json"
    saved.write_bytes(b" " * 1001)
    with pytest.raises(BodyTooLarge):
        await fetch(session, make_cfg(saved.as_uri(), max_body_bytes=1000))
    assert (await fetch(session, make_cfg(saved.as_uri(), max_body_bytes=1001))).body == (
        b" " * 1001
    )


def test_file_source_error_is_an_upstream_error() -> None:
    assert issubclass(FileSourceError, UpstreamError)
    assert issubclass(UpstreamTimeout, TransportError)
    for cls in (BadBody, ServerError, UnexpectedStatus, RateLimited, BodyTooLarge):
        assert issubclass(cls, UpstreamError)


def test_a_file_source_is_read_by_its_size_not_the_cap(tmp_path: Path) -> None:
    """Issue 16 item 8: reading a 4 MB file with a 64 MB cap must not allocate the cap. A
    child process limits its address space to what it uses plus 32 MB, then reads."""
    path = tmp_path / "payload.json"
    path.write_bytes(b"x" * (4 * 1024 * 1024))
    script = textwrap.dedent(
        f"""
        import resource
        from daemon.upstream.fetch import _read_file_capped
        vm = next(int(line.split()[1]) for line in open("/proc/self/status")
                  if line.startswith("VmSize:")) * 1024
        limit = vm + 32 * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        data = _read_file_capped({str(path)!r}, 64 * 1024 * 1024, "file")
        print(len(data))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(4 * 1024 * 1024)
