"""Idle RSS of `symbold run`, measured as the README's memory section reports it (a tool, not a
test: memory is never asserted in timed tests).

    .venv/bin/python -m tests.ops.idle_rss [--health] [--runs 5] [--idle 5] [--symbold PATH]

Each run: a private redis-server, the shipped defaults plus one line pointing the spot market at
the recorded 2023-09 payload (a ``file:`` source; ``--health`` also enables [health]), a fresh
``symbold run`` until its first snapshot is published, then ``--idle`` quiet seconds; prints
VmRSS, RssAnon and RssFile from /proc/PID/status, and the median and spread over the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.support.daemon_proc import clean_env
from tests.support.fixtures import FIXTURES
from tests.support.redis_server import RedisServer, free_port

PAYLOAD = FIXTURES / "spot-exchangeinfo-2023-09.json"


def _status_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0])
    return fields


def measure(symbold: str, redis_url: str, health: bool, idle: float) -> dict[str, int]:
    """One daemon from start to its first snapshot plus `idle` seconds; its memory in kB."""
    with tempfile.TemporaryDirectory(prefix="symbold-rss-") as tmp:
        config = Path(tmp) / "config.toml"
        lines = ["[markets.spot]", f'base_urls = ["file://{PAYLOAD}"]']
        if health:
            lines += ["[health]", "enabled = true", f"port = {free_port()}"]
        config.write_text("\n".join(lines) + "\n")
        env = clean_env({"REDIS_URL": redis_url, "SYMBOLD_LOG_FORMAT": "json"})
        proc = subprocess.Popen(
            [symbold, "run", "--config", str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("{") and json.loads(line).get("event") == "refresh.ok":
                    break
            else:
                raise SystemExit(f"symbold run exited ({proc.wait()}) before its first snapshot")
            # Keep reading so the daemon never blocks on a full pipe while it idles.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            time.sleep(idle)
            return _status_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def tool_parser(doc: str | None, runs: int) -> argparse.ArgumentParser:
    """The options every measuring tool here shares: ``--runs`` and which ``--symbold``."""
    if not PAYLOAD.is_file():
        raise SystemExit(f"recorded payload {PAYLOAD} is absent")
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument(
        "--symbold",
        default=str(Path(sys.executable).with_name("symbold")),
        help="the symbold to measure (default: this venv's; e.g. a wheel installed elsewhere)",
    )
    return parser


def main() -> None:
    parser = tool_parser(__doc__, runs=5)
    parser.add_argument("--health", action="store_true", help="also enable [health]")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds after the snapshot")
    args = parser.parse_args()
    rss = []
    with RedisServer() as server:
        for _ in range(args.runs):
            server.client().flushdb()
            kb = measure(args.symbold, server.url, args.health, args.idle)
            rss.append(kb["VmRSS"] / 1024)
            print(" ".join(f"{k} {v / 1024:.1f} MB" for k, v in kb.items()), flush=True)
    print(
        f"VmRSS over {len(rss)} runs: median {statistics.median(rss):.1f} MB, "
        f"min {min(rss):.1f}, max {max(rss):.1f}"
    )


if __name__ == "__main__":
    main()
