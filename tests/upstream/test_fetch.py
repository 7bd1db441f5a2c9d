"""Tests of daemon.upstream.fetch against a real aiohttp fake of Binance on loopback.

Nothing here talks to Binance. Waits are bounded by timeouts on the client side or by
``FakeBinance.wait_for_requests``; there is no sleep used to order events.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import json
import random
import socket
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from daemon.upstream.fetch import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_RETRY_AFTER,
    AllHostsFailed,
    BadBody,
    BodyTooLarge,
    FetchResult,
    FileSourceError,
    Forbidden,
    LegalRestriction,
    RateLimited,
    ServerError,
    SourceConfig,
    TransportError,
    UnexpectedStatus,
    UpstreamError,
    UpstreamTimeout,
    fetch,
    make_session,
    parse_retry_after,
    parse_used_weight,
    redact_url,
    retry_delay,
)
from daemon.upstream.inflate import WBITS, inflate
from tests.support.fake_binance import (
    SPOT,
    USDM,
    FakeBinance,
    Fault,
    small_exchange_info,
)
from tests.support.fixtures import FIXTURES

SPOT_2023 = FIXTURES / "spot-exchangeinfo-2023-09.json"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def make_cfg(*bases: str, **overrides: Any) -> SourceConfig:
    values: dict[str, Any] = {
        "base_urls": bases,
        "path": SPOT,
        "timeout_total": 4.0,
        "timeout_connect": 1.0,
        "timeout_read": 2.0,
        "user_agent": "symbold-test/1",
    }
    values.update(overrides)
    return SourceConfig(**values)


def closed_port_url() -> str:
    """A loopback URL nobody listens on (the port was free a moment ago): connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        yield server


@pytest.fixture
async def fake2() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(make_cfg("http://127.0.0.1:1")) as s:
        yield s


@pytest.fixture
async def raw() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client, for testing the fake itself; it does not decompress."""
    timeout = aiohttp.ClientTimeout(total=3, sock_read=1)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as s:
        yield s


# ============================================================================================
# the fake server itself


async def test_fake_serves_payload_counts_requests_and_records_them(
    fake: FakeBinance, raw: aiohttp.ClientSession
) -> None:
    fake.set_payload(USDM, b'{"symbols":[]}')
    fake.gzip = "never"
    fake.used_weight = 77
    async with raw.get(
        fake.url + USDM, params={"symbolStatus": "TRADING"}, headers={"X-Probe": "yes"}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "77"
        assert resp.content_type == "application/json"
        assert await resp.read() == b'{"symbols":[]}'
    async with raw.get(fake.url + SPOT) as resp:  # no payload set: the small built one
        assert json.loads(await resp.read())["symbols"][0]["symbol"] == "BTCUSDT"
    async with raw.get(fake.url + "/api/v3/ping") as resp:
        assert resp.status == 404
        assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "77"

    assert fake.requests[USDM] == 1
    assert fake.requests[SPOT] == 1
    assert fake.requests["/api/v3/ping"] == 1
    seen = fake.last_request[USDM]
    assert seen.method == "GET"
    assert seen.query["symbolStatus"] == "TRADING"
    assert seen.headers["x-probe"] == "yes"

    fake.used_weight = None
    async with raw.get(fake.url + USDM) as resp:
        assert "X-MBX-USED-WEIGHT-1M" not in resp.headers


async def test_fake_gzip_modes(fake: FakeBinance, raw: aiohttp.ClientSession) -> None:
    payload = small_exchange_info(("BTCUSDT", "ETHUSDT", "BNBBTC"))
    fake.set_payload(SPOT, payload)

    async def get(accept: str) -> tuple[str | None, bytes]:
        async with raw.get(fake.url + SPOT, headers={"Accept-Encoding": accept}) as resp:
            return resp.headers.get("Content-Encoding"), await resp.read()

    encoding, body = await get("gzip, deflate")
    assert encoding == "gzip"
    assert gzip.decompress(body) == payload
    assert await get("identity") == (None, payload)

    fake.gzip = "always"
    encoding, body = await get("identity")
    assert encoding == "gzip"
    assert gzip.decompress(body) == payload

    fake.gzip = "never"
    assert await get("gzip") == (None, payload)


async def test_fake_fault_queue_runs_out_then_sticky_mode_applies(
    fake: FakeBinance, raw: aiohttp.ClientSession
) -> None:
    async def status() -> int:
        async with raw.get(fake.url + SPOT) as resp:
            await resp.read()
            return resp.status

    fake.fail(SPOT, Fault.status(500), Fault.status(503))
    assert [await status() for _ in range(3)] == [500, 503, 200]

    fake.set_mode(SPOT, Fault.html_502())
    fake.fail(SPOT, Fault.forbidden())  # the queue goes before the sticky mode
    assert [await status() for _ in range(3)] == [403, 502, 502]
    fake.set_mode(SPOT, None)
    assert await status() == 200
    # Faults are per path: the other path was never affected.
    async with raw.get(fake.url + USDM) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("fault", "status", "retry_after", "content_type", "needle"),
    [
        (Fault.status(500), 500, None, "application/json", b"-1000"),
        (Fault.html_502(), 502, None, "text/html", b"502 Bad Gateway"),
        (Fault.rate_limited(7), 429, "7", "application/json", b"-1003"),
        (Fault.rate_limited(), 429, None, "application/json", b"-1003"),
        (Fault.banned(30), 418, "30", "application/json", b"IP banned until"),
        (Fault.banned(), 418, None, "application/json", b"IP banned until"),
        (Fault.forbidden(), 403, None, "text/html", b"403 ERROR"),
        (Fault.unavailable_for_legal(), 451, None, "application/json", b"restricted location"),
        (Fault.custom(b"hi", 404, {"content-type": "text/plain"}), 404, None, "text/plain", b"hi"),
    ],
)
async def test_fake_status_faults(
    fake: FakeBinance,
    raw: aiohttp.ClientSession,
    fault: Fault,
    status: int,
    retry_after: str | None,
    content_type: str,
    needle: bytes,
) -> None:
    fake.fail(SPOT, fault)
    async with raw.get(fake.url + SPOT) as resp:
        body = await resp.read()
        assert resp.status == status
        assert resp.headers.get("Retry-After") == retry_after
        assert resp.content_type == content_type
        assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "20"
    assert needle in body


async def test_fake_banned_body_names_the_ban_deadline(
    fake: FakeBinance, raw: aiohttp.ClientSession
) -> None:
    fake.fail(SPOT, Fault.banned(300))
    async with raw.get(fake.url + SPOT) as resp:
        msg = json.loads(await resp.read())["msg"]
    until_ms = int(msg.split("banned until ")[1].split(".")[0])
    assert abs(until_ms / 1000 - (time.time() + 300)) < 5


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        (Fault.invalid_json(), "invalid"),
        (Fault.wrong_shape("list"), "list"),
        (Fault.wrong_shape("no_symbols"), "no_symbols"),
        (Fault.wrong_shape("symbols_not_list"), "symbols_not_list"),
        (Fault.empty_symbols(), "empty"),
    ],
)
async def test_fake_body_faults(
    fake: FakeBinance, raw: aiohttp.ClientSession, fault: Fault, check: str
) -> None:
    fake.fail(SPOT, fault)
    async with raw.get(fake.url + SPOT) as resp:
        assert resp.status == 200
        body = await resp.read()
    if check == "invalid":
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
        return
    doc = json.loads(body)
    if check == "list":
        assert isinstance(doc, list)
    elif check == "no_symbols":
        assert isinstance(doc, dict)
        assert "symbols" not in doc
    elif check == "symbols_not_list":
        assert not isinstance(doc["symbols"], list)
    else:
        assert doc["symbols"] == []
        assert "rateLimits" in doc


async def test_fake_reset_before_response_sends_nothing(fake: FakeBinance) -> None:
    fake.fail(SPOT, Fault.reset())
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    try:
        writer.write(f"GET {SPOT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(2):
            try:
                data = await reader.read()
            except ConnectionResetError:
                data = b""
        assert data == b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert fake.requests[SPOT] == 1


async def test_fake_reset_is_seen_by_aiohttp_after_its_one_silent_retry(
    fake: FakeBinance, raw: aiohttp.ClientSession
) -> None:
    # aiohttp retries an idempotent request once when the connection drops before a response.
    fake.fail(SPOT, Fault.reset(), Fault.reset())
    with pytest.raises((aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)):
        async with raw.get(fake.url + SPOT) as resp:
            await resp.read()
    assert fake.requests[SPOT] == 2


async def test_fake_reset_mid_body(fake: FakeBinance, raw: aiohttp.ClientSession) -> None:
    fake.gzip = "never"
    fake.fail(SPOT, Fault.reset(mid_body=True))
    with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
        async with raw.get(fake.url + SPOT) as resp:
            await resp.read()


async def test_fake_truncated(fake: FakeBinance, raw: aiohttp.ClientSession) -> None:
    payload = small_exchange_info()
    fake.gzip = "never"
    fake.fail(SPOT, Fault.truncated())
    async with raw.get(fake.url + SPOT) as resp:
        assert resp.content_length == len(payload)
        with pytest.raises(aiohttp.ClientPayloadError, match="not completed"):
            await resp.read()


async def test_fake_corrupt_gzip(fake: FakeBinance) -> None:
    fake.fail(SPOT, Fault.corrupt_gzip())
    async with aiohttp.ClientSession() as client, client.get(fake.url + SPOT) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        with pytest.raises(aiohttp.ClientPayloadError, match="content-encoding"):
            await resp.read()


async def test_fake_gzip_bomb_is_small_on_the_wire_and_expands(
    fake: FakeBinance, raw: aiohttp.ClientSession
) -> None:
    n_bytes = 20 * 1024 * 1024
    fake.fail(SPOT, Fault.gzip_bomb(n_bytes))
    async with raw.get(fake.url + SPOT) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        wire = await resp.read()
    assert len(wire) < n_bytes // 500
    # Expand it in bounded steps, as a careful client would.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    total, data = 0, wire
    while data:
        out = inflater.decompress(data, 1 << 20)
        total += len(out)
        assert out.count(0) == len(out)
        data = inflater.unconsumed_tail
    assert total == n_bytes
    assert inflater.eof


async def test_fake_slow_delays_headers_then_replies_normally(
    fake: FakeBinance, raw: aiohttp.ClientSession
) -> None:
    fake.gzip = "never"
    fake.fail(SPOT, Fault.slow(0.3))
    started = time.perf_counter()
    async with raw.get(fake.url + SPOT) as resp:
        assert await resp.read() == small_exchange_info()
    assert time.perf_counter() - started >= 0.29


async def test_fake_wait_for_requests_and_close_release_a_hung_request(
    raw: aiohttp.ClientSession,
) -> None:
    async with FakeBinance() as server:
        server.set_mode(SPOT, Fault.slow(30))
        client = asyncio.create_task(raw.get(server.url + SPOT, timeout=aiohttp.ClientTimeout(10)))
        async with asyncio.timeout(2):
            await server.wait_for_requests(SPOT, 1)
        started = time.perf_counter()
    # Closing did not wait for the 30 s fault, and the client saw the connection drop.
    assert time.perf_counter() - started < 2
    with pytest.raises(aiohttp.ClientError):
        async with asyncio.timeout(5):
            await client


async def test_fake_stall_body_sends_part_then_hangs(
    fake: FakeBinance, raw: aiohttp.ClientSession
) -> None:
    payload = small_exchange_info()
    fake.gzip = "never"
    fake.set_mode(SPOT, Fault.stall_body())
    async with raw.get(fake.url + SPOT) as resp:
        assert resp.status == 200
        assert resp.content_length == len(payload)
        first = await resp.content.readexactly(len(payload) // 2)
        assert first == payload[: len(payload) // 2]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await resp.content.read(1)


# ============================================================================================
# fetch: success


async def test_fetch_happy_path_with_recorded_2023_payload(
    fake: FakeBinance, session: aiohttp.ClientSession
) -> None:
    if not SPOT_2023.exists():
        pytest.skip(f"recorded fixture {SPOT_2023} is absent")
    payload = SPOT_2023.read_bytes()
    fake.set_payload(SPOT, payload)
    cfg = make_cfg(fake.url, query=(("showPermissionSets", "false"),))

    result = await fetch(session, cfg)

    assert result.body == payload
    assert result.status == 200
    assert result.url == f"{fake.url}{SPOT}?showPermissionSets=false"
    assert result.used_weight == 20
    assert result.attempts == ()
    assert result.elapsed_ms > 0
    seen = fake.last_request[SPOT]
    assert seen.headers["User-Agent"] == "symbold-test/1"
    assert seen.headers["Accept-Encoding"] == "gzip, deflate"
    assert seen.query["showPermissionSets"] == "false"
    assert "body" not in repr(result)  # a 3.7 MB body never lands in a log line


async def test_fetch_happy_path_with_built_payload(
    fake: FakeBinance, session: aiohttp.ClientSession
) -> None:
    payload = small_exchange_info(("BTCUSDT", "币安人生USDT"))
    fake.set_payload(SPOT, payload)
    result = await fetch(session, make_cfg(fake.url + "/"))  # a trailing slash is fine
    assert result.body == payload
    assert result.url == fake.url + SPOT


@pytest.mark.parametrize("mode", ["always", "never"])
async def test_fetch_gzip_and_plain(
    fake: FakeBinance, session: aiohttp.ClientSession, mode: str
) -> None:
    payload = small_exchange_info(tuple(f"S{i}USDT" for i in range(500)))
    fake.set_payload(SPOT, payload)
    fake.gzip = mode  # type: ignore[assignment]
    result = await fetch(session, make_cfg(fake.url))
    assert result.body == payload


async def test_fetch_used_weight_parsed_or_none(
    fake: FakeBinance, session: aiohttp.ClientSession
) -> None:
    fake.used_weight = 5987
    assert (await fetch(session, make_cfg(fake.url))).used_weight == 5987
    fake.used_weight = None
    assert (await fetch(session, make_cfg(fake.url))).used_weight is None


@pytest.mark.parametrize("auto_decompress", [True, False])
async def test_fetch_inflates_itself_whatever_the_session_says(
    fake: FakeBinance, auto_decompress: bool
) -> None:
    # fetch asks aiohttp per request for the bytes as sent and inflates them itself (off the
    # loop), so a session built with aiohttp's default (auto_decompress=True) works as well.
    payload = small_exchange_info(tuple(f"S{i}USDT" for i in range(300)))
    fake.set_payload(SPOT, payload)
    fake.gzip = "always"
    async with aiohttp.ClientSession(auto_decompress=auto_decompress) as any_session:
        assert (await fetch(any_session, make_cfg(fake.url))).body == payload


async def test_fetch_result_and_errors_carry_the_response_headers(
    fake: FakeBinance, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    fake.used_weight = 41
    result = await fetch(session, make_cfg(fake.url))
    assert result.headers is not None
    names = {name.lower(): value for name, value in result.headers}
    assert names["x-mbx-used-weight-1m"] == "41"
    assert "headers" not in repr(result)  # a header may carry a cookie: never in a repr

    fake.set_mode(SPOT, Fault.rate_limited(7))
    with pytest.raises(RateLimited) as info:
        await fetch(session, make_cfg(fake.url))
    assert info.value.headers is not None
    assert ("Retry-After", "7") in info.value.headers

    saved = tmp_path / "payload.json"
    saved.write_bytes(small_exchange_info())
    assert (await fetch(session, make_cfg(saved.as_uri()))).headers is None
    missing = tmp_path / "absent.json"
    with pytest.raises(AllHostsFailed) as failed:
        await fetch(session, make_cfg(missing.as_uri()))
    assert failed.value.headers is None


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


# ============================================================================================
# fetch: falling back to the next host


FALLBACK_CASES = [
    pytest.param(Fault.status(500), {}, {"server_error"}, id="500"),
    pytest.param(Fault.html_502(), {}, {"server_error"}, id="502-html"),
    pytest.param(Fault.reset(), {}, {"connection"}, id="reset"),
    pytest.param(Fault.reset(mid_body=True), {}, {"truncated", "connection"}, id="reset-mid-body"),
    pytest.param(Fault.truncated(), {}, {"truncated"}, id="truncated"),
    pytest.param(Fault.corrupt_gzip(), {}, {"bad_encoding"}, id="corrupt-gzip"),
    pytest.param(Fault.slow(30), {"timeout_read": 0.3}, {"timeout"}, id="slow-headers"),
    pytest.param(Fault.stall_body(), {"timeout_read": 0.3}, {"timeout"}, id="stalled-body"),
    pytest.param(
        Fault.stall_body(), {"timeout_read": 3.0, "timeout_total": 0.4}, {"timeout"}, id="total"
    ),
    pytest.param(Fault.custom(b"nope", status=404), {}, {"http_status"}, id="404"),
]


@pytest.mark.parametrize(("fault", "overrides", "kinds"), FALLBACK_CASES)
async def test_fetch_falls_back_to_second_host(
    fake: FakeBinance,
    fake2: FakeBinance,
    session: aiohttp.ClientSession,
    fault: Fault,
    overrides: dict[str, float],
    kinds: set[str],
) -> None:
    fake.gzip = "never"  # so "truncated" and "reset mid body" cut plain JSON
    fake.set_mode(SPOT, fault)
    payload = small_exchange_info(("ETHUSDT",))
    fake2.set_payload(SPOT, payload)

    started = time.perf_counter()
    result = await fetch(session, make_cfg(fake.url, fake2.url, **overrides))

    assert time.perf_counter() - started < 3
    assert result.body == payload
    assert result.url == fake2.url + SPOT
    assert fake.requests[SPOT] >= 1
    assert fake2.requests[SPOT] == 1
    (failure,) = result.attempts
    assert failure.kind in kinds
    assert failure.url == fake.url + SPOT
    assert failure.elapsed_ms > 0
    if failure.kind == "server_error":
        assert failure.status == fault.code
        assert failure.retryable


async def test_fetch_falls_back_past_a_refused_connection(
    fake: FakeBinance, session: aiohttp.ClientSession
) -> None:
    dead = closed_port_url()
    result = await fetch(session, make_cfg(dead, fake.url))
    assert result.url == fake.url + SPOT
    assert [f.kind for f in result.attempts] == ["connection"]
    assert result.attempts[0].url == dead + SPOT


async def test_all_hosts_failed_lists_each_hosts_reason(
    fake: FakeBinance, fake2: FakeBinance, session: aiohttp.ClientSession
) -> None:
    dead = closed_port_url()
    fake.set_mode(SPOT, Fault.status(503))
    fake2.set_mode(SPOT, Fault.truncated())
    fake2.gzip = "never"

    with pytest.raises(AllHostsFailed) as info:
        await fetch(session, make_cfg(fake.url, dead, fake2.url))

    err = info.value
    assert [(f.url, f.kind) for f in err.failures] == [
        (fake.url + SPOT, "server_error"),
        (dead + SPOT, "connection"),
        (fake2.url + SPOT, "truncated"),
    ]
    assert err.failures[0].status == 503
    assert err.retryable
    assert err.kind == "all_hosts_failed"
    for failure in err.failures:
        assert failure.url in str(err)
    assert "HTTP 503" in str(err)
    assert isinstance(err, UpstreamError)


async def test_all_hosts_failed_is_permanent_when_every_reason_is(
    fake: FakeBinance, session: aiohttp.ClientSession
) -> None:
    fake.set_mode(SPOT, Fault.custom(b"Not Found", status=404))
    with pytest.raises(AllHostsFailed) as info:
        await fetch(session, make_cfg(fake.url, fake.url))
    assert [f.kind for f in info.value.failures] == ["http_status", "http_status"]
    assert not info.value.retryable


# ============================================================================================
# fetch: stop at once


@pytest.mark.parametrize(
    ("fault", "retry_after", "kind"),
    [
        pytest.param(Fault.rate_limited(7), 7.0, "rate_limited", id="429-retry-after"),
        pytest.param(Fault.rate_limited(), None, "rate_limited", id="429-bare"),
        pytest.param(Fault.banned(600), 600.0, "banned", id="418-retry-after"),
    ],
)
async def test_rate_limit_raises_and_does_not_try_next_host(
    fake: FakeBinance,
    fake2: FakeBinance,
    session: aiohttp.ClientSession,
    fault: Fault,
    retry_after: float | None,
    kind: str,
) -> None:
    fake.used_weight = 6020
    fake.set_mode(SPOT, fault)
    with pytest.raises(RateLimited) as info:
        await fetch(session, make_cfg(fake.url, fake2.url))
    err = info.value
    assert err.retry_after == retry_after
    assert err.status == fault.code
    assert err.kind == kind
    assert err.used_weight == 6020
    assert err.retryable
    assert err.url == fake.url + SPOT
    assert "6020" in str(err)
    assert fake2.requests[SPOT] == 0


async def test_ban_without_retry_after_uses_the_deadline_in_the_body(
    fake: FakeBinance, fake2: FakeBinance, session: aiohttp.ClientSession
) -> None:
    fake.set_mode(SPOT, Fault.banned(None))  # body: "banned until <now + 120 s>"
    with pytest.raises(RateLimited) as info:
        await fetch(session, make_cfg(fake.url, fake2.url))
    assert info.value.retry_after is not None
    assert 110 < info.value.retry_after <= 120
    assert fake2.requests[SPOT] == 0


async def test_rate_limit_with_http_date_retry_after(
    fake: FakeBinance, session: aiohttp.ClientSession
) -> None:
    when = email.utils.formatdate(time.time() + 90, usegmt=True)
    fake.set_mode(SPOT, Fault.rate_limited(when))
    with pytest.raises(RateLimited) as info:
        await fetch(session, make_cfg(fake.url))
    assert info.value.retry_after is not None
    assert 85 <= info.value.retry_after <= 90


async def test_rate_limit_after_a_failed_host_keeps_the_earlier_attempts(
    fake: FakeBinance, fake2: FakeBinance, session: aiohttp.ClientSession
) -> None:
    fake.set_mode(SPOT, Fault.status(500))
    fake2.set_mode(SPOT, Fault.rate_limited(3))
    third = closed_port_url()
    with pytest.raises(RateLimited) as info:
        await fetch(session, make_cfg(fake.url, fake2.url, third))
    assert [f.kind for f in info.value.attempts] == ["server_error"]


@pytest.mark.parametrize(
    ("fault", "exc_type", "kind"),
    [
        (Fault.forbidden(), Forbidden, "forbidden"),
        (Fault.unavailable_for_legal(), LegalRestriction, "legal_restriction"),
    ],
)
async def test_403_and_451_are_permanent_and_stop(
    fake: FakeBinance,
    fake2: FakeBinance,
    session: aiohttp.ClientSession,
    fault: Fault,
    exc_type: type[UpstreamError],
    kind: str,
) -> None:
    fake.set_mode(SPOT, fault)
    with pytest.raises(exc_type) as info:
        await fetch(session, make_cfg(fake.url, fake2.url))
    assert not info.value.retryable
    assert info.value.kind == kind
    assert info.value.status == fault.code
    assert fake2.requests[SPOT] == 0


# ============================================================================================
# body cap and gzip bomb


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


# ============================================================================================
# file: URLs


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


# ============================================================================================
# cancellation and credentials


async def test_cancellation_propagates(fake: FakeBinance, session: aiohttp.ClientSession) -> None:
    fake.set_mode(SPOT, Fault.slow(30))
    task = asyncio.create_task(fetch(session, make_cfg(fake.url, timeout_read=20)))
    async with asyncio.timeout(2):
        await fake.wait_for_requests(SPOT, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_errors_never_show_url_credentials_or_secret_query_values(
    fake: FakeBinance, session: aiohttp.ClientSession
) -> None:
    fake.set_mode(SPOT, Fault.status(500))
    base = fake.url.replace("http://", "http://alice:hunter2@")
    cfg = make_cfg(base, query=(("signature", "s3cr3tsig"), ("symbolStatus", "TRADING")))
    with pytest.raises(AllHostsFailed) as info:
        await fetch(session, cfg)
    text = str(info.value) + repr(info.value.failures)
    assert "hunter2" not in text
    assert "alice" not in text
    assert "s3cr3tsig" not in text
    assert "symbolStatus=TRADING" in text


def test_redact_url() -> None:
    assert redact_url("https://u:p@api.binance.com/api/v3/x?a=1#frag") == (
        "https://api.binance.com/api/v3/x?a=1"
    )
    shown = redact_url("https://h/p?apiKey=k1&signature=s1&timestamp=5&token=t1&password=p1")
    for secret in ("k1", "s1", "t1", "p1"):
        assert f"={secret}" not in shown
    assert "timestamp=5" in shown
    assert redact_url("file:///tmp/x.json") == "file:///tmp/x.json"
    assert redact_url("http://[::1]:8080/p") == "http://[::1]:8080/p"


# ============================================================================================
# configuration


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_urls": "https://api.binance.com"}, "tuple"),
        ({"base_urls": ()}, "tuple"),
        ({"base_urls": ("ftp://h",)}, "http"),
        ({"base_urls": ("https://",)}, "http"),
        ({"base_urls": ("file:relative.json",)}, "absolute"),
        ({"base_urls": ("file://otherhost/x.json",)}, "absolute"),
        ({"timeout_read": 0}, "timeout_read"),
        ({"timeout_total": float("inf")}, "timeout_total"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
    ],
)
def test_source_config_validation(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {
        "base_urls": ("https://api.binance.com",),
        "path": SPOT,
        "timeout_total": 30.0,
        "timeout_connect": 5.0,
        "timeout_read": 10.0,
    }
    values.update(kwargs)
    with pytest.raises(ValueError, match=message):
        SourceConfig(**values)


def test_source_config_defaults() -> None:
    cfg = SourceConfig(("https://api.binance.com", "file:///srv/seed.json"), SPOT)
    assert cfg.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 64 * 1024 * 1024
    assert cfg.query == ()
    with pytest.raises(AttributeError):
        cfg.path = "/x"  # type: ignore[misc]


# ============================================================================================
# pure helpers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", None),
        ("soon", None),
        ("1e3", None),
        ("nan", None),
        ("99999999999", MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_relative_to_now() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 300, usegmt=True), now=now) == 300.0
    assert parse_retry_after(email.utils.formatdate(now + 300), now=now) == 300.0  # -0000 zone
    far = email.utils.formatdate(now + 10 * 86400, usegmt=True)
    assert parse_retry_after(far, now=now) == MAX_RETRY_AFTER


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("20", 20), (" 6000 ", 6000), ("", None), ("-1", None), ("1.5", None),
     ("x", None), ("9" * 40, None)],
)  # fmt: skip
def test_parse_used_weight(value: str | None, expected: int | None) -> None:
    assert parse_used_weight(value) == expected


def test_retry_delay_honours_retry_after_beyond_the_backoff_cap() -> None:
    assert retry_delay(120.0, 0, base=1.0, cap=60.0) == 120.0
    assert retry_delay(0.0, 5, base=1.0, cap=60.0) == 0.0
    assert retry_delay(-3.0, 5, base=1.0, cap=60.0) == 0.0
    assert retry_delay(10 * 86400.0, 0, base=1.0, cap=60.0) == MAX_RETRY_AFTER == 3 * 86400.0
    assert retry_delay(float("inf"), 0, base=1.0, cap=60.0) == MAX_RETRY_AFTER


def test_retry_delay_full_jitter_backoff() -> None:
    rng = random.Random(42)
    for attempt, ceiling in [(0, 2.0), (1, 4.0), (3, 16.0), (5, 60.0), (10_000, 60.0)]:
        samples = [retry_delay(None, attempt, base=2.0, cap=60.0, rng=rng) for _ in range(400)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > 0.9 * ceiling  # full jitter spans the whole range
        assert min(samples) < 0.1 * ceiling
    # NaN from a bad computation upstream means "no server hint": back off instead.
    assert 0.0 <= retry_delay(float("nan"), 0, base=1.0, cap=5.0) <= 1.0
    assert retry_delay(None, -3, base=1.0, cap=5.0) <= 1.0


def test_retry_delay_is_deterministic_with_a_seeded_rng() -> None:
    first = [retry_delay(None, i, base=1.0, cap=30.0, rng=random.Random(7)) for i in range(6)]
    again = [retry_delay(None, i, base=1.0, cap=30.0, rng=random.Random(7)) for i in range(6)]
    assert first == again


def test_fetch_result_is_frozen() -> None:
    result = FetchResult(b"{}", "u", 200, None, 1.0)
    with pytest.raises(AttributeError):
        result.status = 500  # type: ignore[misc]
    assert result.attempts == ()


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
