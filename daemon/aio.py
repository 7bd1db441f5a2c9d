"""Running a coroutine from synchronous code: uvloop when installed, else asyncio's default
loop. A base module with no imports of its own, so the read-only commands (``status``,
``ping``) and the Celery task can use it without loading the refresh machinery (aiohttp)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a new event loop and return its result."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
