"""The parser built for one named command parses a command line exactly as the parser of
every command does; anything less plain falls back to building them all."""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Sequence

import pytest

from daemon.cli.main import COMMANDS, build_parser
from daemon.cli.parsing import COMMON_VALUE_OPTIONS, common_options, named_command

pytestmark = pytest.mark.timeout(30)

NAMES = {command.NAME for command in COMMANDS}

LINES: list[list[str]] = [
    ["status"],
    ["status", "--json", "--check", "--market", "spot", "--market", "usdm"],
    ["--config", "status", "status"],  # a config file named "status"
    ["--redis-url", "redis://h:6379/1", "--log-level", "debug", "refresh", "--market", "coinm"],
    ["--log-format", "json", "config", "check"],
    ["show", "BTCUSDT", "--json"],
    ["check", "BTCUSDT", "BUY", "LIMIT", "--quantity", "1", "--price", "2", "--fix"],
    ["run", "--config", "/etc/x.toml"],
    ["ping"],
    ["enqueue"],
    ["budget"],
]
BAD_LINES: list[list[str]] = [
    ["status", "--bogus"],
    ["status", "extra"],
    ["--log-level", "loud", "status"],
    ["nosuch"],
    [],
    ["config"],
    ["check", "BTCUSDT"],
]


def outcome(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[object, str]:
    """What parsing `argv` gives: the namespace, or the exit code and what was printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            return vars(parser.parse_args(argv)), ""
        except SystemExit as exc:
            return exc.code, out.getvalue() + err.getvalue()


def test_every_common_option_takes_a_value() -> None:
    options = {s for a in common_options()._actions for s in a.option_strings}
    assert options == set(COMMON_VALUE_OPTIONS)
    assert all(a.nargs != 0 for a in common_options()._actions)


@pytest.mark.parametrize("argv", LINES + BAD_LINES, ids=lambda a: " ".join(a) or "(none)")
def test_the_parser_of_one_command_parses_as_the_parser_of_all(argv: list[str]) -> None:
    assert outcome(build_parser(argv), argv) == outcome(build_parser(), argv)


def test_which_command_a_line_names() -> None:
    assert named_command(["status"], NAMES) == "status"
    assert named_command(["--config", "status", "ping"], NAMES) == "ping"
    assert named_command(["config", "check"], NAMES) == "config"
    # Not plain: every parser is built and argparse decides.
    for argv in (["-h"], ["--version"], ["--config=x.toml", "status"], ["--conf", "x", "status"]):
        assert named_command(argv, NAMES) is None
    assert named_command([], NAMES) is None
    assert named_command(["nosuch"], NAMES) is None


def test_a_named_command_builds_only_its_own_parser() -> None:
    sub = next(a for a in build_parser(["status"])._actions if a.dest == "command")
    assert isinstance(sub, argparse._SubParsersAction)
    assert set(sub.choices) == {"status"}
    everything = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(everything.choices) == NAMES
