"""Pieces every command's parser shares: the argparse subclass, the common options, the
handler type and the market selection."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from daemon import exitcodes

if TYPE_CHECKING:
    from daemon.config.loader import Config
    from daemon.config.settings import MarketName

Handler = Callable[["Config", argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (EX_USAGE) instead of argparse's 2."""

    def error(self, message: str) -> NoReturn:
        from daemon.logs import write_stderr

        # Through write_stderr: under systemd a bad ExecStart= line is filed at error.
        write_stderr(f"{self.format_usage()}{self.prog}: error: {message}")
        sys.exit(exitcodes.USAGE)


# Every common option takes a value (tests/cli/test_parsing.py checks this against the parser):
# what lets main() see which command a command line names without parsing it.
COMMON_VALUE_OPTIONS = ("--config", "--redis-url", "--log-level", "--log-format")


def named_command(argv: Sequence[str], names: Collection[str]) -> str | None:
    """The command `argv` names, when it is plain to see: the first token after the common
    options (each with its value as the next token). None for anything else (no command yet,
    -h, --version, ``--opt=value``, an abbreviated option): then every command's parser is
    built and argparse decides, as it always does."""
    tokens = iter(argv)
    for token in tokens:
        if token in COMMON_VALUE_OPTIONS:
            next(tokens, None)
            continue
        return token if token in names else None
    return None


def common_options() -> Parser:
    """Options every command takes (and the top level too)."""
    common = Parser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="TOML settings file (default: $SYMBOLD_CONFIG, else /etc/symbold/config.toml if "
        "it exists)",
    )
    common.add_argument(
        "--redis-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="Redis URL, overriding every other source; a password here is visible in the "
        "process list (a warning is logged): prefer [redis] url_file, the systemd credential "
        "or REDIS_URL",
    )
    common.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        default=argparse.SUPPRESS,
        help="symbold's own log level (other libraries: [log] libraries); default info",
    )
    common.add_argument(
        "--log-format",
        choices=("auto", "console", "json", "journald"),
        default=argparse.SUPPRESS,
        help="auto: journald when the log stream is the journal, console on a terminal, else json",
    )
    return common


def add_market_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    from daemon.config.settings import MARKETS

    parser.add_argument("--market", choices=MARKETS, action="append", help=help_text)


def chosen_markets(config: Config, chosen: list[MarketName] | None) -> list[MarketName]:
    """The markets named on the command line, else every enabled one (ConfigError if none)."""
    from daemon.config.settings import ConfigError

    if chosen:
        return list(dict.fromkeys(chosen))
    enabled = list(config.settings.markets.enabled())
    if not enabled:
        raise ConfigError("markets: no market is enabled; set markets.<name>.enabled = true")
    return enabled
