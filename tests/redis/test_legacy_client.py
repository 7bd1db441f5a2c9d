"""The legacy module: same names, same behaviour, the old faults fixed."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from daemon import redis_client
from daemon.config.settings import load_settings
from daemon.logs import configure_logging
from tests.support.redis_server import RedisServer, free_port


@pytest.fixture
def legacy_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("SYMBOLD_REDIS_URL", raising=False)
    redis_client.configure(load_settings(use_default_path=False))
    return redis_url


def capture_logs() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream, environ={})
    return stream


def events(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_sync_helpers_round_trip(legacy_env: str) -> None:
    value = {"symbols": ["BTCUSDT", "币安人生USDT"], "n": 2}
    assert redis_client.write_json_sync("k", value) is True
    assert redis_client.read_json_sync("k") == value
    # responses are decoded as UTF-8 (legacy behaviour)
    assert isinstance(redis_client.get_redis_sync().get("k"), str)
    assert redis_client.incr_sync("c") == 1
    assert redis_client.incr_sync("c", 5) == 6


def test_write_json_with_expiry(legacy_env: str) -> None:
    assert redis_client.write_json_sync("k", [1], ex=100)
    ttl = redis_client.get_redis_sync().ttl("k")
    assert 0 < ttl <= 100


def test_read_missing_or_invalid_warns_and_returns_none(legacy_env: str) -> None:
    stream = capture_logs()
    assert redis_client.read_json_sync("missing") is None
    redis_client.get_redis_sync().set("bad", "{not json")
    assert redis_client.read_json_sync("bad") is None
    names = [(e["event"], e["level"]) for e in events(stream)]
    assert ("redis.key_missing", "warning") in names
    assert ("redis.json_invalid", "warning") in names


def test_write_unencodable_value_returns_false(legacy_env: str) -> None:
    stream = capture_logs()
    assert redis_client.write_json_sync("k", {"x": object()}) is False
    assert any(e["event"] == "redis.write_failed" for e in events(stream))


def test_async_twins_across_two_event_loops(legacy_env: str) -> None:
    async def work(n: int) -> object:
        assert await redis_client.write_json("ak", {"n": n})
        assert await redis_client.incr("ac") == n
        value = await redis_client.read_json("ak")
        await redis_client.close_async()
        return value

    assert asyncio.run(work(1)) == {"n": 1}
    assert asyncio.run(work(2)) == {"n": 2}


def test_helpers_with_redis_down_log_without_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Sup3rSecretPw"
    monkeypatch.setenv("REDIS_URL", f"redis://:{secret}@127.0.0.1:{free_port()}/0")
    loaded = load_settings(use_default_path=False)
    redis_client.configure(loaded)
    stream = io.StringIO()
    from daemon.config.redis_target import resolve_redis_url

    url = resolve_redis_url("", None, loaded.environ)
    configure_logging("debug", "json", stream=stream, environ={}, secrets=url.secrets())
    assert redis_client.write_json_sync("k", 1) is False
    assert redis_client.read_json_sync("k") is None
    assert redis_client.incr_sync("c") is None

    async def async_side() -> tuple[object, object, object]:
        out = (
            await redis_client.write_json("k", 1),
            await redis_client.read_json("k"),
            await redis_client.incr("c"),
        )
        await redis_client.close_async()
        return out

    assert asyncio.run(async_side()) == (False, None, None)
    text = stream.getvalue()
    names = [e["event"] for e in events(stream)]
    assert names.count("redis.write_failed") == 2
    assert names.count("redis.read_failed") == 2
    assert names.count("redis.incr_failed") == 2
    assert "redis.configured" in names
    assert secret not in text
    assert "127.0.0.1" in text  # the host is logged, the password is not


def test_helpers_recover_after_restart(
    redis_factory: type[RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = redis_factory().start()
    monkeypatch.setenv("REDIS_URL", server.url)
    redis_client.configure(load_settings(use_default_path=False))
    assert redis_client.write_json_sync("k", 1)
    server.restart()
    assert redis_client.read_json_sync("k") is None  # empty after restart, but no error
    assert redis_client.write_json_sync("k", 2)
    assert redis_client.read_json_sync("k") == 2


def test_key_helpers() -> None:
    redis_client.configure(load_settings(environ={}, use_default_path=False))
    assert redis_client.symbols_key() == "symbold:{spot}:symbols"
    assert redis_client.last_good_key("usdm") == "symbold:{usdm}:last_good"
    assert redis_client.refreshed_at_key() == "symbold:{spot}:refreshed_at"
    assert redis_client.metrics_key() == "symbold:{spot}:metrics"
    assert redis_client.SYMBOLS_KEY == "symbold:{spot}:symbols"


def test_key_helpers_follow_configured_names(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "c.toml"
    path.write_text(
        '[redis]\nkey_prefix = "bot"\n[markets.spot.keys]\nsymbols = "binance:symbols"\n'
    )
    redis_client.configure(load_settings(path, environ={}))
    assert redis_client.symbols_key() == "binance:symbols"
    assert redis_client.last_good_key() == "bot:{spot}:last_good"
