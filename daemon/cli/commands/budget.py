"""``symbold budget``: the shared request-weight budget as Redis holds it, per market."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from daemon import exitcodes
from daemon.cli.parsing import add_market_option, chosen_markets

if TYPE_CHECKING:
    from daemon.budget import BudgetUsage
    from daemon.config.loader import Config
    from daemon.config.settings import MarketName

Reading = tuple["BudgetUsage", dict[str, int]]


NAME = "budget"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        NAME,
        parents=[common],
        help="live use of the shared Binance weight budget",
        description="Per market: each current window's used / limit (and the caps for normal "
        "and high priority), when it resets, the waits, denials and 429/418 reports counted "
        "by every process, and the ban deadline. Read-only. Exit 0, 69 Redis unreachable, "
        "78 refused credentials.",
    )
    add_market_option(p, "market (repeatable; default: enabled)")
    p.add_argument("--json", action="store_true", help="print one JSON object per reading")
    p.add_argument(
        "--watch", action="store_true", help="redraw every second until Ctrl-C (or --count)"
    )
    p.add_argument(
        "--count",
        type=int,
        default=argparse.SUPPRESS,
        help="with --watch: stop after N readings (default: until interrupted)",
    )
    p.set_defaults(handler=handle)


async def _read_all(budgets: list[Any]) -> list[Reading]:
    return [(await b.usage(), await b.shared_stats()) for b in budgets]


def to_builtins(readings: list[Reading]) -> dict[str, Any]:
    """One JSON object: per market the windows, counters and ban deadline (epoch seconds)."""
    out: dict[str, Any] = {}
    for usage, shared in readings:
        out[usage.market] = {
            "now": round(usage.now, 3),
            "ban_until": usage.ban_until,
            "limits_from": usage.source,
            "windows": [
                {
                    "type": w.kind,
                    "interval": w.interval,
                    "account": w.account,
                    "used": w.used,
                    "limit": w.limit,
                    "cap_normal": w.cap_normal,
                    "cap_high": w.cap_high,
                    "reset_in": round(max(0.0, w.reset_at - usage.now), 3),
                }
                for w in usage.windows
            ],
            "counters": shared,
        }
    return out


def format_readings(readings: list[Reading]) -> str:
    """The human table: one block per market."""
    lines: list[str] = []
    for usage, shared in readings:
        ban = "none"
        if usage.ban_until is not None:
            ban = f"until {usage.ban_until:.3f} (in {usage.ban_until - usage.now:.0f} s)"
        lines.append(f"{usage.market}  (limits: {usage.source})  ban: {ban}")
        lines.append(
            f"  {'window':<22} {'used':>8} / {'limit':<8} {'normal':>8} {'high':>8}  reset in"
        )
        for w in usage.windows:
            name = f"{w.kind} {w.interval}" + (f" [{w.account}]" if w.account else "")
            pct = 100.0 * w.used / w.limit if w.limit else 0.0
            lines.append(
                f"  {name:<22} {w.used:>8} / {w.limit:<8} {w.cap_normal:>8} {w.cap_high:>8}"
                f"  {max(0.0, w.reset_at - usage.now):6.1f} s  ({pct:.0f}%)"
            )
        lines.append(
            "  all processes: "
            + ", ".join(f"{name} {value}" for name, value in sorted(shared.items()))
        )
    return "\n".join(lines)


async def _session(config: Config, markets: list[MarketName], args: argparse.Namespace) -> int:
    import asyncio

    import msgspec

    from daemon.budget import AsyncWeightBudget

    budgets = [AsyncWeightBudget(config.connection, config.settings, market=m) for m in markets]
    count: int | None = getattr(args, "count", None)  # main() refuses a count below 1
    first = time.monotonic()
    try:
        shown = 0
        while True:
            readings = await _read_all(budgets)
            if args.json:
                print(msgspec.json.encode(to_builtins(readings)).decode(), flush=True)
            else:
                if args.watch and sys.stdout.isatty():
                    print("\x1b[H\x1b[2J", end="")
                print(format_readings(readings), flush=True)
            shown += 1
            if not args.watch or (count is not None and shown >= count):
                return exitcodes.OK
            if not args.json and not sys.stdout.isatty():
                print(flush=True)
            await asyncio.sleep(max(0.0, first + shown - time.monotonic()))  # 1 s apart
    finally:
        for b in budgets:
            await b.aclose()


def handle(config: Config, args: argparse.Namespace) -> int:
    import logging

    from daemon.aio import run_async
    from daemon.budget import BudgetUnavailable
    from daemon.cli.failures import redis_failure
    from daemon.redis.errors import RECOVERABLE

    markets = chosen_markets(config, args.market)
    # The budget's info lines (limits reread) would interleave with the table or the JSON.
    logging.getLogger("symbold.budget").setLevel(logging.WARNING)
    caught: tuple[type[BaseException], ...] = (BudgetUnavailable, *RECOVERABLE)
    try:
        return run_async(_session(config, markets, args))
    except caught as exc:
        cause = exc.__cause__ if isinstance(exc, BudgetUnavailable) else exc
        return redis_failure(cause if cause is not None else exc, "budget")
