"""No fragment of a Redis password reaches any output, whatever characters it holds (issue 16).

A property test: hypothesis draws passwords over the printable characters, the URL carries each
one percent-encoded and as written, and `config check`, `ping`, `status` and `refresh` run
in-process (logs at debug level) against a real redis-server whose password is set to it, plus
a logged exception and a crash traceback that quote the URL. No substring of four or more
characters of the password may appear in what they print.
"""

from __future__ import annotations

import contextlib
import io
import string
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import cli, redaction
from daemon.logs import get_logger, scrubbed_excepthook
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)

# Printable characters a person can type into a URL: space included, other whitespace not.
ALPHABET = "".join(c for c in string.printable if c not in "\t\n\r\x0b\x0c")
REFERENCE = "Reference-password"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer(password=REFERENCE) as started:
        yield started


@pytest.fixture(scope="module")
def config_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "symbold.toml"
        # An upstream that refuses at once: refresh reaches Redis, then fails upstream and logs.
        path.write_text('[markets.spot]\nbase_urls = ["http://127.0.0.1:9"]\n')
        yield path


def _run(argv: list[str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    hook = sys.excepthook
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main(argv)
            # What a crash or a logged exception that quotes the URL would print.
            url = argv[argv.index("--redis-url") + 1]
            try:
                raise ConnectionError(f"cannot connect to {url}")
            except ConnectionError as exc:
                get_logger("test").exception("redis.crash", url=url)
                scrubbed_excepthook(err)(type(exc), exc, exc.__traceback__)
    finally:
        sys.excepthook = hook
        redaction.clear_secrets()
    return out.getvalue() + err.getvalue()


def _outputs(url: str, config_file: Path) -> str:
    common = ["--redis-url", url, "--log-level", "debug", "--log-format", "json"]
    commands = [
        ["config", "check", *common],
        ["ping", "--count", "1", *common],
        ["status", *common],
        ["refresh", "--market", "spot", "--config", str(config_file), *common],
    ]
    return "".join(_run(argv) for argv in commands)


def _set_password(admin: redis.Redis, password: str) -> None:
    admin.config_set("requirepass", password)


def _leaks(password: str, output: str, reference: str) -> list[str]:
    """Substrings of four characters of `password` in `output` that are not ordinary text the
    commands print anyway (found in the reference run with another password); a run of
    digits and dots only could be a latency figure and is not counted."""
    grams = {password[i : i + 4] for i in range(len(password) - 3)}
    return sorted(
        g for g in grams if g in output and g not in reference and not set(g) <= set("0123456789.")
    )


@pytest.fixture(scope="module")
def reference(server: RedisServer, config_file: Path) -> str:
    right = f"redis://:{REFERENCE}@127.0.0.1:{server.port}/0"
    wrong = f"redis://:Another-password@127.0.0.1:{server.port}/0"
    return _outputs(right, config_file) + _outputs(wrong, config_file)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(password=st.text(alphabet=ALPHABET, min_size=6, max_size=24))
def test_no_fragment_of_the_password_is_printed(
    server: RedisServer, config_file: Path, reference: str, password: str
) -> None:
    admin = server.client()
    try:
        for written in (quote(password, safe=""), password):
            # The server's password is what the URL means, so a correct URL connects.
            _set_password(admin, unquote(written))
            url = f"redis://:{written}@127.0.0.1:{server.port}/0"
            output = _outputs(url, config_file)
            assert not _leaks(password, output, reference), (written, output)
    finally:
        _set_password(admin, REFERENCE)
        admin.close()


def test_the_leak_check_can_fail(reference: str) -> None:
    """The check itself finds a password printed whole or in part."""
    secret = "q7#Vx@p/Lm%20z"
    assert _leaks(secret, f"url redis://:***@{secret[5:]}", reference)
    assert not _leaks(secret, "url redis://:***@h:1/0", reference)
