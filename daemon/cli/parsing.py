"""Pieces every command's parser shares: the argparse subclass, the common options, the
handler type and the market selection."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
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
        self.print_usage(sys.stderr)
        self.exit(exitcodes.USAGE, f"{self.prog}: error: {message}\n")


def common_options() -> Parser:
    """Options every command takes (and the top level too)."""
    common = Parser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="TOML settings file (default: /etc/symbold/config.toml if it exists)",
    )
    common.add_argument(
        "--redis-url",
        default=argparse.SUPPRESS,
        help="Redis URL; a password here is visible in the process list: prefer the config "
        "file, a credential file or REDIS_URL",
    )
    common.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        default=argparse.SUPPRESS,
    )
    common.add_argument(
        "--log-format", choices=("auto", "console", "json", "journald"), default=argparse.SUPPRESS
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
