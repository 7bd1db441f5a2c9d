"""The fake Binance server itself (tests/support/fake_binance.py): what it serves, counts and
records, and every fault it injects, seen through a plain aiohttp client.

Against the fake Binance on loopback, never Binance itself (fixtures: conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
import zlib

import aiohttp
import pytest

from tests.support.fake_binance import SPOT, USDM, FakeBinance, Fault, small_exchange_info


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
