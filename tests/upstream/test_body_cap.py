"""The body cap: a reply over max_body_bytes is refused, plain or gzip, and a gzip bomb is
refused with bounded memory (in a fresh interpreter, against an uncapped control run).

Against the fake Binance on loopback, never Binance itself (fixtures: conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp
import pytest

from daemon.upstream.fetch import BodyTooLarge, fetch
from tests.support.fake_binance import SPOT, FakeBinance, Fault, small_exchange_info
from tests.upstream.sources import make_cfg

PROJECT_ROOT = Path(__file__).resolve().parents[2]


async def test_plain_body_over_cap_is_refused_before_reading(
    fake: FakeBinance, fake2: FakeBinance, session: aiohttp.ClientSession
) -> None:
    payload = small_exchange_info(tuple(f"S{i}USDT" for i in range(200)))
    fake.gzip = "never"
    fake.set_payload(SPOT, payload)
    with pytest.raises(BodyTooLarge) as info:
        await fetch(session, make_cfg(fake.url, fake2.url, max_body_bytes=len(payload) - 1))
    assert "declares" in str(info.value)
    assert not info.value.retryable
    assert fake2.requests[SPOT] == 0
    # Exactly at the cap is fine.
    result = await fetch(session, make_cfg(fake.url, max_body_bytes=len(payload)))
    assert result.body == payload


async def test_gzip_body_over_cap_is_counted_after_decompression(
    fake: FakeBinance, session: aiohttp.ClientSession
) -> None:
    payload = small_exchange_info(tuple(f"S{i}USDT" for i in range(200)))
    fake.gzip = "always"
    fake.set_payload(SPOT, payload)
    # The compressed body is far below the cap; the decompressed one is 1 byte over.
    with pytest.raises(BodyTooLarge, match="after decompression"):
        await fetch(session, make_cfg(fake.url, max_body_bytes=len(payload) - 1))
    result = await fetch(session, make_cfg(fake.url, max_body_bytes=len(payload)))
    assert result.body == payload


_BOMB_CHILD = """
import asyncio, json, resource, sys
from daemon.upstream.fetch import BodyTooLarge, SourceConfig, fetch, make_session
from tests.support.fake_binance import SPOT, FakeBinance, Fault, gzip_bomb_bytes

BOMB = int(sys.argv[1])
CAP = int(sys.argv[2])

def peak_kib():
    # VmHWM, reset before each run: ru_maxrss would start from the parent's peak, which
    # Linux carries over fork+exec, and hide the growth being measured.
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass

async def run(cap):
    async with FakeBinance() as fake:
        fake.set_mode(SPOT, Fault.gzip_bomb(BOMB))
        cfg = SourceConfig((fake.url,), SPOT, 10.0, 2.0, 5.0, max_body_bytes=cap)
        async with make_session(cfg) as session:
            reset_peak()
            before = peak_kib()
            try:
                result = await fetch(session, cfg)
                outcome, size = "ok", len(result.body)
                del result
            except BodyTooLarge:
                outcome, size = "BodyTooLarge", None
            return {"outcome": outcome, "size": size, "grew_kib": peak_kib() - before}

async def main():
    gzip_bomb_bytes(BOMB)  # build (and cache) the small compressed body before measuring
    capped = await run(CAP)
    control = await run(BOMB + 1)  # the same bomb with no effective cap
    print(json.dumps({"capped": capped, "control": control}))

asyncio.run(main())
"""


async def test_gzip_bomb_is_refused_with_bounded_memory() -> None:
    # A fresh interpreter, so its peak RSS starts low and only this scenario moves it; the
    # control run shows the same measurement does see a fully expanded bomb.
    bomb, cap = 200 * 1024 * 1024, 8 * 1024 * 1024
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _BOMB_CHILD,
        str(bomb),
        str(cap),
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    capped, control = report["capped"], report["control"]

    assert capped["outcome"] == "BodyTooLarge"
    assert capped["grew_kib"] * 1024 < 48 * 1024 * 1024, report  # cap 8 MiB, bomb 200 MiB
    assert control["outcome"] == "ok"
    assert control["size"] == bomb
    assert control["grew_kib"] * 1024 > 150 * 1024 * 1024, report


async def test_gzip_bomb_in_process_raises_body_too_large(
    fake: FakeBinance, fake2: FakeBinance, session: aiohttp.ClientSession
) -> None:
    fake.set_mode(SPOT, Fault.gzip_bomb(50 * 1024 * 1024))
    with pytest.raises(BodyTooLarge):
        await fetch(session, make_cfg(fake.url, fake2.url, max_body_bytes=1024 * 1024))
    assert fake2.requests[SPOT] == 0
