"""Which commands a test's own redis-server ran: SLOWLOG with a zero threshold logs them all."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import redis.asyncio


@contextlib.asynccontextmanager
async def logged(r: redis.asyncio.Redis) -> AsyncIterator[list[list[bytes]]]:
    """Every command the server runs inside the block, as ``[name, args...]`` in order (filled
    in when the block ends); the server's slowlog settings are put back after."""
    old = await r.config_get("slowlog-*")
    await r.config_set("slowlog-log-slower-than", 0)
    await r.config_set("slowlog-max-len", 10_000)
    await r.slowlog_reset()
    seen: list[list[bytes]] = []
    try:
        yield seen
        entries = await r.execute_command("SLOWLOG", "GET", 10_000)
        seen.extend([bytes(a) for a in entry[3]] for entry in reversed(entries))
    finally:
        for name, value in old.items():
            await r.config_set(name, value)


def on(seen: list[list[bytes]], command: bytes, key: str) -> int:
    """How many times `command` ran on `key` (first argument)."""
    return sum(1 for c in seen if c[0].upper() == command and c[1:2] == [key.encode()])
