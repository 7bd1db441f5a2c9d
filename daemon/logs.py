"""Logging: structlog in front, one stdlib handler behind, secrets scrubbed on the way out.

Every record, ours or a library's (redis, aiohttp, celery log through stdlib), passes the same
processor chain, and the last step before rendering masks credentials: any URL userinfo or
secret query parameter, and every literal secret registered with :func:`register_secret`
(both from :mod:`daemon.redaction`, the one place that decides what is a secret).
Tracebacks are formatted to text *before* that step so they are scrubbed too.

Formats: ``console`` (a person at a terminal), ``json`` (one object per line), ``journald``
(one line per event with the sd-daemon ``<N>`` priority prefix, so journald files it at the
right level and keeps a traceback in the same entry), ``auto`` (journald when
``JOURNAL_STREAM`` says stdout is the journal, console on a TTY, else JSON).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from daemon.redaction import register_secret, scrub_text

__all__ = [
    "choose_format",
    "configure_logging",
    "get_logger",
    "register_secret",
    "scrub_secrets",
    "scrub_text",
    "scrubbed_excepthook",
]

# syslog priorities used by sd-daemon(3) prefixes.
_PRIORITY = {
    "critical": 2,
    "exception": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "info": 6,
    "debug": 7,
    "notset": 7,
}


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_scrub_value(v) for v in value]
    if isinstance(value, BaseException):
        return scrub_text(f"{type(value).__name__}: {value}")
    # Anything else is rendered with str() by every renderer; scrub that text now.
    return scrub_text(str(value))


def scrub_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the backstop that keeps secrets out of every rendered line."""
    for key, value in list(event_dict.items()):
        if key.startswith("_"):
            continue
        event_dict[key] = _scrub_value(value)
    return event_dict


def _journald_prefix(_: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    level = str(event_dict.get("level", method)).lower()
    event_dict["_priority"] = _PRIORITY.get(level, 6)
    return event_dict


class _JournaldRenderer:
    """One JSON object per line behind `<N>`: journald keeps it as one entry at that priority."""

    def __init__(self) -> None:
        self._json = structlog.processors.JSONRenderer()

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        priority = event_dict.pop("_priority", 6)
        event_dict.pop("timestamp", None)  # journald stamps every entry itself
        rendered = self._json(logger, name, event_dict)
        text = rendered.decode() if isinstance(rendered, bytes) else rendered
        return f"<{priority}>{text}"


def choose_format(requested: str, environ: Mapping[str, str], stream: TextIO) -> str:
    """Resolve ``auto`` to a concrete format for this process's stdout."""
    if requested != "auto":
        return requested
    if environ.get("JOURNAL_STREAM"):
        return "journald"
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        return "console"
    return "json"


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
        scrub_secrets,
    ]


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> str:
    """Route structlog and stdlib logging to `stream` (stdout by default). Returns the format used.

    Safe to call again (tests, SIGHUP reload): the previous handler is replaced.
    """
    import os

    stream = stream if stream is not None else sys.stdout
    env = os.environ if environ is None else environ
    chosen = choose_format(fmt, env, stream)
    register_secret(*secrets)

    renderer: Processor
    extra: list[Processor] = []
    if chosen == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=_wants_color(stream, env))
    elif chosen == "journald":
        extra = [_journald_prefix]
        renderer = _JournaldRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()

    formatter = structlog.stdlib.ProcessorFormatter(
        # ExtraAdder: the libraries (readers, budget, redis_client) log through stdlib logging
        # with fields in `extra`; they become keys of the line like our own fields.
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *_shared_processors()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *extra,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.set_name("symbold")

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "symbold"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries are chatty at debug; keep them at warning unless we debug ourselves.
    for noisy in ("asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "debug" else logging.DEBUG)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return chosen


def _wants_color(stream: TextIO, environ: Mapping[str, str]) -> bool:
    if environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def get_logger(name: str = "symbold", **initial: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger; events are named like ``refresh.ok`` with fields as keywords."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **initial)
    return logger


def scrubbed_excepthook(stream: TextIO | None = None) -> Any:
    """An excepthook that prints a traceback with secrets masked (for crashes before logging)."""
    import traceback

    def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        (stream or sys.stderr).write(scrub_text(text))

    return hook
