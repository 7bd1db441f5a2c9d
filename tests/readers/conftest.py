"""Fixtures of the reader tests: `make_reader` (each test once with the sync reader, once with
the async one) and `direct`, a plain client on the test's database.

The reader tests run against real redis-server processes. Snapshots are written by the real
writer (``SnapshotStore.commit``, see ``sample_snapshots.py``), so they read exactly what the
daemon stores. Waiting is on the reader's own state changes (``wait_until``), never on sleeps.
Tests taking ``make_reader`` run twice: on ``SymbolReader`` and on ``AsyncSymbolReader`` driven
from a private event-loop thread through the same calls (``reader_twins.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.readers.reader_twins import MakeReader, reader_factory


@pytest.fixture(params=["sync", "async"])
def make_reader(request: pytest.FixtureRequest) -> Iterator[MakeReader]:
    with reader_factory(request.param) as make:
        yield make


@pytest.fixture
def direct(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
