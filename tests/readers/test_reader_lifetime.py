"""A reader's lifetime: closing stops its subscriber thread or task, a dropped reader stops
its subscriber, the async reader belongs to one loop, and a forked child gets its own.

Against real redis-server processes; tests taking ``make_reader`` run on both readers.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import time
import warnings
from typing import Any

import pytest

from daemon.readers import AsyncSymbolReader, ReaderClosedError, SymbolReader
from tests.readers.reader_twins import FAST, live, subscriber_threads
from tests.readers.sample_snapshots import V1, V1_RECORDS, V2, Writer, btc

pytestmark = pytest.mark.timeout(20)


def test_sync_close_stops_the_subscriber_cleanly(redis_url: str) -> None:
    Writer(redis_url).commit(V1)
    reader = SymbolReader.from_url(redis_url, near_cache=FAST)
    assert reader.wait_until(live)
    assert reader.get_symbol("BTCUSDT") is not None
    assert len(subscriber_threads()) == 1
    started = time.monotonic()
    reader.close()
    assert time.monotonic() - started < 1.0
    assert subscriber_threads() == []
    assert not reader.near_cache_status().live
    with pytest.raises(ReaderClosedError):
        reader.get_symbol("BTCUSDT")
    reader.close()  # idempotent
    gc.collect()  # an unclosed socket would raise ResourceWarning here (-W error)


def test_dropped_reader_stops_its_subscriber(redis_url: str) -> None:
    reader = SymbolReader.from_url(redis_url, near_cache=FAST)
    assert reader.wait_until(live)
    thread = subscriber_threads()[0]
    reader._clients.close()  # what close() would do for the pool; the thread is the point
    del reader
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()


async def test_async_close_stops_the_task_cleanly(redis_url: str) -> None:
    await asyncio.to_thread(Writer(redis_url).commit, V1)
    reader = AsyncSymbolReader.from_url(redis_url, near_cache=FAST)
    async with asyncio.timeout(5):
        await reader.wait_until(live)
    assert await reader.get_symbol("BTCUSDT") == V1_RECORDS["BTCUSDT"]
    assert await reader.get_symbol("BTCUSDT") == V1_RECORDS["BTCUSDT"]
    await reader.aclose()
    me = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not me] == []
    with pytest.raises(ReaderClosedError):
        await reader.get_symbol("ETHUSDT")
    await reader.aclose()


async def test_async_reader_refuses_another_loop(redis_url: str) -> None:
    reader = AsyncSymbolReader.from_url(redis_url)
    assert not (await reader.snapshot_info()).present  # the first read binds it to this loop

    def other_loop() -> None:
        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(reader.get_symbol("BTCUSDT"))

    await asyncio.to_thread(other_loop)
    await reader.aclose()


def _forked_child(reader: SymbolReader, out: Any) -> None:
    try:
        first = reader.get_symbol("BTCUSDT")  # the parent's cached entries are not trusted here
        came_up = reader.wait_until(live)
        second = reader.get_symbol("BTCUSDT")
        third = reader.get_symbol("BTCUSDT")
        out.put((btc(first), came_up, second is third, len(subscriber_threads())))
    finally:
        reader.close()


def test_forked_child_gets_its_own_connections_and_subscriber(redis_url: str) -> None:
    writer = Writer(redis_url)
    writer.commit(V1)
    with SymbolReader.from_url(redis_url, near_cache=FAST) as reader:
        assert reader.wait_until(live)
        parent_record = reader.get_symbol("BTCUSDT")
        writer.commit(V2, publish=False)  # the parent's cache still holds V1, legitimately
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a process with threads; that is the case here.
            warnings.simplefilter("ignore", DeprecationWarning)
            proc = ctx.Process(target=_forked_child, args=(reader, out))
            proc.start()
        result = out.get(timeout=15)
        proc.join(15)
        out.close()
        out.join_thread()
        assert proc.exitcode == 0
        assert result == ("0.02000000", True, True, 1)
        # The parent's subscriber and connections are untouched by the child.
        assert reader.near_cache_status().live
        assert reader.get_symbol("BTCUSDT") is parent_record
