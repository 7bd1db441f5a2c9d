"""Fixtures of the reader tests: `make_reader` (each test once with the sync reader, once with
the async one) and `direct`, a plain client on the test's database."""

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
