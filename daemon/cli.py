"""The ``symbold`` command line: parse flags, load settings once, hand them to a command.

Exit codes: the one table in :mod:`daemon.exitcodes` (printed by ``symbold --help``); a Redis
failure's code follows from :func:`daemon.redis.errors.classify`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import msgspec

from daemon import __version__, exitcodes
from daemon.config.loader import Config, load_config
from daemon.config.settings import MARKETS, ConfigError, MarketName, redacted_tree
from daemon.contract.keys import keys_for
from daemon.logs import configure_logging, get_logger, scrub_text, scrubbed_excepthook
from daemon.ops.health import judge_freshness
from daemon.ops.ping import ping
from daemon.ops.status import format_status, read_status
from daemon.redaction import redact_one_url, register_secret
from daemon.redis.errors import RECOVERABLE, ProblemKind, classify
from daemon.refresh.cycle import CycleResult
from daemon.refresh.oneshot import refresh_markets, run_async
from daemon.service.lifecycle import Service

T = TypeVar("T")

EPILOG = f"""\
exit codes:
{exitcodes.help_text()}

environment:
  REDIS_URL, CELERY_BROKER_URL   Redis URL when [redis] url is not set (in that order)
  SYMBOLD_REDIS_URL, SYMBOLD_LOG_LEVEL, SYMBOLD_LOG_FORMAT, SYMBOLD_KEY_PREFIX,
  SYMBOLD_<MARKET>_ENABLED, SYMBOLD_<MARKET>_BASE_URLS, SYMBOLD_<MARKET>_INTERVAL
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (EX_USAGE) instead of argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(exitcodes.USAGE, f"{self.prog}: error: {message}\n")


def _common_options() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="TOML settings file (default: /etc/symbold/config.toml if it exists)",
    )
    common.add_argument("--redis-url", default=argparse.SUPPRESS, help="Redis URL (secret)")
    common.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        default=argparse.SUPPRESS,
    )
    common.add_argument(
        "--log-format", choices=("auto", "console", "json", "journald"), default=argparse.SUPPRESS
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = _Parser(
        prog="symbold",
        description="Keeps Binance trading-symbol metadata warm in Redis.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"symbold {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    p_ping = sub.add_parser("ping", parents=[common], help="check that Redis answers")
    p_ping.add_argument("--count", type=int, default=5, help="PINGs to time (default 5)")
    p_ping.add_argument("--json", action="store_true", help="print one JSON object")
    p_ping.set_defaults(handler=cmd_ping)

    p_config = sub.add_parser("config", parents=[common], help="inspect settings")
    config_sub = p_config.add_subparsers(
        dest="config_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    p_check = config_sub.add_parser(
        "check", parents=[common], help="validate and print the effective settings"
    )
    p_check.set_defaults(handler=cmd_config_check)

    p_run = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    p_run.set_defaults(handler=cmd_run)

    p_refresh = sub.add_parser(
        "refresh",
        parents=[common],
        help="one refresh cycle now (exit 0 current, 1 upstream failed, 75 held back; see below)",
    )
    p_refresh.add_argument(
        "--market", choices=MARKETS, action="append", help="market (repeatable; default: enabled)"
    )
    p_refresh.set_defaults(handler=cmd_refresh)

    p_enqueue = sub.add_parser(
        "enqueue", parents=[common], help="send one Celery task by name (needs symbold[celery])"
    )
    p_enqueue.add_argument("task", help="task name, e.g. symbold.refresh_symbols")
    p_enqueue.add_argument("--args", default="[]", help="JSON array of positional arguments")
    p_enqueue.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    p_enqueue.set_defaults(handler=cmd_enqueue)

    p_status = sub.add_parser("status", parents=[common], help="what Redis holds, per market")
    p_status.add_argument("--market", choices=MARKETS, action="append")
    p_status.add_argument("--json", action="store_true", help="print one JSON object")
    p_status.add_argument(
        "--check",
        action="store_true",
        help="exit 0 when every market is fresh (younger than health.max_age), 1 when stale",
    )
    p_status.set_defaults(handler=cmd_status)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "redis.url": getattr(args, "redis_url", None),
        "log.level": getattr(args, "log_level", None),
        "log.format": getattr(args, "log_format", None),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "count", 1) < 1:
        parser.error("--count must be at least 1")
    try:
        config = load_config(getattr(args, "config", None), overrides=_overrides(args))
    except ConfigError as err:
        # Whatever in a rejected URL could be a password stays masked in what follows.
        register_secret(*err.secrets)
        print(f"symbold: configuration error: {scrub_text(str(err))}", file=sys.stderr)
        return exitcodes.CONFIG
    settings = config.settings
    configure_logging(settings.log.level, settings.log.format, secrets=config.secrets())
    sys.excepthook = scrubbed_excepthook()
    handler: Callable[[Config, argparse.Namespace], int] = args.handler
    try:
        return handler(config, args)
    except ConfigError as err:
        print(f"symbold: configuration error: {scrub_text(str(err))}", file=sys.stderr)
        return exitcodes.CONFIG
    except KeyboardInterrupt:
        return 130


def cmd_ping(config: Config, args: argparse.Namespace) -> int:
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


def cmd_config_check(config: Config, args: argparse.Namespace) -> int:
    url = config.url
    header = {
        "config_file": str(config.config_path) if config.config_path else None,
        "redis_url": url.redacted,
        "redis_url_source": url.source,
    }
    body = {"effective": header, "settings": redacted_tree(config.settings, redact_one_url)}
    print(msgspec.json.format(msgspec.json.encode(body), indent=2).decode())
    return exitcodes.OK


def log_startup(config: Config) -> None:
    get_logger().info(
        "config.loaded",
        config_file=str(config.config_path) if config.config_path else None,
        **{f"redis_{k}": v for k, v in config.url.describe().items()},
    )


def _markets(config: Config, chosen: list[MarketName] | None) -> list[MarketName]:
    if chosen:
        return list(dict.fromkeys(chosen))
    enabled = list(config.settings.markets.enabled())
    if not enabled:
        raise ConfigError("markets: no market is enabled; set markets.<name>.enabled = true")
    return enabled


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    log_startup(config)
    # A reload repeats the same layers: the file again, the environment and flags as they were.
    return run_async(Service.from_config(config, reload=config.reload).run())


def cmd_refresh(config: Config, args: argparse.Namespace) -> int:
    results = run_async(
        refresh_markets(
            config.settings, config.url, _markets(config, args.market), config.connection
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
        codes.append(refresh_exit_code(result))
    return exitcodes.worst(*codes)


def refresh_exit_code(result: CycleResult) -> int:
    """A Redis problem by its kind (78, 69, 65); held back (a guard, a stored ban, another
    leader, a refresh already running) 75; an upstream failure 1; current 0."""
    if result.ok:
        return exitcodes.OK
    if result.problem is not None:
        return exitcodes.for_problem(result.problem)
    if result.outcome in ("rejected", "skipped"):
        return exitcodes.TEMPFAIL
    return exitcodes.FAILURE


async def _status(config: Config, markets: list[MarketName]) -> list[Any]:
    client = config.connection.make_async(decode=False)
    try:
        return [await read_status(client, keys_for(config.settings, m)) for m in markets]
    finally:
        await client.aclose()


# How a one-line error names each kind of Redis problem.
_LABEL = {
    ProblemKind.CONFIGURATION: "auth",
    ProblemKind.UNAVAILABLE: "unreachable",
    ProblemKind.DATA: "data error",
}


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    try:
        statuses = run_async(_status(config, _markets(config, args.market)))
    except RECOVERABLE as exc:
        problem = classify(exc)
        print(f"symbold: redis {_LABEL[problem.kind]}: {problem.message}", file=sys.stderr)
        return exitcodes.for_problem(problem.kind)
    now = time.time()
    max_age = config.settings.health.max_age
    verdicts = [judge_freshness(st.market, st.refreshed_at, max_age, now) for st in statuses]
    if args.json:
        body = {
            st.market: st.to_builtins() | {"fresh": v.fresh}
            for st, v in zip(statuses, verdicts, strict=True)
        }
        print(msgspec.json.encode(body).decode())
    else:
        print(format_status(statuses, now))
    if args.check:
        stale = [v.reason for v in verdicts if not v.fresh]
        if stale:
            print("stale: " + "; ".join(stale), file=sys.stderr)
            return exitcodes.FAILURE
    return exitcodes.OK


def cmd_enqueue(config: Config, args: argparse.Namespace) -> int:
    try:
        task_args = msgspec.json.decode(args.args)
        task_kwargs = msgspec.json.decode(args.kwargs)
    except msgspec.DecodeError as err:
        print(f"symbold: --args/--kwargs is not JSON: {err}", file=sys.stderr)
        return exitcodes.USAGE
    if not isinstance(task_args, list) or not isinstance(task_kwargs, dict):
        print("symbold: --args must be a JSON array and --kwargs a JSON object", file=sys.stderr)
        return exitcodes.USAGE
    from daemon.celery_interop.enqueue import CeleryMissing, TaskSender

    celery = config.settings.celery
    sender = TaskSender(celery.broker_url or config.url.url, celery)
    try:
        task_id = sender.send_blocking(args.task, task_args, task_kwargs)
    except CeleryMissing as err:
        print(f"symbold: {err}", file=sys.stderr)
        return exitcodes.CONFIG
    except Exception as err:  # noqa: BLE001 - kombu raises many types for an unreachable broker
        print(f"symbold: broker unreachable: {scrub_text(str(err))}", file=sys.stderr)
        return exitcodes.UNAVAILABLE
    finally:
        sender.close()
    print(f"sent {args.task} as {task_id} to queue {celery.queue}")
    return exitcodes.OK
