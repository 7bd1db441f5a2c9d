"""Wall and CPU time of the operator commands, as an operator's shell sees them (a tool, not a
test: time is never asserted in tests).

    .venv/bin/python -m tests.ops.cli_time [--runs 21] [--symbold PATH]

A private redis-server gets one spot snapshot (``symbold refresh`` on the recorded 2023-09
payload through a ``file:`` source); then each command runs `--runs` times, the commands
interleaved so that a busy moment of the machine hits them alike. Printed per command: the
median, fastest and slowest wall time, and the median CPU time (user + system of the child).
Bytecode caches are allowed (``PYTHONDONTWRITEBYTECODE`` is dropped from the child's
environment), as in an installed wheel.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.ops.idle_rss import PAYLOAD, tool_parser
from tests.support.daemon_proc import clean_env
from tests.support.redis_server import RedisServer

COMMANDS: dict[str, list[str]] = {
    "symbold --help": ["--help"],
    "symbold status": ["status"],
    "symbold status --check": ["status", "--check"],
    "symbold config check": ["config", "check"],
}
# The floor under `status`: the same interpreter importing only the libraries any Redis client
# of ours needs (redis-py imports its asyncio client, and with it asyncio and ssl, whatever is
# used). What `status` takes beyond it is symbold's own.
FLOOR = ("floor: import redis, msgspec, uvloop", ["-c", "import redis, msgspec, uvloop"])


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `argv` (which must exit 0)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    args = tool_parser(__doc__, runs=21).parse_args()
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="symbold-cli-") as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(f'[markets.spot]\nbase_urls = ["file://{PAYLOAD}"]\n')
        env = clean_env({"REDIS_URL": server.url, "SYMBOLD_CONFIG": str(config)})
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run(
            [args.symbold, "refresh"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        python = str(Path(args.symbold).with_name("python"))
        commands = {name: [args.symbold, *argv] for name, argv in COMMANDS.items()}
        commands[FLOOR[0]] = [python, *FLOOR[1]]
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for argv in commands.values():  # one warm-up each (bytecode caches, page cache)
            timed(argv, env)
        for _ in range(args.runs):
            for name, argv in commands.items():
                results[name].append(timed(argv, env))
    load = os.getloadavg()[0]
    print(f"{args.symbold}: {args.runs} runs each, interleaved; load average at the end {load:.2f}")
    print(f"{'command':<38} {'wall median':>11} {'fastest':>8} {'slowest':>8} {'CPU median':>10}")
    for name, runs in results.items():
        walls = [w for w, _ in runs]
        cpus = [c for _, c in runs]
        print(
            f"{name:<38} {statistics.median(walls) * 1000:>8.0f} ms {min(walls) * 1000:>5.0f} ms "
            f"{max(walls) * 1000:>5.0f} ms {statistics.median(cpus) * 1000:>7.0f} ms"
        )


if __name__ == "__main__":
    main()
