"""A steady cycle whose changed listed rows keep their JSON's length overwrites them in place in
both stored copies of the listing (SETRANGE), after checking inside the transaction that the
stored listing is the one the patches were made for; anything else gets the listing whole.
Either way Redis ends up holding what a fresh derivation gives.

Real redis-server and fake Binance processes on loopback, nothing mocked (see conftest.py).
"""

from __future__ import annotations

import pytest
import redis.asyncio

from daemon.refresh.cycle import MarketRefresher
from tests.refresh.spot_market import BASE_ROWS, CACHE_TTL, KEYS
from tests.support.builders import accepted, payload, replace_row
from tests.support.fake_binance import SPOT, FakeBinance
from tests.support.fresh import fresh_by_symbol, fresh_listing
from tests.support.slowlog import logged, on
from tests.support.stored_snapshot import read_stored

pytestmark = pytest.mark.timeout(60)


async def _expect_fresh(r: redis.asyncio.Redis, body: bytes, ref: MarketRefresher) -> None:
    stored = await read_stored(r)
    listing = fresh_listing(body, ref.market)
    assert stored.symbols == listing
    assert stored.last_good == listing
    assert stored.by_symbol == fresh_by_symbol(body)


# The same width ("0.01000000" -> "0.02000000"): the row's JSON keeps its length.
SAME_WIDTH = payload(replace_row(list(BASE_ROWS), "BTCUSDT", tick_size="0.02000000"))
OTHER_WIDTH = payload(replace_row(list(BASE_ROWS), "BTCUSDT", tick_size="0.5"))


async def test_a_same_length_change_is_written_in_place(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    await accepted(refresher)
    await r.expire(KEYS.symbols, 30)
    fake.set_payload(SPOT, SAME_WIDTH)
    async with logged(r) as seen:
        await accepted(refresher)
    assert on(seen, b"SETRANGE", KEYS.symbols) == on(seen, b"SETRANGE", KEYS.last_good) == 1
    assert on(seen, b"SET", KEYS.symbols) == on(seen, b"SET", KEYS.last_good) == 0
    assert 30 < await r.ttl(KEYS.symbols) <= CACHE_TTL  # the expiry was renewed
    await _expect_fresh(r, SAME_WIDTH, refresher)


async def test_a_change_of_length_sends_the_listing_whole(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance
) -> None:
    await accepted(refresher)
    fake.set_payload(SPOT, OTHER_WIDTH)
    async with logged(r) as seen:
        await accepted(refresher)
    assert on(seen, b"SETRANGE", KEYS.symbols) == 0
    assert on(seen, b"SET", KEYS.symbols) == on(seen, b"SET", KEYS.last_good) == 1
    await _expect_fresh(r, OTHER_WIDTH, refresher)


@pytest.mark.parametrize("tamper", ["same length, other bytes", "other length", "gone", "expiring"])
async def test_a_stored_listing_not_as_kept_is_sent_whole(
    refresher: MarketRefresher, r: redis.asyncio.Redis, fake: FakeBinance, tamper: str
) -> None:
    """Someone else wrote the listing (meta untouched), or it is about to expire: no patch
    lands on bytes it was not made for; the check in the transaction refuses it and the
    listing goes out whole."""
    await accepted(refresher)
    stored = await r.get(KEYS.last_good)
    assert stored is not None
    if tamper == "same length, other bytes":
        await r.set(KEYS.last_good, stored.replace(b"0.01000000", b"0.07000000"))
    elif tamper == "other length":
        await r.set(KEYS.last_good, stored + b" ")
    elif tamper == "expiring":  # about to expire: a patch could land on a key made anew
        await r.pexpire(KEYS.symbols, 3000)
    else:
        await r.delete(KEYS.last_good)
    fake.set_payload(SPOT, SAME_WIDTH)
    async with logged(r) as seen:
        await accepted(refresher)
    assert on(seen, b"SET", KEYS.last_good) == 1
    assert on(seen, b"SETRANGE", KEYS.last_good) == 0
    await _expect_fresh(r, SAME_WIDTH, refresher)
