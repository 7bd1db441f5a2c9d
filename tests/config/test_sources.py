"""Where the config file and the Redis URL come from: ``SYMBOLD_CONFIG``, the systemd
credential and ``[redis] url_file``, so an operator's CLI finds the service's Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon import exitcodes
from daemon.config.loader import load_config
from daemon.config.settings import ConfigError
from tests.support.daemon_proc import run_cli
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)

SECRET = "UrlFile-s3cret-pw"


def test_symbold_config_names_the_file_and_config_flag_wins(tmp_path: Path) -> None:
    from_env = tmp_path / "env.toml"
    from_env.write_text('[redis]\nkey_prefix = "from-env"\n')
    from_flag = tmp_path / "flag.toml"
    from_flag.write_text('[redis]\nkey_prefix = "from-flag"\n')

    config = load_config(environ={"SYMBOLD_CONFIG": str(from_env)})
    assert config.config_path == from_env
    assert config.settings.redis.key_prefix == "from-env"
    assert config.reload().settings.redis.key_prefix == "from-env"  # SIGHUP reads it again

    config = load_config(from_flag, environ={"SYMBOLD_CONFIG": str(from_env)})
    assert config.settings.redis.key_prefix == "from-flag"

    with pytest.raises(ConfigError, match=r"missing\.toml does not exist.*\$SYMBOLD_CONFIG"):
        load_config(environ={"SYMBOLD_CONFIG": str(tmp_path / "missing.toml")})


def _url_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "redis_url"
    path.write_text(url + "\n")
    path.chmod(0o600)
    return path


def test_redis_url_order_setting_credential_url_file_env(tmp_path: Path) -> None:
    url_file = _url_file(tmp_path, "redis://:pw-file@file-host:6379/1")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "redis_url").write_text("redis://:pw-cred@cred-host:6379/2\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[redis]\nurl_file = "{url_file}"\n')
    env = {"REDIS_URL": "redis://env-host:6379/3", "CELERY_BROKER_URL": "redis://celery:6379/4"}

    def source(environ: dict[str, str], **overrides: str) -> tuple[str, str]:
        config = load_config(cfg, environ=environ, overrides=overrides)
        return config.url.host, config.url.source

    # url_file beats REDIS_URL and CELERY_BROKER_URL ...
    assert source(env) == ("file-host", f"url_file {url_file}")
    # ... the credential (inside the unit) beats url_file ...
    assert source({**env, "CREDENTIALS_DIRECTORY": str(creds)}) == (
        "cred-host",
        "credential redis_url",
    )
    # ... and an explicit setting beats both.
    assert source(
        {**env, "CREDENTIALS_DIRECTORY": str(creds), "SYMBOLD_REDIS_URL": "redis://set:6379/0"}
    ) == ("set", "$SYMBOLD_REDIS_URL")
    assert source(env, **{"redis.url": "redis://flag:6379/0"}) == ("flag", "command line")
    # Without url_file, REDIS_URL is next.
    cfg.write_text("")
    assert source(env) == ("env-host", "$REDIS_URL")
    # SYMBOLD_REDIS_URL_FILE sets it from the environment.
    assert source({**env, "SYMBOLD_REDIS_URL_FILE": str(url_file)})[0] == "file-host"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such file"),
        (b"", "is empty"),
        (f"redis://:{SECRET}@h:6379/0\nredis://:{SECRET}@h:6379/1\n".encode(), "one line"),
        (f"redis://:{SECRET}@h:6379/0\xff".encode("latin-1"), "not UTF-8"),
        ("dir", "is a directory"),
    ],
)
def test_unusable_url_file_is_a_config_error_naming_key_and_path(
    tmp_path: Path, content: bytes | str | None, fragment: str
) -> None:
    path = tmp_path / "redis_url"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[redis]\nurl_file = "{path}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(cfg, environ={})
    message = str(info.value)
    assert message.startswith(f"redis.url_file (in file {cfg}): ")
    assert str(path) in message
    assert fragment in message
    assert SECRET not in message

    # The same through the CLI: exit 78, the key and the path, never the content.
    result = run_cli("config", "check", "--config", str(cfg))
    assert result.returncode == exitcodes.CONFIG
    assert "redis.url_file" in result.stderr
    assert str(path) in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_url_file_must_be_absolute(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[redis]\nurl_file = "redis_url"\n')
    with pytest.raises(ConfigError, match=r"redis\.url_file"):
        load_config(cfg, environ={})


def test_operator_cli_finds_the_service_redis_through_symbold_config(
    tmp_path: Path, redis_factory: type[RedisServer]
) -> None:
    """The deployment of the README: the URL (password included) only in the credential file,
    the config naming it as url_file, SYMBOLD_CONFIG in the operator's environment. `status`,
    `ping` and `config check` reach that Redis, not the default one."""
    server = redis_factory(password=SECRET).start()
    url_file = _url_file(tmp_path, server.url)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[redis]\nurl_file = "{url_file}"\n')
    env = {"SYMBOLD_CONFIG": str(cfg)}

    ping = run_cli("ping", "--count", "1", "--json", env=env)
    assert ping.returncode == exitcodes.OK, ping.stderr
    out = json.loads(ping.stdout)
    assert out["source"] == f"url_file {url_file}"
    assert out["url"] == f"redis://:***@127.0.0.1:{server.port}/0"

    # Reached and read: no snapshot there yet, so --check says stale (1), not unreachable (69).
    status = run_cli("status", "--check", env=env)
    assert status.returncode == exitcodes.FAILURE, status.stdout + status.stderr
    assert "no snapshot yet" in status.stderr

    check = run_cli("config", "check", env=env)
    assert check.returncode == exitcodes.OK, check.stderr
    effective = json.loads(check.stdout)["effective"]
    assert effective["config_file"] == str(cfg)
    assert effective["redis_url_source"] == f"url_file {url_file}"
    for result in (ping, status, check):
        assert SECRET not in result.stdout + result.stderr
