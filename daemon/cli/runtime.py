"""Running a command's coroutine: uvloop when installed, else asyncio's default loop.

Kept apart from :mod:`daemon.refresh.oneshot` (which builds the whole refresh machinery and
imports aiohttp) so the read-only commands (``status``, ``ping``) start without it.
"""

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
