"""Parse flags, load the configuration once, run one command, return its exit code.

Exit codes: the one table in :mod:`daemon.exitcodes` (printed by ``symbold --help``); a Redis
failure's code follows from :func:`daemon.redis.errors.classify`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from daemon import __version__, exitcodes
from daemon.cli.commands import budget, config_check, enqueue, ping, refresh, run, status
from daemon.cli.parsing import Handler, Parser, common_options

EPILOG = f"""\
exit codes:
{exitcodes.help_text()}

environment:
  REDIS_URL, CELERY_BROKER_URL   Redis URL when [redis] url is not set (in that order)
  SYMBOLD_REDIS_URL, SYMBOLD_LOG_LEVEL, SYMBOLD_LOG_FORMAT, SYMBOLD_KEY_PREFIX,
  SYMBOLD_<MARKET>_ENABLED, SYMBOLD_<MARKET>_BASE_URLS, SYMBOLD_<MARKET>_INTERVAL
"""

# In the order `symbold --help` lists them.
COMMANDS = (run, refresh, status, budget, ping, config_check, enqueue)


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = Parser(
        prog="symbold",
        description="Keeps Binance trading-symbol metadata warm in Redis.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"symbold {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for command in COMMANDS:
        command.register(sub, common)
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

    from daemon.config.loader import load_config
    from daemon.config.settings import ConfigError
    from daemon.logs import configure_logging, scrubbed_excepthook
    from daemon.redaction import register_secret, scrub_text

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
    handler: Handler = args.handler
    try:
        return handler(config, args)
    except ConfigError as err:
        print(f"symbold: configuration error: {scrub_text(str(err))}", file=sys.stderr)
        return exitcodes.CONFIG
    except KeyboardInterrupt:
        return 130
