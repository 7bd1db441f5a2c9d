"""Fixtures of the upstream tests: fake Binance servers on loopback, a fetch session, and a
plain aiohttp client that does not decompress (for testing the fake itself).

Nothing in tests/upstream talks to Binance. Waits are bounded by timeouts on the client side or
by ``FakeBinance.wait_for_requests``; there is no sleep used to order events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from daemon.upstream.fetch import make_session
from tests.support.fake_binance import FakeBinance
from tests.upstream.sources import make_cfg


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
