"""A failed fetch never replaces good data: every upstream fault at the refresher level,
what meta and the counters say about it, and a first cycle that fails.

Real redis-server and fake Binance processes on loopback, nothing mocked (see conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis.asyncio

from daemon.refresh.cycle import MarketRefresher
from tests.refresh.spot_market import KEYS, MAX_BODY
from tests.support.builders import accepted, make_rows, make_settings, open_refresher, payload
from tests.support.fake_binance import SPOT, FakeBinance, Fault
from tests.support.stored_snapshot import read_meta, read_metrics, read_stored


@dataclass(frozen=True)
class FaultCase:
    id: str
    arm: Callable[[FakeBinance], None]
    outcome: str
    reason_has: tuple[str, ...]
    permanent: bool = False
    counter: str = "refresh_error"
    requests: int = 1


def queue(*faults: Fault) -> Callable[[FakeBinance], None]:
    return lambda fake: fake.fail(SPOT, *faults)


def sticky(fault: Fault) -> Callable[[FakeBinance], None]:
    return lambda fake: fake.set_mode(SPOT, fault)


FAULTS = [
    FaultCase(
        "500",
        queue(Fault.status(500)),
        "error",
        ("all_hosts_failed", "-> server_error:", "HTTP 500"),
    ),
    FaultCase("503", queue(Fault.status(503)), "error", ("-> server_error:", "HTTP 503")),
    FaultCase(
        "502_html", queue(Fault.html_502()), "error", ("-> server_error:", "502 Bad Gateway")
    ),
    FaultCase(
        "404", queue(Fault.status(404)), "error", ("-> http_status:", "HTTP 404"), permanent=True
    ),
    FaultCase("403", queue(Fault.forbidden()), "error", ("forbidden:", "HTTP 403"), permanent=True),
    FaultCase(
        "451",
        queue(Fault.unavailable_for_legal()),
        "error",
        ("legal_restriction:", "HTTP 451", "restricted location"),
        permanent=True,
    ),
    # aiohttp retries an idempotent GET once after a reset before any response.
    FaultCase("reset", sticky(Fault.reset()), "error", ("-> connection:",), requests=2),
    FaultCase(
        "reset_mid_body",
        queue(Fault.reset(mid_body=True)),
        "error",
        ("-> truncated:", "Connection reset by peer"),
    ),
    FaultCase("slow", queue(Fault.slow(30)), "error", ("-> timeout:",)),
    FaultCase("stall_body", queue(Fault.stall_body()), "error", ("-> timeout:",)),
    FaultCase("truncated", queue(Fault.truncated()), "error", ("-> truncated:",)),
    FaultCase("corrupt_gzip", queue(Fault.corrupt_gzip()), "error", ("-> bad_encoding:",)),
    FaultCase(
        "body_too_large",
        queue(Fault.custom(b" " * (MAX_BODY + 1))),
        "error",
        ("body_too_large:", f"max_body_bytes={MAX_BODY}"),
        permanent=True,
    ),
    FaultCase(
        "gzip_bomb_too_large",
        queue(Fault.gzip_bomb(MAX_BODY * 8)),
        "error",
        ("body_too_large:",),
        permanent=True,
    ),
    FaultCase(
        "invalid_json",
        queue(Fault.invalid_json()),
        "rejected",
        ("malformed reply: exchangeInfo payload is not valid JSON",),
        counter="refresh_rejected",
    ),
    FaultCase(
        "wrong_shape_list",
        queue(Fault.wrong_shape("list")),
        "rejected",
        ("malformed reply: exchangeInfo payload has an unusable shape",),
        counter="refresh_rejected",
    ),
    FaultCase(
        "wrong_shape_no_symbols",
        queue(Fault.wrong_shape("no_symbols")),
        "rejected",
        ("malformed reply:", "symbols"),
        counter="refresh_rejected",
    ),
    FaultCase(
        "wrong_shape_symbols_not_list",
        queue(Fault.wrong_shape("symbols_not_list")),
        "rejected",
        ("malformed reply:", "$.symbols"),
        counter="refresh_rejected",
    ),
    FaultCase(
        "empty_symbols",
        queue(Fault.empty_symbols()),
        "rejected",
        ("empty",),
        counter="refresh_rejected",
    ),
    FaultCase(
        "only_unusable_rows",
        queue(Fault.custom(b'{"serverTime":1,"symbols":[1,"x",{"symbol":"A"},null]}')),
        "rejected",
        ("empty",),
        counter="refresh_rejected",
    ),
    FaultCase(
        "nothing_listed",
        queue(Fault.custom(payload(make_rows(5, status="BREAK")))),
        "rejected",
        ("empty",),
        counter="refresh_rejected",
    ),
]


@pytest.mark.parametrize("case", FAULTS, ids=[c.id for c in FAULTS])
async def test_upstream_fault_never_replaces_good_data(
    case: FaultCase, refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    good = await accepted(refresher)
    stored = await read_stored(r)
    ttl_before = await r.pttl(KEYS.symbols)
    requests_before = fake.requests[SPOT]
    case.arm(fake)

    result = await refresher.refresh_once()

    assert result.outcome == case.outcome, result
    assert result.ok is False
    assert result.redis_down is False
    assert result.wait is None
    assert result.permanent is case.permanent
    for part in case.reason_has:
        assert part in result.reason
    if case.reason_has == ("empty",):
        assert result.reason == "empty"
    assert fake.requests[SPOT] - requests_before == case.requests
    # Byte-identical data; the symbols TTL was not renewed by a failed cycle.
    assert await read_stored(r) == stored
    assert 0 < await r.pttl(KEYS.symbols) <= ttl_before
    meta = await read_meta(r)
    assert meta["version"] == good.version
    assert (meta["count"], meta["listed"]) == ("8", "6")
    assert meta["stale"] == "1"
    expected_error = result.reason if case.outcome == "error" else f"rejected: {result.reason}"
    assert meta["last_error"] == expected_error[:500]
    assert meta["last_error"] != ""
    assert await read_metrics(r) == {"refresh_success": 1, case.counter: 1}
    assert await r.get(KEYS.ban_until) is None
    assert await r.xlen(KEYS.changes) == 0

    # Recovery: the next good reply is the same content, so "unchanged", and meta is fresh.
    fake.set_mode(SPOT, None)
    again = await refresher.refresh_once()
    assert again.outcome == "unchanged"
    meta = await read_meta(r)
    assert (meta["stale"], meta["last_error"]) == ("0", "")
    assert await read_metrics(r) == {"refresh_success": 2, case.counter: 1}


async def test_a_failure_is_counted_exactly_once_per_cycle(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    await accepted(refresher)
    fake.set_mode(SPOT, Fault.status(500))
    for _ in range(5):
        assert (await refresher.refresh_once()).outcome == "error"
    fake.set_mode(SPOT, Fault.invalid_json())
    for _ in range(3):
        assert (await refresher.refresh_once()).outcome == "rejected"
    assert await read_metrics(r) == {
        "refresh_success": 1,
        "refresh_error": 5,
        "refresh_rejected": 3,
    }


async def test_failure_before_any_good_snapshot_writes_no_data(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    fake.fail(SPOT, Fault.status(500))
    result = await refresher.refresh_once()
    assert result.outcome == "error"
    assert await r.exists(KEYS.symbols, KEYS.last_good, KEYS.by_symbol, KEYS.refreshed_at) == 0
    meta = await read_meta(r)
    assert meta == {"stale": "1", "last_error": result.reason}
    assert await read_metrics(r) == {"refresh_error": 1}


async def test_a_long_error_is_cut_to_500_characters_in_meta(
    redis_url: str, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    # Three hosts failing with long error bodies make a reason well over 500 characters.
    settings = make_settings(fake.url, {"markets.spot.base_urls": [fake.url] * 3})
    long_error = Fault.status(500, body=b'{"code":-1,"msg":"' + b"x" * 2000 + b'"}')
    async with open_refresher(redis_url, settings) as refresher:
        await accepted(refresher)
        fake.fail(SPOT, long_error, long_error, long_error)
        result = await refresher.refresh_once()
    assert fake.requests[SPOT] == 4
    assert result.outcome == "error"
    assert len(result.reason) > 500
    assert (await read_meta(r))["last_error"] == result.reason[:500]
