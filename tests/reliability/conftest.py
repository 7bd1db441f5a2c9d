"""Fixtures of the reliability suite: a password-protected Redis, the fake upstream, daemons.

Every daemon a test starts through ``daemons`` reaches Redis with a password in its URL; when
the test ends, the fixture checks that the password appears nowhere in what the daemon printed
(log lines, tracebacks, anything on stdout or stderr), and that it printed no traceback, no
"Task exception was never retrieved" and no unclosed-resource warning.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from tests.support.builders import make_rows, payload
from tests.support.daemon_proc import Harness
from tests.support.fake_binance import SPOT, FakeBinance
from tests.support.redis_server import RedisServer
from tests.support.reliability_results import (  # noqa: F401 - fixture and hooks, re-exported for pytest
    pytest_runtest_makereport,
    pytest_sessionfinish,
    reliability,
)
from tests.support.stored_snapshot import Snapshot, direct_client, read_metrics, read_snapshot

# The Redis password of every scenario. Distinctive, so a leak cannot hide in other text.
SECRET = "Rel1ab-S3cret-pw"
ROWS = make_rows(40)
BASE_PAYLOAD = payload(ROWS)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.set_payload(SPOT, BASE_PAYLOAD)
        yield server


@pytest.fixture
def redis_pw(redis_factory: type[RedisServer]) -> Callable[..., RedisServer]:
    """Start a password-protected server of the test's own (it may be killed or paused)."""

    def start(*, started: bool = True, **kwargs: Any) -> RedisServer:
        server = redis_factory(password=SECRET, **kwargs)
        return server.start() if started else server

    return start


@pytest.fixture
def server(redis_pw: Callable[..., RedisServer]) -> RedisServer:
    return redis_pw()


@pytest.fixture
async def admin(server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client on `server` for assertions; closing it tolerates a server the test
    killed."""
    client = direct_client(server.url)
    yield client
    with contextlib.suppress(redis.RedisError, OSError):
        await client.aclose()


async def first_snapshot(h: Harness, admin: redis.asyncio.Redis) -> Snapshot:
    """Wait for the daemon's first cycle, check it was accepted, return what it wrote."""
    assert await h.first_cycle() == ["accepted"], h.d.output()
    snap = await read_snapshot(admin)
    assert snap.is_whole()
    assert await read_metrics(admin) == {"refresh_success": 1}
    return snap


class Daemons:
    """Starts harnessed daemons and closes them after the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Harness] = []

    async def start(self, redis_url: str, fake_url: str, **kwargs: Any) -> Harness:
        harness = Harness(
            self.tmp_path,
            redis_url=redis_url,
            fake_url=fake_url,
            name=f"d{len(self.started)}",
            **kwargs,
        )
        self.started.append(harness)
        await harness.start()
        return harness

    def output(self) -> str:
        return "\n".join(h.d.output() for h in self.started if h.proc is not None)


@pytest.fixture
async def daemons(tmp_path: Path, redis_factory: type[RedisServer]) -> AsyncIterator[Daemons]:
    # Depends on redis_factory so that the daemons stop before the servers they use do.
    holder = Daemons(tmp_path)
    try:
        yield holder
    finally:
        for harness in holder.started:
            await harness.close()
    output = holder.output()
    assert SECRET not in output, "the Redis password leaked into the daemon's output"
    for sign in ("Task exception was never retrieved", "Unclosed", "Traceback"):
        assert sign not in output, f"{sign!r} in the daemon's output:\n{output}"
