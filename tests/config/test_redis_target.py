"""URL resolution order, normalization and redaction (pure: no server needed)."""

from __future__ import annotations

import pytest

from daemon.config.redis_target import parse_redis_url, redact_url, resolve_redis_url
from daemon.config.settings import ConfigError


def test_resolution_order() -> None:
    env = {"REDIS_URL": "redis://r:1/1", "CELERY_BROKER_URL": "redis://c:2/2"}
    explicit = resolve_redis_url("redis://e:3/3", "file /etc/x.toml", env)
    assert (explicit.host, explicit.source) == ("e", "file /etc/x.toml")
    from_env = resolve_redis_url("", None, env)
    assert (from_env.host, from_env.db, from_env.source) == ("r", 1, "$REDIS_URL")
    celery = resolve_redis_url("", None, {"CELERY_BROKER_URL": "redis://c:2/2"})
    assert (celery.host, celery.port, celery.source) == ("c", 2, "$CELERY_BROKER_URL")
    default = resolve_redis_url("", None, {})
    assert (default.host, default.port, default.db, default.source) == (
        "localhost",
        6379,
        0,
        "default",
    )
    # an empty REDIS_URL counts as unset
    assert resolve_redis_url("", None, {"REDIS_URL": "", **env} | {"REDIS_URL": ""}).host == "c"


def test_celery_tls_spelling_is_normalized() -> None:
    url = parse_redis_url("rediss://:pw@h:6380/0?ssl_cert_reqs=CERT_REQUIRED", "x")
    assert "ssl_cert_reqs=required" in url.url
    assert url.tls_verify == "required"
    assert parse_redis_url("rediss://h:6380/0?ssl_cert_reqs=CERT_NONE", "x").tls_verify == "none"
    assert parse_redis_url("rediss://h:6380/0", "x").tls_verify == "required"
    with pytest.raises(ConfigError, match="ssl_cert_reqs"):
        parse_redis_url("rediss://h/0?ssl_cert_reqs=maybe", "x")


def test_unix_socket_url() -> None:
    url = parse_redis_url("unix:///run/redis.sock?db=3", "x")
    assert (url.scheme, url.path, url.db, url.port) == ("unix", "/run/redis.sock", 3, None)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        # Celery's sentinel:// takes /db; the service name is a setting (master_name)
        ("sentinel://:pw@h:26379/mymaster", "takes /db (a number)"),
        ("sentinels://:pw@h:26379", "does not support"),
        ("amqp://guest:guest@h//", "expected one of redis://, rediss://, unix://"),
        ("localhost:6379", "expected one of"),
        ("redis://h:notaport/0", "malformed"),
        ("redis://h:6379/abc", "not a number"),
        ("redis:///0", "names no host"),
    ],
)
def test_bad_urls_are_config_errors_without_secrets(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_redis_url(url, "$REDIS_URL")
    assert fragment in str(info.value)
    assert "$REDIS_URL" in str(info.value)
    assert "guest:guest" not in str(info.value)
    assert ":pw@" not in str(info.value)


def test_describe_never_holds_the_password() -> None:
    url = parse_redis_url("redis://alice:s3cr%40t@h:6379/2", "$REDIS_URL")
    described = url.describe()
    assert described == {
        "scheme": "redis",
        "source": "$REDIS_URL",
        "db": 2,
        "host": "h",
        "port": 6379,
        "username": "alice",
        "password": "set",
    }
    assert url.password == "s3cr@t"
    assert "s3cr" not in url.redacted
    assert set(url.secrets()) == {"s3cr@t", "s3cr%40t"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:pw123@h:1/0", "redis://:***@h:1/0"),
        ("redis://user:pw123@h:1/0", "redis://user:***@h:1/0"),
        ("rediss://tokenonly@h/0", "rediss://***@h/0"),
        ("redis://h:1/0", "redis://h:1/0"),
        ("see amqp://u:p4ss@q// and redis://:x9y@r/0", "see amqp://u:***@q// and redis://:***@r/0"),
        ("https://x/y?a=1&password=hunter2&b=2", "https://x/y?a=1&password=***&b=2"),
        ("redis://h/0?token=abc", "redis://h/0?token=***"),
    ],
)
def test_redact_url(text: str, expected: str) -> None:
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    "url",
    [
        "redis://:00@0;#@127.0.0.1:6379/0",  # a ';' then a '#' in the password
        "redis://:a;b/c@127.0.0.1:6379/0",
        "sentinel://:p;w#x@h1:26379;sentinel://h2:26379/0",
    ],
)
def test_a_raw_separator_in_a_password_is_refused_even_after_a_semicolon(url: str) -> None:
    # A ';' inside the password must not split the URL into parts that each look whole:
    # the '@' after the host part is still seen, and the message shows nothing of the URL.
    with pytest.raises(ConfigError, match="must be percent-encoded") as caught:
        parse_redis_url(url, "test")
    assert "@" not in str(caught.value).split(":", 1)[1].split("must be")[1]


def test_a_semicolon_inside_a_password_stays_in_its_url() -> None:
    url = parse_redis_url("sentinel://:p%3Bw@h1:26379;sentinel://:p;w@h2:26380/0", "test")
    assert url.password == "p;w"  # Celery: the master's password, on every part
    assert {node[1] for node in url.nodes} == {26379, 26380}
