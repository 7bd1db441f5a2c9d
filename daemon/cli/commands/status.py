"""``symbold status``: what Redis holds for each market, and whether it is fresh."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from daemon import exitcodes
from daemon.cli.parsing import add_market_option, chosen_markets

if TYPE_CHECKING:
    from daemon.config.loader import Config
    from daemon.config.settings import MarketName
    from daemon.ops.status import MarketStatus


NAME = "status"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        NAME,
        parents=[common],
        help="what Redis holds, per market",
        description="Per market: age of the snapshot and whether it is fresh (younger than "
        "health.max_age), symbol counts, version, whether a fallback is served, counters, last "
        "error, ban deadline, the weight budget's windows, the leading daemon and its next "
        "refresh. Read-only.",
    )
    add_market_option(p, "market (repeatable; default: enabled)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--check",
        action="store_true",
        help="exit 0 when every market is fresh (younger than health.max_age), 1 when stale",
    )
    p.set_defaults(handler=handle)


async def _read(config: Config, markets: list[MarketName]) -> list[MarketStatus]:
    import logging

    # Reading the budget logs which limits it found (info); here that would only clutter the
    # output (and break --json on stdout). Warnings still show.
    logging.getLogger("symbold.budget").setLevel(logging.WARNING)

    import msgspec

    from daemon.contract.keys import keys_for
    from daemon.ops.status import read_budget, read_status

    client = config.connection.make_async(decode=False)
    try:
        out = []
        for m in markets:
            keys = keys_for(config.settings, m)
            st = await read_status(client, keys)
            budget = await read_budget(client, config.connection, config.settings, keys)
            out.append(msgspec.structs.replace(st, budget=budget))
        return out
    finally:
        await client.aclose()


def handle(config: Config, args: argparse.Namespace) -> int:
    import msgspec

    from daemon.aio import run_async
    from daemon.cli.failures import redis_failure
    from daemon.ops.status import format_status, status_json, verdicts
    from daemon.redis.errors import RECOVERABLE

    try:
        statuses = run_async(_read(config, chosen_markets(config, args.market)))
    except RECOVERABLE as exc:
        return redis_failure(exc)
    now = time.time()
    max_age = config.settings.health.max_age
    if args.json:
        print(msgspec.json.encode(status_json(statuses, max_age, now)).decode())
    else:
        print(format_status(statuses, max_age, now))
    if args.check:
        stale = [v.reason for v in verdicts(statuses, max_age, now) if not v.fresh]
        if stale:
            print("stale: " + "; ".join(stale), file=sys.stderr)
            return exitcodes.FAILURE
    return exitcodes.OK
