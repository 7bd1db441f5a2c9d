"""daemon.upstream.fetch against a real aiohttp fake of Binance on loopback: a good reply,
falling back to the next host, stopping at once on 429/418/403/451, cancellation, and
credentials kept out of errors.

Against the fake Binance on loopback, never Binance itself (fixtures: conftest.py).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from pathlib import Path

import aiohttp
import pytest

from daemon.upstream.fetch import (
    AllHostsFailed,
    Forbidden,
    LegalRestriction,
    RateLimited,
    UpstreamError,
    fetch,
    redact_url,
)
from tests.support.fake_binance import SPOT, FakeBinance, Fault, small_exchange_info
from tests.support.fixtures import FIXTURES
from tests.upstream.sources import closed_port_url, make_cfg

SPOT_2023 = FIXTURES / "spot-exchangeinfo-2023-09.json"


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
