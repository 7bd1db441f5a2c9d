"""Parse flags, load the configuration once, run one command, return its exit code.

Exit codes: the one table in :mod:`daemon.exitcodes` (printed by ``symbold --help``); a Redis
failure's code follows from :func:`daemon.redis.errors.classify`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from daemon import __version__, exitcodes
from daemon.cli.commands import (
    budget,
    check,
    config_check,
    enqueue,
    ping,
    refresh,
    run,
    show,
    status,
)
from daemon.cli.parsing import Handler, Parser, common_options, named_command

if TYPE_CHECKING:
    from daemon.config.loader import Config

EPILOG = f"""\
exit codes:
{exitcodes.help_text()}

environment:
  SYMBOLD_CONFIG                 settings file when --config is not given (else
                                 /etc/symbold/config.toml if it exists)
  REDIS_URL, CELERY_BROKER_URL   Redis URL when no setting, credential or url_file gives one
  SYMBOLD_REDIS_URL, SYMBOLD_REDIS_URL_FILE, SYMBOLD_LOG_LEVEL, SYMBOLD_LOG_FORMAT,
  SYMBOLD_KEY_PREFIX, SYMBOLD_CELERY_QUEUE,
  SYMBOLD_<MARKET>_ENABLED, SYMBOLD_<MARKET>_BASE_URLS, SYMBOLD_<MARKET>_INTERVAL

which Redis: [redis] url (file, SYMBOLD_REDIS_URL, --redis-url) > the systemd credential
  ([redis] credential) > [redis] url_file > REDIS_URL > CELERY_BROKER_URL >
  redis://localhost:6379/0. `symbold config check` shows which one won.
"""

# In the order `symbold --help` lists them.
COMMANDS = (run, refresh, status, show, check, budget, ping, config_check, enqueue)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or, given the command line `argv` that plainly names one
    command, of that command only: the others' cost ~1-2 ms each at every start, and parsing
    a command line that names one command never consults another's parser."""
    only = None if argv is None else named_command(argv, {c.NAME for c in COMMANDS})
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
        if only is None or only == command.NAME:
            command.register(sub, common)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "redis.url": getattr(args, "redis_url", None),
        "log.level": getattr(args, "log_level", None),
        "log.format": getattr(args, "log_format", None),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (argparse usage errors exit 64 directly).

    Every way out before the command runs writes one line to stderr that journald files at
    error (``<3>``) when stderr is the journal. ``run`` logs to stdout (the journal under
    systemd); the other commands log to stderr, so their stdout holds only their output.
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "count", 1) < 1:
        parser.error("--count must be at least 1")

    from daemon.config.loader import load_config
    from daemon.config.settings import ConfigError
    from daemon.logs import configure_logging, scrubbed_excepthook, write_stderr
    from daemon.redaction import register_secret

    sys.excepthook = scrubbed_excepthook()
    try:
        config = load_config(getattr(args, "config", None), overrides=_overrides(args))
    except ConfigError as err:
        # Whatever in a rejected URL could be a password stays masked in what follows.
        register_secret(*err.secrets)
        write_stderr(f"symbold: configuration error: {err}")
        return exitcodes.CONFIG
    log = config.settings.log
    daemon = args.command == "run"
    configure_logging(
        log.level,
        log.format,
        secrets=config.secrets(),
        libraries=log.libraries,
        stream=sys.stdout if daemon else sys.stderr,
        # A short command that logs nothing never imports structlog (start-up cost).
        deferred=not daemon,
    )
    _warn_password_in_argv(config)
    handler: Handler = args.handler
    try:
        return handler(config, args)
    except ConfigError as err:
        write_stderr(f"symbold: configuration error: {err}")
        return exitcodes.CONFIG
    except KeyboardInterrupt:
        return 130


def _warn_password_in_argv(config: Config) -> None:
    """Once per process: a password given with --redis-url is readable by every local user
    (ps, /proc/PID/cmdline) for as long as the process runs."""
    url = config.url
    if url.source != "command line" or not (url.password or url.sentinel_password):
        return
    import logging

    # Through stdlib logging: with a deferred pipeline this record is what builds it.
    logging.getLogger("symbold.cli").warning(
        "config.password_in_argv",
        extra={
            "hint": "a password in --redis-url is visible in the process list; put the URL "
            "in [redis] url_file, the systemd credential or REDIS_URL instead"
        },
    )
