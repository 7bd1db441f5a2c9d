"""Under systemd: which stream is the journal, and the priority journald files each line at.

journald reads a line's priority from its sd-daemon ``<N>`` prefix (3 error, 4 warning, 6 info,
the stream's default). These tests run ``symbold`` as a child whose stdout and stderr are one
pipe and whose ``JOURNAL_STREAM`` names that pipe's device:inode, as systemd does, and read the
prefixes; tests/ops/test_real_systemd.py checks what a real journal records.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import exitcodes
from daemon.logs import choose_format, configure_logging, is_journal, write_stderr
from tests.support.daemon_proc import clean_env, run_cli_journal, run_python
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(60)

SECRET = "Journal-s3cret-pw"


@pytest.fixture
def pipe() -> Iterator[tuple[io.TextIOWrapper, str]]:
    """A real pipe's writing end as a text stream, and its ``DEVICE:INODE``."""
    read_fd, write_fd = os.pipe()
    st = os.fstat(write_fd)
    with os.fdopen(read_fd, "rb") as _reader, os.fdopen(write_fd, "w") as writer:
        yield writer, f"{st.st_dev}:{st.st_ino}"


# -- item 9: JOURNAL_STREAM must name this very stream ----------------------------------------


def test_auto_format_is_journald_only_when_journal_stream_names_the_stream(
    pipe: tuple[io.TextIOWrapper, str], tmp_path: Path
) -> None:
    stream, ids = pipe
    assert is_journal(stream, {"JOURNAL_STREAM": ids})
    assert choose_format("auto", {"JOURNAL_STREAM": ids}, stream) == "journald"

    # Inherited from a unit but pointing at another stream: a child whose output was
    # redirected to a file or a pipe must not write journald lines there.
    with (tmp_path / "log").open("w") as elsewhere:
        other = os.fstat(elsewhere.fileno())
        other_ids = f"{other.st_dev}:{other.st_ino}"
        assert is_journal(elsewhere, {"JOURNAL_STREAM": other_ids})
    assert not is_journal(stream, {"JOURNAL_STREAM": other_ids})
    assert choose_format("auto", {"JOURNAL_STREAM": other_ids}, stream) == "json"
    for junk in ("", "8", "a:b", f"{ids}:1"):
        assert choose_format("auto", {"JOURNAL_STREAM": junk}, stream) == "json", junk
    # No descriptor at all (a test's StringIO): never the journal.
    assert choose_format("auto", {"JOURNAL_STREAM": ids}, io.StringIO()) == "json"
    # An explicit format is taken as asked.
    assert choose_format("console", {"JOURNAL_STREAM": ids}, stream) == "console"


def test_write_stderr_prefixes_every_line_only_on_the_journal(
    pipe: tuple[io.TextIOWrapper, str],
) -> None:
    _, ids = pipe
    read_fd, write_fd = os.pipe()
    st = os.fstat(write_fd)
    with os.fdopen(read_fd) as reader, os.fdopen(write_fd, "w") as writer:
        write_stderr(
            "first\nsecond", environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stream=writer
        )
        write_stderr("plain", environ={"JOURNAL_STREAM": ids}, stream=writer)
        write_stderr(
            "warned", 4, environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stream=writer
        )
        writer.close()
        assert reader.read().splitlines() == ["<3>first", "<3>second", "plain", "<4>warned"]


# -- item 2: fatal start-up errors at <= 3, warnings at 4 ------------------------------------


def test_run_with_a_bad_config_is_filed_at_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[redis]\nsocket_timout = 1\n")
    code, lines = run_cli_journal("run", "--config", str(bad))
    assert code == exitcodes.CONFIG
    assert lines, "nothing was written"
    assert all(line.startswith("<3>") for line in lines), lines
    assert "redis.socket_timout" in lines[0]

    # The same failure with JOURNAL_STREAM naming another stream: plain text for a person.
    code, lines = run_cli_journal("run", "--config", str(bad), matching=False)
    assert code == exitcodes.CONFIG
    assert lines[0].startswith("symbold: configuration error: redis.socket_timout")


def test_run_usage_error_is_filed_at_error() -> None:
    code, lines = run_cli_journal("run", "--no-such-flag")
    assert code == exitcodes.USAGE
    assert len(lines) >= 2  # the usage and the message
    assert all(line.startswith("<3>") for line in lines), lines


def test_run_refused_credentials_error_and_argv_warning_priorities(
    redis_factory: type[RedisServer],
) -> None:
    """The service's start-up check: a wrong password is fatal (<3>, exit 78); a password on
    the command line is a warning (<4>). Neither line holds the password."""
    server = redis_factory(password="the-right-one").start()
    url = f"redis://:{SECRET}@127.0.0.1:{server.port}/0"
    code, lines = run_cli_journal(
        "run", "--redis-url", url, env={"SYMBOLD_SPOT_BASE_URLS": "http://127.0.0.1:9"}
    )
    assert code == exitcodes.CONFIG, lines
    assert not any(SECRET in line for line in lines)
    by_event = {}
    for line in lines:
        if line[3:4] == "{":
            by_event[json.loads(line[3:])["event"]] = line[:3]
    assert by_event["config.password_in_argv"] == "<4>", lines
    assert by_event["service.starting"] == "<6>"
    fatal = [line for line in lines if "authentication failed" in line]
    assert fatal, lines
    assert all(line.startswith("<3>") for line in fatal)
    # Every line carries a priority: nothing falls back to the stream's default.
    assert all(line[:1] == "<" and line[2:3] == ">" for line in lines), lines


def test_uncaught_crash_traceback_is_filed_at_critical(tmp_path: Path) -> None:
    """A crash outside the log pipeline: every traceback line at <2>, secrets masked."""
    script = (
        "import sys\n"
        "from daemon.logs import scrubbed_excepthook\n"
        "sys.excepthook = scrubbed_excepthook()\n"
        f"raise RuntimeError('redis://:{SECRET}@h:6379/0 broke')\n"
    )
    read_fd, write_fd = os.pipe()
    st = os.fstat(write_fd)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=write_fd,
        stderr=write_fd,
        env=clean_env({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}),
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as out:
        lines = out.read().splitlines()
    assert proc.wait(timeout=30) == 1
    assert lines[0] == "<2>Traceback (most recent call last):"
    assert all(line.startswith("<2>") for line in lines), lines
    assert not any(SECRET in line for line in lines)


# -- item 11: third-party loggers stay quiet at --log-level debug ----------------------------


def test_library_debug_stays_out_unless_asked() -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream, environ={})
    logging.getLogger("redis.connection").debug("library chatter")
    logging.getLogger("redis.connection").info("library info")
    logging.getLogger("symbold.test").debug("our own debug")
    logging.getLogger("aiohttp.access").info("GET /metrics")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["library info", "our own debug"]

    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream, environ={}, libraries="debug")
    logging.getLogger("redis.connection").debug("library chatter")
    logging.getLogger("aiohttp.access").debug("GET /metrics")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["library chatter", "GET /metrics"]

    # Libraries never log below symbold's own level.
    stream = io.StringIO()
    configure_logging("error", "json", stream=stream, environ={}, libraries="debug")
    logging.getLogger("redis.connection").warning("library warning")
    assert stream.getvalue() == ""


def test_deferred_pipeline_builds_on_the_first_record_only() -> None:
    """A short command that logs nothing never imports structlog; the first record builds the
    same pipeline and is written by it."""
    script = (
        "import io, logging, sys\n"
        "from daemon.logs import configure_logging\n"
        "out = io.StringIO()\n"
        "configure_logging('info', 'json', stream=out, environ={}, deferred=True)\n"
        "logging.getLogger('redis').debug('below the level')\n"
        "assert 'structlog' not in sys.modules, 'built too early'\n"
        "logging.getLogger('symbold.cli').warning('config.x', extra={'hint': 'h'})\n"
        "assert 'structlog' in sys.modules\n"
        "logging.getLogger('symbold.cli').warning('config.y')\n"
        "print(out.getvalue(), end='')\n"
    )
    result = run_python("-c", script)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["event"], e["level"]) for e in lines] == [
        ("config.x", "warning"),
        ("config.y", "warning"),
    ]
    assert lines[0]["hint"] == "h"
