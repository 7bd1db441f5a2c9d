"""Secrets never reach a log line or a traceback, from our code or from redis-py's."""

from __future__ import annotations

import io
import sys

import pytest
import redis

from daemon import redaction
from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import RedisSettings
from daemon.logs import configure_logging, get_logger, scrubbed_excepthook
from daemon.redis.clients import ConnectionConfig
from tests.support.redis_server import RedisServer, free_port

SECRET = "xK9-very-secret-pw"


@pytest.mark.parametrize("fmt", ["json", "console", "journald"])
async def test_failing_connection_logs_and_traceback_hide_password(
    redis_factory: type[RedisServer], fmt: str
) -> None:
    server = redis_factory(password="the-right-one").start()
    stream = io.StringIO()
    for url_text in (
        f"redis://:{SECRET}@127.0.0.1:{server.port}/0",  # wrong password
        f"redis://user:{SECRET}@127.0.0.1:{free_port()}/0",  # nothing listening
    ):
        url = parse_redis_url(url_text, "$REDIS_URL")
        # the scrubber knows the literal secret only in the first round: the URL pattern alone
        # must be enough in the second
        configure_logging("debug", fmt, stream=stream, environ={}, secrets=url.secrets())
        config = ConnectionConfig(url=url, settings=RedisSettings(retry_attempts=1))
        client = config.make_async()
        log = get_logger("test")
        try:
            await client.ping()
        except redis.RedisError:
            log.exception("redis.unavailable", url=url_text, client=repr(client))
        finally:
            await client.aclose()
        redaction.clear_secrets()
    text = stream.getvalue()
    assert "redis.unavailable" in text
    assert "Traceback" in text or "traceback" in text or "exception" in text
    assert SECRET not in text


def test_scrubber_masks_urls_inside_free_text_and_exceptions() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream, environ={})
    log = get_logger("test")
    try:
        raise RuntimeError(f"cannot reach redis://:{SECRET}@db:6379/0 now")
    except RuntimeError:
        log.exception("boom", detail=f"url was rediss://u:{SECRET}@h/0?password={SECRET}")
    assert SECRET not in stream.getvalue()
    assert "redis://:***@db:6379/0" in stream.getvalue()


def test_registered_literal_secret_is_masked_anywhere() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream, environ={}, secrets=[SECRET])
    get_logger("test").info("odd", where=f"AUTH {SECRET}", nested={"k": [SECRET]})
    assert SECRET not in stream.getvalue()


def test_stdlib_library_logs_are_scrubbed_too() -> None:
    import logging

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream, environ={})
    logging.getLogger("some.library").warning("connecting to redis://:%s@h:1/0", SECRET)
    assert SECRET not in stream.getvalue()
    assert "some.library" in stream.getvalue()


def test_excepthook_scrubs_uncaught_tracebacks() -> None:
    stream = io.StringIO()
    hook = scrubbed_excepthook(stream)
    try:
        raise ValueError(f"redis://:{SECRET}@h/0")
    except ValueError:
        hook(*sys.exc_info())  # type: ignore[arg-type]
    assert "Traceback" in stream.getvalue()
    assert SECRET not in stream.getvalue()


def test_journald_format_has_priority_prefix_and_one_line_per_event() -> None:
    stream = io.StringIO()
    configure_logging("debug", "journald", stream=stream, environ={})
    log = get_logger("test")
    log.info("refresh.ok", market="spot")
    log.warning("refresh.rejected")
    try:
        raise RuntimeError("x")
    except RuntimeError:
        log.exception("refresh.failed")
    lines = stream.getvalue().splitlines()
    assert [line[:3] for line in lines] == ["<6>", "<4>", "<3>"]
    assert "Traceback" in lines[2]  # the traceback stays in the same entry


def test_loaded_settings_repr_leaves_out_the_environment() -> None:
    # `Loaded` keeps the environment the URL resolution saw (REDIS_URL and its password).
    from daemon.config.loader import load_config

    config = load_config(environ={"REDIS_URL": f"redis://:{SECRET}@127.0.0.1:6390/0"})
    assert config.url.password == SECRET  # it was read...
    assert SECRET not in repr(config.loaded)  # ...and is not shown
    assert SECRET not in repr(config)
