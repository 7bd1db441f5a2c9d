"""Shared fixtures: private redis-server processes and clean global state per test."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import pytest
import structlog

from daemon import readers, redaction, redis_client
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private server for the session; tests that break a server use `redis_factory`."""
    with RedisServer() as server:
        yield server


_db_numbers = itertools.cycle(range(1, 64))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A URL to a database of the session server that is empty when the test starts."""
    if not redis_server.running:
        redis_server.start()
    db = next(_db_numbers)
    direct = redis_server.client(db)
    direct.flushdb()
    yield redis_server.url_db(db)
    direct.flushdb()
    direct.close()


@pytest.fixture
def redis_factory() -> Iterator[type[RedisServer]]:
    """Start extra servers a test may kill, pause or restart; all are closed afterwards."""
    started: list[RedisServer] = []

    class Factory(RedisServer):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Factory
    for server in started:
        server.close()


@pytest.fixture(autouse=True)
def _clean_global_state() -> Iterator[None]:
    """Logging config, registered secrets and the legacy module's clients are process-wide."""
    yield
    redis_client.reset()
    readers.reset()
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "symbold"]:
        root.removeHandler(handler)
    redaction.clear_secrets()
