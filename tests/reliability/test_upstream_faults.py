"""Upstream (Binance) faults against a running `symbold run` process.

Each fault is already tested in detail at the refresher level
(tests/refresh/test_fetch_failures.py::test_upstream_fault_never_replaces_good_data, and the
429/418 and shrink tests in tests/refresh/test_rate_limit_bans.py and
tests/refresh/test_shrink_guard.py); here one parametrized black-box test walks the list
through a real daemon and checks that it keeps serving byte-identical data, counts exactly,
keeps running and recovers on the next good reply. The rows with behaviour of their own (rate
limits and bans, the gzip bomb's memory, the shrink guard, refused names) have their own tests.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest
import redis.asyncio

from tests.reliability.conftest import BASE_PAYLOAD, ROWS, Daemons, first_snapshot
from tests.support.builders import make_rows, payload, symbol_row
from tests.support.fake_binance import SPOT, FakeBinance, Fault, gzip_bomb_bytes
from tests.support.process_stats import Stopwatch, proc_status
from tests.support.redis_server import RedisServer
from tests.support.reliability_results import Recorder
from tests.support.stored_snapshot import (
    BAN_KEY,
    read_meta,
    read_metrics,
    read_snapshot,
)

GROUP = "Upstream"


@dataclass(frozen=True)
class Case:
    id: str
    label: str
    faults: tuple[Fault, ...]
    outcome: str  # "error" or "rejected"
    sticky: bool = False  # aiohttp retries a GET once after a reset: make the fault stick

    @property
    def counter(self) -> str:
        return "refresh_error" if self.outcome == "error" else "refresh_rejected"


CASES = [
    Case("500", "HTTP 500", (Fault.status(500),), "error"),
    Case("502_html", "HTTP 502 with an HTML body", (Fault.html_502(),), "error"),
    Case("403", "HTTP 403 (WAF block, permanent)", (Fault.forbidden(),), "error"),
    Case(
        "451",
        "HTTP 451 (restricted location, permanent)",
        (Fault.unavailable_for_legal(),),
        "error",
    ),
    Case("reset", "connection reset (RST)", (Fault.reset(),), "error", sticky=True),
    Case("reset_mid_body", "connection reset mid-body", (Fault.reset(mid_body=True),), "error"),
    Case("timeout", "timeout (no headers within timeout_total)", (Fault.slow(5.0),), "error"),
    Case("truncated", "truncated body", (Fault.truncated(),), "error"),
    Case("corrupt_gzip", "corrupt gzip", (Fault.corrupt_gzip(),), "error"),
    Case("invalid_json", "invalid JSON", (Fault.invalid_json(),), "rejected"),
    Case(
        "wrong_shape", "JSON of the wrong shape (array)", (Fault.wrong_shape("list"),), "rejected"
    ),
    Case(
        "no_symbols",
        "JSON of the wrong shape (no symbols)",
        (Fault.wrong_shape("no_symbols"),),
        "rejected",
    ),
    Case("empty_list", "empty symbol list", (Fault.empty_symbols(),), "rejected"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_daemon_keeps_serving_through_an_upstream_fault(
    case: Case,
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        f"Upstream {case.label}",
        f"cycle {case.outcome}; the snapshot stays byte-identical and is marked stale; "
        f"{case.counter} +1 exactly; the next good reply refreshes it",
        group=GROUP,
    )
    async with asyncio.timeout(30):
        h = await daemons.start(server.url, fake.url)
        before = await first_snapshot(h, admin)
        ttl = await admin.ttl("symbold:{spot}:symbols")
        if case.sticky:
            fake.set_mode(SPOT, case.faults[0])
        else:
            fake.fail(SPOT, *case.faults)
        assert await h.cycle() == [case.outcome]
        during = await read_snapshot(admin)
        assert during.same_data(before)
        assert during.refreshed_at == before.refreshed_at
        assert 0 < await admin.ttl("symbold:{spot}:symbols") <= ttl  # not renewed
        meta = await read_meta(admin)
        assert meta["stale"] == "1"
        assert meta["last_error"] != ""
        assert await read_metrics(admin) == {"refresh_success": 1, case.counter: 1}
        assert not h.exited
        fake.set_mode(SPOT, None)
        clock = Stopwatch()
        assert await h.cycle() == ["unchanged"]
        recovery = clock()
        after = await read_snapshot(admin)
        assert after.same_data(before)
        assert (await read_meta(admin))["stale"] == "0"
        assert await read_metrics(admin) == {"refresh_success": 2, case.counter: 1}
        assert await h.stop() == 0
    reliability.recovery(recovery, bound=1.0)
    assert recovery < 1.0


# ============================================================================================
# rate limits and bans


@dataclass(frozen=True)
class Limit:
    id: str
    label: str
    fault: Fault
    wait: float


LIMITS = [
    Limit("429_retry_after", "429 with Retry-After: 2", Fault.rate_limited(retry_after=2), 2.0),
    Limit(
        "429_no_retry_after",
        "429 without Retry-After (ban_fallback 2 s)",
        Fault.rate_limited(),
        2.0,
    ),
    Limit("418_retry_after", "418 IP ban with Retry-After: 2", Fault.banned(retry_after=2), 2.0),
]

FAST_RETRY = {"upstream": {"backoff_base": 0.1, "backoff_ceiling": 0.2, "ban_fallback": 2.0}}


@pytest.mark.parametrize("limit", LIMITS, ids=[lim.id for lim in LIMITS])
async def test_rate_limit_stops_every_request_until_the_deadline(
    limit: Limit,
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        f"Upstream {limit.label}",
        "no request reaches upstream before the deadline, even when a refresh is forced "
        "(SIGHUP -> refresh.skipped); the deadline is stored in Redis; the first request after "
        "it succeeds",
        group=GROUP,
    )
    async with asyncio.timeout(30):
        h = await daemons.start(server.url, fake.url, config=FAST_RETRY)
        before = await first_snapshot(h, admin)
        fake.fail(SPOT, limit.fault)
        assert await h.cycle() == ["error"]
        served_at = time.time()  # the 429/418 was served before this moment
        deadline_floor = served_at - 0.1 + limit.wait
        stored = await admin.get(BAN_KEY)
        assert stored is not None
        assert float(stored) >= deadline_floor - 0.1
        assert await h.cycle() == ["skipped"]  # forced, yet nothing is sent
        assert fake.requests[SPOT] == 2
        await fake.wait_for_requests(SPOT, 3)
        arrived = time.time()
        await h.d.wait_event("refresh.unchanged")
        assert arrived >= deadline_floor, (arrived, deadline_floor)
        assert arrived < served_at + limit.wait + 1.5
        assert (await read_snapshot(admin)).same_data(before)
        assert await read_metrics(admin) == {"refresh_success": 2, "refresh_error": 1}
        assert await h.stop() == 0
    reliability.recovery(arrived - served_at, bound=limit.wait + 1.5)


async def test_418_deadline_is_honoured_across_a_daemon_restart(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Upstream 418 IP ban, then the daemon restarts",
        "the restarted daemon reads the stored deadline and sends nothing upstream until it "
        "has passed, then refreshes",
        group=GROUP,
    )
    wait = 3.0
    async with asyncio.timeout(30):
        first = await daemons.start(server.url, fake.url, config=FAST_RETRY)
        before = await first_snapshot(first, admin)
        fake.fail(SPOT, Fault.banned(retry_after=int(wait)))
        assert await first.cycle() == ["error"]
        served_at = time.time()
        assert await first.stop() == 0
        requests = fake.requests[SPOT]

        second = await daemons.start(server.url, fake.url, config=FAST_RETRY)
        assert await second.first_cycle() == ["skipped"]
        assert fake.requests[SPOT] == requests
        await fake.wait_for_requests(SPOT, requests + 1)
        arrived = time.time()
        await second.d.wait_event("refresh.unchanged")
        assert arrived >= served_at - 0.1 + wait, (arrived - served_at, wait)
        assert arrived < served_at + wait + 1.5
        assert (await read_snapshot(admin)).same_data(before)
        assert await read_metrics(admin) == {"refresh_success": 2, "refresh_error": 1}
        assert await second.stop() == 0
    reliability.recovery(arrived - served_at, bound=wait + 1.5)


# ============================================================================================
# memory, shrink, names


async def test_gzip_bomb_keeps_the_daemon_memory_bounded(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Upstream gzip bomb (256 KiB on the wire, 256 MiB expanded; max_body_bytes 8 MiB)",
        "refused as body_too_large while decompressing; the daemon's peak RSS (VmHWM) grows by "
        "less than 48 MiB; data untouched",
        group=GROUP,
    )
    bomb = 256 * 1024 * 1024
    cap = 8 * 1024 * 1024
    await asyncio.to_thread(gzip_bomb_bytes, bomb)  # build the small body before measuring
    config = {"upstream": {"max_body_bytes": cap, "timeout_total": 10.0, "timeout_read": 10.0}}
    async with asyncio.timeout(40):
        h = await daemons.start(server.url, fake.url, config=config)
        before = await first_snapshot(h, admin)
        peak_before = proc_status(h.pid)["VmHWM"]
        fake.fail(SPOT, Fault.gzip_bomb(bomb))
        mark = len(h.d.events)
        assert await h.cycle() == ["error"]
        (failed,) = h.events("refresh.failed", since=mark)
        assert "body_too_large" in failed["error"], failed
        peak_after = proc_status(h.pid)["VmHWM"]
        grew = (peak_after - peak_before) * 1024
        assert grew < 48 * 1024 * 1024, grew
        assert (await read_snapshot(admin)).same_data(before)
        assert await read_metrics(admin) == {"refresh_success": 1, "refresh_error": 1}
        clock = Stopwatch()
        assert await h.cycle() == ["unchanged"]
        recovery = clock()
        assert await h.stop() == 0
    reliability.recovery(recovery, bound=1.0)
    reliability.detail(peak_rss_growth_mib=round(grew / 2**20, 1), bomb_mib=bomb // 2**20)


async def test_a_60_percent_shrink_is_held_back_then_accepted_after_confirmations(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Upstream reply 60% smaller (40 -> 16 listed)",
        "held back (refresh.rejected, data untouched) until the same reply is seen 3 times in "
        "a row, even across a daemon restart; then accepted and logged as an error",
        group=GROUP,
    )
    shrunk = payload(ROWS[:16])
    async with asyncio.timeout(30):
        first = await daemons.start(server.url, fake.url)
        before = await first_snapshot(first, admin)
        fake.set_payload(SPOT, shrunk)
        assert await first.cycle() == ["rejected"]
        assert await first.cycle() == ["rejected"]
        assert (await read_snapshot(admin)).same_data(before)
        assert await first.stop() == 0
        # the streak is kept in Redis: a restarted daemon's next sight of it is the third
        second = await daemons.start(server.url, fake.url)
        assert await second.first_cycle() == ["accepted"]
        assert len(second.events("refresh.shrink_accepted")) == 1
        assert second.events("refresh.shrink_accepted")[0]["level"] == "error"
        after = await read_snapshot(admin)
        assert after.is_whole()
        assert sorted(after.listed) == sorted(r["symbol"] for r in ROWS[:16])
        assert await read_metrics(admin) == {"refresh_success": 2, "refresh_rejected": 2}
        # and back: growth is never held back
        fake.set_payload(SPOT, BASE_PAYLOAD)
        assert await second.cycle() == ["accepted"]
        assert (await read_snapshot(admin)).same_data(before)
        assert await second.stop() == 0


async def test_refused_symbol_names_are_counted_and_the_rest_kept(
    server: RedisServer,
    admin: redis.asyncio.Redis,
    fake: FakeBinance,
    daemons: Daemons,
    reliability: Recorder,
) -> None:
    reliability.row(
        "Upstream symbols with control characters or over-long names",
        "those rows are refused and counted in normalize.rows_dropped (names escaped in the "
        "log); every other row is stored",
        group=GROUP,
    )
    good = make_rows(40)
    bad = [
        symbol_row("BAD\x07USDT", "BAD\x07", "USDT"),
        symbol_row("TAB\tUSDT", "TAB\t", "USDT"),
        symbol_row("ZERO\u200bUSDT", "ZERO\u200b", "USDT"),
        symbol_row("L" * 61 + "USDT", "L" * 61, "USDT"),
    ]
    fake.set_payload(SPOT, payload([*good[:20], *bad, *good[20:]]))
    async with asyncio.timeout(30):
        h = await daemons.start(server.url, fake.url)
        assert await h.first_cycle() == ["accepted"]
        (dropped,) = h.events("normalize.rows_dropped")
        assert dropped["refused"] == len(bad)
        assert len(dropped["refused_names"]) == len(bad)
        text = h.d.output()
        assert "\x07" not in text  # no raw control characters
        assert "\u200b" not in text
        assert "'BAD\\x07USDT'" in dropped["refused_names"], dropped["refused_names"]
        snap = await read_snapshot(admin)
        assert snap.is_whole()
        assert sorted(k.decode() for k in snap.by_symbol) == sorted(r["symbol"] for r in good)
        assert await read_metrics(admin) == {"refresh_success": 1}
        assert await h.stop() == 0
