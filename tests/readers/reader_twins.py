"""The sync and async readers behind one synchronous interface, so that one test body runs on
both: `AsyncTwin` drives an AsyncSymbolReader from its own event-loop thread, and
`reader_factory` makes readers of either kind and closes them all."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Collection, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

from daemon.contract.record import SymbolRecord
from daemon.readers import (
    AsyncSymbolReader,
    NearCacheOptions,
    NearCacheStatus,
    SnapshotInfo,
    SymbolReader,
)
from daemon.rules import SymbolRules

T = TypeVar("T")

# Fast enough that losing and regaining the channel takes a fraction of a second.
FAST = NearCacheOptions(ping_interval=0.2, silence_limit=1.0, retry_min=0.01, retry_max=0.1)


class Reader(Protocol):
    def get_symbol(self, name: str, market: str = "spot") -> SymbolRecord | None: ...
    def get_symbols(
        self, market: str = "spot", statuses: Collection[str] | None = None
    ) -> list[SymbolRecord]: ...
    def snapshot_info(self, market: str = "spot") -> SnapshotInfo: ...
    def near_cache_status(self) -> NearCacheStatus: ...
    def wait_until(
        self, predicate: Callable[[NearCacheStatus], bool], timeout: float | None = 5.0
    ) -> bool: ...
    def close(self) -> None: ...


class AsyncTwin:
    """An AsyncSymbolReader running on its own event-loop thread, called synchronously."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="async-twin")
        self.thread.start()
        self.reader = AsyncSymbolReader.from_url(url, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=15)

    def get_symbol(self, name: str, market: str = "spot") -> SymbolRecord | None:
        return self._run(self.reader.get_symbol(name, market))

    def get_symbols(
        self, market: str = "spot", statuses: Collection[str] | None = None
    ) -> list[SymbolRecord]:
        return self._run(self.reader.get_symbols(market, statuses))

    def snapshot_info(self, market: str = "spot") -> SnapshotInfo:
        return self._run(self.reader.snapshot_info(market))

    def get_rules(self, name: str, market: str = "spot") -> SymbolRules | None:
        return self._run(self.reader.get_rules(name, market))

    def near_cache_status(self) -> NearCacheStatus:
        return self.reader.near_cache_status()

    def wait_until(
        self, predicate: Callable[[NearCacheStatus], bool], timeout: float | None = 5.0
    ) -> bool:
        async def wait() -> bool:
            try:
                async with asyncio.timeout(timeout):
                    await self.reader.wait_until(predicate)
            except TimeoutError:
                return False
            return True

        return self._run(wait())

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self._run(self.reader.aclose())

        async def leftovers() -> list[str]:
            me = asyncio.current_task()
            return [t.get_name() for t in asyncio.all_tasks() if t is not me]

        left = self._run(leftovers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        assert left == [], f"tasks left running after aclose(): {left}"


MakeReader = Callable[..., Reader]


@contextlib.contextmanager
def reader_factory(kind: str) -> Iterator[MakeReader]:
    """Builds readers of one kind ("sync", or "async" driven synchronously); closes them all
    on exit. The reader fixtures of this package are built on it."""
    made: list[Reader] = []

    def make(url: str, **kwargs: Any) -> Reader:
        reader: Reader
        if kind == "sync":
            reader = SymbolReader.from_url(url, **kwargs)
        else:
            reader = AsyncTwin(url, **kwargs)
        made.append(reader)
        return reader

    try:
        yield make
    finally:
        for reader in made:
            reader.close()


def live(status: NearCacheStatus) -> bool:
    return status.live


def subscriber_threads() -> list[threading.Thread]:
    """The sync readers' event-subscriber threads running now (in this process)."""
    return [t for t in threading.enumerate() if t.name == "symbold-reader-events"]
