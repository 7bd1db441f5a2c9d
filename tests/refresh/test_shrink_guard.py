"""The shrink guard at the refresher level: a reply listing many fewer symbols is held back
until the same reply is confirmed, across restarts of the daemon and of Redis.

Real redis-server and fake Binance processes on loopback, nothing mocked (see conftest.py).
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio

from daemon.refresh.cycle import MarketRefresher
from tests.refresh.spot_market import KEYS
from tests.support.builders import (
    accepted,
    make_rows,
    make_settings,
    open_refresher,
    payload,
    symbol_row,
)
from tests.support.fake_binance import SPOT, FakeBinance
from tests.support.stored_snapshot import (
    direct_client,
    listed_names,
    read_meta,
    read_metrics,
    read_stored,
)


async def test_shrink_is_held_back_until_confirmed_and_the_streak_survives_a_restart(
    redis_url: str, fake: FakeBinance, r: redis.asyncio.Redis
) -> None:
    settings = make_settings(fake.url)  # max_shrink 0.2, confirm_shrink 3
    full = payload(make_rows(50))
    shrunk = payload(make_rows(20))  # 60% fewer
    fake.set_payload(SPOT, full)
    async with open_refresher(redis_url, settings) as ref:
        good = await accepted(ref)
        assert good.listed == 50
        stored = await read_stored(r)
        fake.set_payload(SPOT, shrunk)

        first = await ref.refresh_once()
        assert first.outcome == "rejected"
        assert first.reason == (
            "shrink: 20 listed vs 50 last good (more than 20% lost; 1/3 confirmations)"
        )
        assert first.listed == 20
        assert first.version is not None
        assert await read_stored(r) == stored
        meta = await read_meta(r)
        assert (meta["version"], meta["listed"], meta["stale"]) == (good.version, "50", "1")
        assert meta["last_error"] == f"rejected: {first.reason}"
        assert (meta["shrink_version"], meta["shrink_count"]) == (first.version, "1")
        assert await read_metrics(r) == {"refresh_success": 1, "refresh_rejected": 1}

        second = await ref.refresh_once()
        assert second.outcome == "rejected"
        assert second.reason.endswith("(more than 20% lost; 2/3 confirmations)")
        assert (await read_meta(r))["shrink_count"] == "2"
        assert await read_stored(r) == stored

    # A restarted daemon (nothing in memory) continues the streak from meta.
    async with open_refresher(redis_url, settings) as restarted:
        third = await restarted.refresh_once()
    assert third.outcome == "accepted"
    assert third.listed == 20
    assert third.version == first.version
    meta = await read_meta(r)
    assert (meta["version"], meta["listed"], meta["stale"], meta["last_error"]) == (
        first.version,
        "20",
        "0",
        "",
    )
    assert (meta["shrink_version"], meta["shrink_count"]) == ("", "0")
    assert len(listed_names(await r.get(KEYS.symbols))) == 20
    assert await read_metrics(r) == {"refresh_success": 2, "refresh_rejected": 2}
    # The accepted shrink is a change: 30 symbols removed.
    entries = await r.xrange(KEYS.changes)
    assert len(entries) == 1
    assert len(json.loads(entries[0][1][b"diff"])["removed"]) == 30


async def test_a_different_shrunk_reply_restarts_the_streak(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    fake.set_payload(SPOT, payload(make_rows(50)))
    good = await accepted(refresher)
    shrunk_a = payload(make_rows(20))
    shrunk_b = payload(make_rows(21))

    fake.set_payload(SPOT, shrunk_a)
    a1 = await refresher.refresh_once()
    a2 = await refresher.refresh_once()
    assert (a1.outcome, a2.outcome) == ("rejected", "rejected")
    assert (await read_meta(r))["shrink_count"] == "2"

    fake.set_payload(SPOT, shrunk_b)
    b1 = await refresher.refresh_once()
    assert b1.outcome == "rejected"
    assert b1.reason.endswith("1/3 confirmations)")
    meta = await read_meta(r)
    assert (meta["shrink_version"], meta["shrink_count"]) == (b1.version, "1")

    fake.set_payload(SPOT, shrunk_a)
    a3 = await refresher.refresh_once()
    assert a3.outcome == "rejected"
    assert a3.reason.endswith("1/3 confirmations)")
    meta = await read_meta(r)
    assert (meta["version"], meta["shrink_version"], meta["shrink_count"]) == (
        good.version,
        a1.version,
        "1",
    )
    assert await read_metrics(r) == {"refresh_success": 1, "refresh_rejected": 4}


async def test_a_good_reply_in_between_resets_the_streak(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    full = payload(make_rows(50))
    shrunk = payload(make_rows(20))
    fake.set_payload(SPOT, full)
    await accepted(refresher)
    fake.set_payload(SPOT, shrunk)
    assert (await refresher.refresh_once()).outcome == "rejected"
    assert (await refresher.refresh_once()).outcome == "rejected"
    fake.set_payload(SPOT, full)
    assert (await refresher.refresh_once()).outcome == "unchanged"
    meta = await read_meta(r)
    assert (meta["shrink_version"], meta["shrink_count"]) == ("", "0")
    fake.set_payload(SPOT, shrunk)
    again = await refresher.refresh_once()
    assert again.outcome == "rejected"
    assert again.reason.endswith("1/3 confirmations)")


async def test_losing_exactly_max_shrink_is_accepted(
    refresher: MarketRefresher, fake: FakeBinance
) -> None:
    fake.set_payload(SPOT, payload(make_rows(50)))
    await accepted(refresher)
    fake.set_payload(SPOT, payload(make_rows(40)))  # exactly 20% fewer
    result = await refresher.refresh_once()
    assert result.outcome == "accepted"
    assert result.listed == 40
    fake.set_payload(SPOT, payload(make_rows(31)))  # 40 -> 31 is 22.5% fewer
    assert (await refresher.refresh_once()).outcome == "rejected"


async def test_shrink_guard_counts_listed_symbols_not_rows(
    refresher: MarketRefresher, fake: FakeBinance
) -> None:
    rows = make_rows(50)
    fake.set_payload(SPOT, payload(rows))
    await accepted(refresher)
    # Same 50 rows, but 30 of them moved to BREAK: only 20 listed.
    broken = [
        symbol_row(row["symbol"], row["baseAsset"], row["quoteAsset"], status="BREAK")
        if i >= 20
        else row
        for i, row in enumerate(rows)
    ]
    fake.set_payload(SPOT, payload(broken))
    result = await refresher.refresh_once()
    assert result.outcome == "rejected"
    assert result.reason.startswith("shrink: 20 listed vs 50 last good")


async def test_shrink_guard_holds_after_redis_restarted_empty(
    redis_factory: Any, fake: FakeBinance
) -> None:
    """The daemon still knows the last good count from memory, so an empty Redis does not
    turn a shrunk reply into a "first" snapshot."""
    server = redis_factory().start()
    check = direct_client(server.url)
    try:
        fake.set_payload(SPOT, payload(make_rows(50)))
        async with open_refresher(server.url, make_settings(fake.url)) as ref:
            await accepted(ref)
            stored = await read_stored(check)
            server.restart()
            fake.set_payload(SPOT, payload(make_rows(10)))
            result = await ref.refresh_once()
            assert result.outcome == "rejected"
            assert result.reason.startswith("shrink: 10 listed vs 50 last good")
            assert await check.get(KEYS.symbols) == stored.symbols
            assert await read_metrics(check) == {"refresh_rejected": 1, "fallback_used": 1}
    finally:
        await check.aclose()
