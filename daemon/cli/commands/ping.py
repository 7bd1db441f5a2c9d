"""``symbold ping``: can we reach Redis, and how fast."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from daemon import exitcodes

if TYPE_CHECKING:
    from daemon.config.loader import Config


NAME = "ping"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        NAME,
        parents=[common],
        help="check that Redis answers",
        description="Connect to the configured Redis (redacted URL and where it came from), "
        "time a few PINGs and print the server's version and role. Exit 0 reachable, 69 "
        "unreachable, 78 refused credentials.",
    )
    p.add_argument("--count", type=int, default=5, help="PINGs to time (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=handle)


def handle(config: Config, args: argparse.Namespace) -> int:
    import msgspec

    from daemon.aio import run_async
    from daemon.ops.ping import ping

    report = run_async(ping(config.connection, count=args.count))
    if args.json:
        out: dict[str, Any] = {
            "url": report.redacted_url,
            "source": report.source,
            "mode": report.mode,
            "ok": report.error_kind is None,
        }
        if report.error_kind is None:
            out |= {
                "server": report.server,
                "version": report.version,
                "role": report.role,
                "min_ms": round(report.min_ms or 0.0, 3),
                "median_ms": round(report.median_ms or 0.0, 3),
            }
            if report.mode == "cluster":
                out |= {"cluster_state": report.cluster_state, "nodes": list(report.nodes)}
            elif report.mode == "sentinel":
                out["primary"] = report.primary
        else:
            out |= {"error_kind": report.error_kind, "error": report.error}
        print(msgspec.json.encode(out).decode())
    else:
        print(f"redis:   {report.redacted_url} (from {report.source})")
        if report.error_kind is None:
            print(f"server:  {report.server} {report.version}, role {report.role}")
            print(
                f"latency: min {report.min_ms:.3f} ms, median {report.median_ms:.3f} ms "
                f"over {len(report.latencies_ms)} PINGs"
            )
        else:
            what = "authentication failed" if report.error_kind == "auth" else "unreachable"
            print(f"symbold: redis {what}: {report.error}", file=sys.stderr)
    if report.problem is not None:
        return exitcodes.for_problem(report.problem.kind)
    return exitcodes.OK
