"""`symbold ping` and `symbold config check` as a user runs them: real processes, exit codes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from daemon import exitcodes
from daemon.config.settings import Settings
from daemon.contract.keys import keys_for
from tests.support.daemon_proc import run_cli
from tests.support.redis_server import RedisServer, free_port

SECRET = "Pa55w0rd-never-logged"


def test_ping_ok_prints_redacted_url_source_version_and_latency(redis_server: RedisServer) -> None:
    result = run_cli("ping", "--count", "3", env={"REDIS_URL": redis_server.url})
    assert result.returncode == 0, result.stderr
    assert f"redis://127.0.0.1:{redis_server.port}/0 (from $REDIS_URL)" in result.stdout
    assert "role master" in result.stdout
    assert "over 3 PINGs" in result.stdout


def test_ping_json(redis_server: RedisServer) -> None:
    result = run_cli("ping", "--json", env={"CELERY_BROKER_URL": redis_server.url})
    assert result.returncode == 0
    out = json.loads(result.stdout)
    assert out["ok"] is True
    assert out["source"] == "$CELERY_BROKER_URL"
    assert out["min_ms"] <= out["median_ms"]
    assert out["version"]


def test_ping_unreachable_exits_69_without_secret() -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    result = run_cli("ping", "--redis-url", url)
    assert result.returncode == 69
    warning, reason = result.stderr.strip().splitlines()  # a one-line reason, no traceback
    assert json.loads(warning)["event"] == "config.password_in_argv"
    assert "unreachable" in reason
    assert SECRET not in result.stdout + result.stderr
    assert "(from command line)" in result.stdout


def test_ping_wrong_password_exits_78(redis_factory: type[RedisServer]) -> None:
    server = redis_factory(password="right-password").start()
    url = f"redis://:{SECRET}@127.0.0.1:{server.port}/0"
    result = run_cli("ping", env={"REDIS_URL": url})
    assert result.returncode == 78, result.stdout + result.stderr
    assert "authentication failed" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_ping_with_password_ok(redis_factory: type[RedisServer]) -> None:
    server = redis_factory(password=SECRET).start()
    result = run_cli("ping", env={"REDIS_URL": server.url})
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert ":***@" in result.stdout


def test_unsupported_scheme_exits_78() -> None:
    result = run_cli("ping", env={"REDIS_URL": f"sentinel://:{SECRET}@h:26379/mymaster"})
    assert result.returncode == 78
    assert "sentinel://" in result.stderr
    assert SECRET not in result.stderr


def test_config_check_prints_effective_settings_redacted(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[redis]\nurl = "redis://bot:{SECRET}@10.0.0.5:6379/2"\n[log]\nlevel = "debug"\n'
    )
    result = run_cli("config", "check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["effective"]["config_file"] == str(path)
    assert out["effective"]["redis_url"] == "redis://bot:***@10.0.0.5:6379/2"
    assert out["effective"]["redis_url_source"] == f"file {path}"
    assert out["settings"]["log"]["level"] == "debug"
    assert out["settings"]["redis"]["url"] == "redis://bot:***@10.0.0.5:6379/2"
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[redis]\nsocket_timout = 1\n", "redis.socket_timout"),
        ("[markets.spot]\ninterval = 0\n", "markets.spot.interval"),
        ("[redis\n", "invalid TOML"),
    ],
)
def test_config_check_bad_file_exits_78_naming_key_and_file(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = run_cli("config", "check", "--config", str(path))
    assert result.returncode == 78
    assert fragment in result.stderr
    assert str(path) in result.stderr


def test_flags_after_subcommand_and_env_override() -> None:
    result = run_cli(
        "config", "check", "--log-level", "error", env={"SYMBOLD_LOG_FORMAT": "console"}
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["settings"]["log"] == {"level": "error", "format": "console", "libraries": "info"}


def test_help_documents_exit_codes() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for code in ("69", "75", "78"):
        assert f"  {code}  " in result.stdout


# -- exit codes come from one table and one Redis-error classification (issue 14 item 6) --------


def test_refresh_with_a_wrong_password_exits_78_like_ping(
    redis_factory: type[RedisServer],
) -> None:
    server = redis_factory(password="right-password").start()
    url = f"redis://:{SECRET}@127.0.0.1:{server.port}/0"
    result = run_cli("refresh", "--market", "spot", env={"REDIS_URL": url})
    assert result.returncode == 78, result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_refresh_held_back_by_a_stored_ban_exits_75(redis_url: str) -> None:
    import redis as redis_py

    ban_key = keys_for(Settings(), "spot").ban_until
    with redis_py.Redis.from_url(redis_url) as direct:
        direct.set(ban_key, str(time.time() + 600))
    # The ban is checked before any request, so the unreachable upstream is never asked.
    result = run_cli(
        "refresh",
        "--market",
        "spot",
        env={"REDIS_URL": redis_url, "SYMBOLD_SPOT_BASE_URLS": "http://127.0.0.1:9"},
    )
    assert result.returncode == 75, result.stdout + result.stderr
    assert "rate-limit ban" in result.stderr


@pytest.mark.parametrize(
    "args",
    [("ping", "--no-such-flag"), ("ping", "--count", "0"), ("status", "--market", "nope"), ()],
)
def test_usage_errors_exit_64(args: tuple[str, ...]) -> None:
    result = run_cli(*args)
    assert result.returncode == 64, result.stdout + result.stderr
    assert "usage:" in result.stderr


def test_help_prints_the_exit_code_table() -> None:
    result = run_cli("--help")
    for code, meaning in exitcodes.TABLE:
        assert f"  {code:<3} {meaning}" in result.stdout


def test_readme_command_list_matches_help_and_exit_code_table() -> None:
    """README "Commands" names exactly the commands `symbold --help` lists, in that order, and
    its exit-code table has every code of the one table."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("## Commands\n", 1)[1].split("```")[1]
    documented = [line.split()[1] for line in block.splitlines() if line.startswith("symbold ")]
    helped = run_cli("--help").stdout
    listed = re.findall(r"^    ([a-z]+) ", helped, flags=re.MULTILINE)
    assert listed == [
        "run", "refresh", "status", "show", "check", "budget", "ping", "config", "enqueue"
    ]  # fmt: skip
    assert documented == listed
    for code, _ in exitcodes.TABLE:
        assert f"\n| {code} | " in readme
