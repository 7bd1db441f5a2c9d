"""``symbold refresh``: one refresh cycle now, outside the daemon."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from daemon import exitcodes
from daemon.cli.parsing import add_market_option, chosen_markets

if TYPE_CHECKING:
    from daemon.config.loader import Config
    from daemon.refresh.cycle import CycleResult


NAME = "refresh"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        NAME,
        parents=[common],
        help="one refresh cycle now (exit 0 current, 1 upstream failed, 75 held back; see below)",
        description="Fetch, check and publish each market once, as the daemon's cycle does, "
        "without taking the lease. Exit 0 when every market is current, 75 when one was held "
        "back (a guard, a stored ban, another leader), 1 when the upstream failed, and 65, 69 "
        "or 78 when Redis is the problem.",
    )
    add_market_option(p, "market (repeatable; default: enabled)")
    p.set_defaults(handler=handle)


def handle(config: Config, args: argparse.Namespace) -> int:
    from daemon.refresh.oneshot import refresh_markets, run_async

    results = run_async(
        refresh_markets(
            config.settings, config.url, chosen_markets(config, args.market), config.connection
        )
    )
    codes = [exitcodes.OK]
    for result in results:
        if result.ok:
            print(
                f"{result.market}: {result.outcome}, {result.listed} listed of {result.count}, "
                f"version {result.version}, {result.duration_ms:.0f} ms"
            )
            continue
        print(f"{result.market}: {result.outcome}: {result.reason}", file=sys.stderr)
        codes.append(exit_code(result))
    return exitcodes.worst(*codes)


def exit_code(result: CycleResult) -> int:
    """A Redis problem by its kind (78, 69, 65); held back (a guard, a stored ban, another
    leader, a refresh already running) 75; an upstream failure 1; current 0."""
    if result.ok:
        return exitcodes.OK
    if result.problem is not None:
        return exitcodes.for_problem(result.problem)
    if result.outcome in ("rejected", "skipped"):
        return exitcodes.TEMPFAIL
    return exitcodes.FAILURE
