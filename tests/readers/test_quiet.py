"""A library inside the bot's processes prints nothing: no output configured on import or use."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Imports and uses the readers the way a bot does, including the paths that log (settings
# resolution, the events channel lost and regained: a warning that Python's last-resort
# handler would print to stderr if the package had no NullHandler).
PROGRAM = textwrap.dedent(
    """
    import asyncio, sys
    import redis
    from daemon import readers
    from daemon.config.settings import load_settings
    from daemon.readers import AsyncSymbolReader, NearCacheOptions, SymbolReader

    url = sys.argv[1]
    fast = NearCacheOptions(ping_interval=0.2, silence_limit=1.0, retry_min=0.01, retry_max=0.1)
    readers.configure(load_settings(environ={"REDIS_URL": url}, use_default_path=False))
    assert readers.get_symbol_sync("BTCUSDT") is not None
    readers.reset()
    with SymbolReader.from_url(url, near_cache=fast) as reader:
        assert reader.wait_until(lambda s: s.live)
        assert reader.get_symbol("ETHUSDT") is not None
        admin = redis.Redis.from_url(url)
        admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert reader.wait_until(lambda s: s.drops >= 1)
        assert reader.wait_until(lambda s: s.live)
        admin.close()

    async def main():
        async with AsyncSymbolReader.from_url(url, near_cache=fast) as reader:
            await reader.wait_until(lambda s: s.live)
            assert await reader.get_symbol("ETHUSDT") is not None

    asyncio.run(main())
    """
)


@pytest.mark.timeout(60)
def test_readers_print_nothing(redis_url: str) -> None:
    from tests.readers.sample_snapshots import V1, Writer

    Writer(redis_url).commit(V1)
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, redis_url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""
