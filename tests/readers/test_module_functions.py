"""The module-level functions (`get_symbol`, `get_symbol_sync`, ...) over one configured
reader per process, sync and async across loops, with and without the near-cache.

Against real redis-server processes; tests taking ``make_reader`` run on both readers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from daemon import readers
from daemon.config.settings import load_settings
from daemon.contract.record import SymbolRecord
from daemon.readers import SymbolReader
from tests.readers.reader_twins import FAST, live, subscriber_threads
from tests.readers.sample_snapshots import V1, V1_RECORDS, Writer

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def configured(redis_url: str) -> Iterator[str]:
    readers.configure(load_settings(environ={"REDIS_URL": redis_url}, use_default_path=False))
    yield redis_url
    readers.reset()


def test_module_functions_sync(configured: str) -> None:
    Writer(configured).commit(V1)
    assert readers.get_symbol_sync("BTCUSDT") == V1_RECORDS["BTCUSDT"]
    assert readers.get_symbol_sync("NOSUCHSYMBOL") is None
    assert len(readers.get_symbols_sync()) == V1.listed
    assert readers.snapshot_info_sync().version == V1.version
    assert readers.default_reader() is readers.default_reader()
    seen: list[SymbolReader] = []
    threads = [
        threading.Thread(target=lambda: seen.append(readers.default_reader())) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(r) for r in seen}) == 1


def test_module_functions_async_across_two_loops(configured: str) -> None:
    Writer(configured).commit(V1)

    async def work() -> tuple[SymbolRecord | None, int, str | None]:
        out = (
            await readers.get_symbol("BTCUSDT"),
            len(await readers.get_symbols()),
            (await readers.snapshot_info()).version,
        )
        await readers.close_async()
        return out

    expected = (V1_RECORDS["BTCUSDT"], V1.listed, V1.version)
    assert asyncio.run(work()) == expected
    assert asyncio.run(work()) == expected


def test_module_functions_with_near_cache(redis_url: str) -> None:
    Writer(redis_url).commit(V1)
    loaded = load_settings(environ={"REDIS_URL": redis_url}, use_default_path=False)
    readers.configure(loaded, near_cache=FAST)
    try:
        reader = readers.default_reader()
        assert reader.wait_until(live)
        assert readers.get_symbol_sync("BTCUSDT") == V1_RECORDS["BTCUSDT"]
        assert readers.get_symbol_sync("BTCUSDT") is readers.get_symbol_sync("BTCUSDT")
    finally:
        readers.reset()
    assert subscriber_threads() == []
