"""Settings: layering order, validation errors that name the key, and the example file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
import pytest

from daemon.config.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_env() -> None:
    loaded = load_settings(environ={}, use_default_path=False)
    s = loaded.settings
    assert loaded.config_path is None
    assert s.redis.url == ""
    assert s.markets.spot.enabled is True
    assert s.markets.usdm.enabled is False
    assert s.markets.spot.list_statuses == ("TRADING",)
    assert s.markets.spot.quote_priority == ("USDT", "FDUSD", "USDC", "BTC", "ETH", "BNB")
    assert s.markets.spot.base_urls[0] == "https://api.binance.com"
    assert s.markets.spot.base_urls[-1] == "https://data-api.binance.vision"
    assert s.upstream.max_body_bytes == 64 * 1024 * 1024
    assert s.guards.max_shrink == 0.2
    assert s.guards.confirm_shrink == 3


def test_layers_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[log]\nlevel = "warning"\nformat = "json"\n[redis]\nkey_prefix = "fromfile"\n'
        "[markets.usdm]\nenabled = true\ninterval = 60\n",
    )
    env = {"SYMBOLD_LOG_LEVEL": "error", "SYMBOLD_SPOT_INTERVAL": "42.5"}
    loaded = load_settings(path, environ=env, overrides={"log.level": "debug"})
    s = loaded.settings
    assert s.log.level == "debug"  # flag beats env beats file
    assert s.log.format == "json"  # file beats default
    assert s.redis.key_prefix == "fromfile"
    assert s.markets.spot.interval == 42.5
    assert s.markets.usdm.enabled is True
    assert s.markets.usdm.interval == 60
    # a partial [markets.usdm] table keeps usdm's own defaults for the rest
    assert s.markets.usdm.path == "/fapi/v1/exchangeInfo"
    assert list(s.markets.enabled()) == ["spot", "usdm"]


def test_redis_url_origin_is_recorded(tmp_path: Path) -> None:
    path = write(tmp_path, '[redis]\nurl = "redis://file:6379/0"\n')
    assert load_settings(path, environ={}).redis_url_origin == f"file {path}"
    loaded = load_settings(path, environ={"SYMBOLD_REDIS_URL": "redis://env:1/0"})
    assert loaded.redis_url_origin == "$SYMBOLD_REDIS_URL"
    assert loaded.settings.redis.url == "redis://env:1/0"
    loaded = load_settings(path, environ={}, overrides={"redis.url": "redis://flag:1/0"})
    assert loaded.redis_url_origin == "command line"
    assert load_settings(environ={}, use_default_path=False).redis_url_origin is None


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[redis]\nportt = 1\n", "redis.portt", "unknown key"),
        ("bogus = 1\n", "bogus", "unknown key"),
        ('[redis]\nsocket_timeout = "fast"\n', "redis.socket_timeout", "Expected `float`"),
        ("[redis]\nsocket_timeout = -1\n", "redis.socket_timeout", "> 0"),
        ("[guards]\nmax_shrink = 1.5\n", "guards.max_shrink", "<= 1"),
        ('[log]\nlevel = "loud"\n', "log.level", "Invalid enum value"),
        ("[markets.spot]\nbase_urls = []\n", "markets.spot.base_urls", "length >= 1"),
        ('[markets.spot.keys]\nsymbols = "a b"\n', "markets.spot.keys.symbols", "matching regex"),
        ("[markets.futures]\nenabled = true\n", "markets.futures", "unknown key"),
    ],
)
def test_bad_values_name_key_and_file(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    message = str(info.value)
    assert message.startswith(key), message
    assert str(path) in message
    assert fragment in message


def test_bad_env_value_names_variable() -> None:
    with pytest.raises(
        ConfigError, match=r"markets\.spot\.enabled \(from \$SYMBOLD_SPOT_ENABLED\)"
    ):
        load_settings(environ={"SYMBOLD_SPOT_ENABLED": "maybe"}, use_default_path=False)
    with pytest.raises(ConfigError, match=r"log\.level \(in \$SYMBOLD_LOG_LEVEL\)"):
        load_settings(environ={"SYMBOLD_LOG_LEVEL": "loud"}, use_default_path=False)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})
    bad = write(tmp_path, "[redis\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(bad, environ={})


def test_settings_are_frozen() -> None:
    s = load_settings(environ={}, use_default_path=False).settings
    with pytest.raises(AttributeError):
        s.redis.url = "redis://x"  # type: ignore[misc]


def test_example_config_lists_every_key_with_its_default() -> None:
    """config.toml at the top level documents every key, at its default value."""
    example = tomllib.loads((ROOT / "config.toml").read_text())
    defaults = msgspec.to_builtins(Settings())

    def flat(tree: dict[str, object], prefix: str = "") -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            elif isinstance(value, tuple):
                out[f"{prefix}{key}"] = list(value)
            else:
                out[f"{prefix}{key}"] = value
        return out

    # key overrides default to "unset" (None), which TOML cannot spell: they are commented out.
    expected = {k: v for k, v in flat(defaults).items() if v is not None}
    assert flat(example) == expected
    # and the example is itself a valid config
    load_settings(ROOT / "config.toml", environ={})
