"""Logging: structlog in front, one stdlib handler behind, secrets scrubbed on the way out.

Every record, ours or a library's (redis, aiohttp, celery log through stdlib), passes the same
processor chain, and the last step before rendering masks credentials: any URL userinfo or
secret query parameter, and every literal secret registered with :func:`register_secret`
(both from :mod:`daemon.redaction`, the one place that decides what is a secret).
Tracebacks are formatted to text *before* that step so they are scrubbed too.

Formats: ``console`` (a person at a terminal), ``json`` (one object per line), ``journald``
(one line per event with the sd-daemon ``<N>`` priority prefix, so journald files it at the
right level and keeps a traceback in the same entry), ``auto`` (journald when
``JOURNAL_STREAM`` names the log stream itself, console on a TTY, else JSON).

structlog is imported when the pipeline is built, not with this module: a command that
configures logging with ``deferred=True`` builds it on the first record or the first
:func:`get_logger`, so ``symbold status`` never pays for it unless something logs.

Under systemd, ``JOURNAL_STREAM`` holds ``DEVICE:INODE`` of the stream connected to the journal
(systemd.exec(5)); a process is writing to the journal only when its own stdout/stderr has that
device and inode. A child that inherited the variable but writes to a pipe or a file is not, so
:func:`is_journal` compares the two instead of trusting that the variable is set.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

from daemon.redaction import register_secret, scrub_text

if TYPE_CHECKING:
    import structlog
    from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "choose_format",
    "configure_logging",
    "get_logger",
    "is_journal",
    "register_secret",
    "scrub_secrets",
    "scrub_text",
    "scrubbed_excepthook",
    "write_stderr",
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


# Loggers kept at warning or above unless `libraries = "debug"`.
_NOISY = ("asyncio", "aiohttp.access")


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
        import structlog

        self._json = structlog.processors.JSONRenderer()

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        priority = event_dict.pop("_priority", 6)
        event_dict.pop("timestamp", None)  # journald stamps every entry itself
        rendered = self._json(logger, name, event_dict)
        text = rendered.decode() if isinstance(rendered, bytes) else rendered
        return f"<{priority}>{text}"


def _journal_ids(environ: Mapping[str, str]) -> tuple[int, int] | None:
    """``JOURNAL_STREAM=DEVICE:INODE`` as two integers, or None when unset or malformed."""
    device, sep, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not sep:
        return None
    try:
        return int(device), int(inode)
    except ValueError:
        return None


def is_journal(stream: Any, environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd named in ``JOURNAL_STREAM``: same
    device and inode (systemd.exec(5)). False for a stream without a file descriptor."""
    ids = _journal_ids(os.environ if environ is None else environ)
    if ids is None:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        # io.UnsupportedOperation (StringIO) is both an OSError and a ValueError.
        return False
    return (st.st_dev, st.st_ino) == ids


def choose_format(requested: str, environ: Mapping[str, str], stream: TextIO) -> str:
    """Resolve ``auto`` to a concrete format for `stream`: journald when `stream` is the
    journal (:func:`is_journal`), console on a TTY, else JSON."""
    if requested != "auto":
        return requested
    if is_journal(stream, environ):
        return "journald"
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        return "console"
    return "json"


def write_stderr(
    message: str,
    priority: int = 3,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Write `message` (scrubbed) for a person, outside the log pipeline: for errors before
    logging is configured and for a command's own error lines.

    When the stream is the journal, every line carries the sd-daemon ``<N>`` prefix, so
    journald files it at `priority` (3, error, by default) instead of the stream's default 6,
    and ``journalctl -p warning`` shows it.
    """
    out = stream if stream is not None else sys.stderr
    text = scrub_text(message).rstrip("\n")
    if is_journal(out, environ):
        text = "\n".join(f"<{priority}>{line}" for line in text.split("\n"))
    out.write(text + "\n")
    out.flush()


def _shared_processors() -> list[Processor]:
    import structlog

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
    libraries: str = "info",
    deferred: bool = False,
) -> str:
    """Route structlog and stdlib logging to `stream` (stdout by default). Returns the format used.

    `level` applies to symbold's own loggers (``symbold.*``); other libraries' loggers (redis,
    asyncio, aiohttp, celery, ...) log at `libraries` or `level`, whichever is more severe, so
    ``--log-level debug`` does not bring redis-py's connection chatter unless `libraries` asks
    for it too. Python warnings are logged (logger ``py.warnings``) at warning.
    `deferred`: levels and secrets take effect now, the pipeline (and the structlog import) on
    the first record that passes the levels or the first :func:`get_logger` call; what is
    written is the same either way.
    Safe to call again (tests, SIGHUP reload): the previous handler is replaced.
    """
    global _pending
    stream = stream if stream is not None else sys.stdout
    env = os.environ if environ is None else environ
    chosen = choose_format(fmt, env, stream)
    register_secret(*secrets)
    _set_levels(level, libraries)
    logging.captureWarnings(True)
    if deferred:
        _pending = (chosen, stream, env)
        _install(_Deferred())
    else:
        _pending = None
        _build(chosen, stream, env)
    return chosen


def _set_levels(level: str, libraries: str) -> None:
    levels = logging.getLevelNamesMapping()
    ours = levels[level.upper()]
    others = max(ours, levels[libraries.upper()])
    logging.getLogger().setLevel(others)
    logging.getLogger("symbold").setLevel(ours)
    # One line per HTTP request and asyncio's own notes are noise below warning, unless
    # library debugging was asked for explicitly.
    noisy_level = others if others <= logging.DEBUG else max(others, logging.WARNING)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(noisy_level)


# The pipeline configure_logging(deferred=True) has yet to build: (format, stream, environ).
_pending: tuple[str, TextIO, Mapping[str, str]] | None = None


def _ensure_built() -> logging.Handler | None:
    """Build the deferred pipeline now, if one is pending; returns its handler."""
    global _pending
    pending, _pending = _pending, None
    return _build(*pending) if pending is not None else None


class _Deferred(logging.Handler):
    """Stands in for the pipeline until the first record, then builds it and hands it over."""

    def emit(self, record: logging.LogRecord) -> None:
        handler = _ensure_built()
        if handler is not None:
            handler.handle(record)


def _install(handler: logging.Handler) -> None:
    """Put `handler` in the place of the previous "symbold" handler on the root logger.

    Replaced in place, not removed and appended: a deferred handler does this while logging
    iterates over the root's handlers, and must not be visited twice or skip one.
    """
    handler.set_name("symbold")
    root = logging.getLogger()
    ours = [i for i, h in enumerate(root.handlers) if h.get_name() == "symbold"]
    if not ours:
        root.addHandler(handler)
        return
    root.handlers[ours[0]] = handler
    for i in reversed(ours[1:]):
        del root.handlers[i]


# structlog's console renderer prettifies tracebacks with these when they are installed
# (structlog.dev imports them with structlog itself); rich and pygments add several MB to the
# daemon's memory, and the json and journald formats never use them.
_PRETTY_TRACEBACKS = ("rich", "better_exceptions")


def _import_structlog(pretty: bool) -> ModuleType:
    """structlog; unless `pretty` (the console format) and on its first import only, imported
    with its optional pretty-traceback helpers hidden, so they are not loaded for nothing."""
    if pretty or "structlog" in sys.modules:
        import structlog

        return structlog
    # A None entry in sys.modules makes `import name` raise ImportError, which is how
    # structlog finds out that an optional helper is missing. Removed again right after.
    hidden = [name for name in _PRETTY_TRACEBACKS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import structlog
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return structlog


def _build(chosen: str, stream: TextIO, env: Mapping[str, str]) -> logging.Handler:
    structlog = _import_structlog(pretty=chosen == "console")

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
    _install(handler)

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
    return handler


def _wants_color(stream: TextIO, environ: Mapping[str, str]) -> bool:
    if environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def get_logger(name: str = "symbold", **initial: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger; events are named like ``refresh.ok`` with fields as keywords.
    Builds a deferred pipeline first (see :func:`configure_logging`)."""
    _ensure_built()
    import structlog

    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **initial)
    return logger


def scrubbed_excepthook(stream: TextIO | None = None) -> Any:
    """An excepthook that prints a traceback with secrets masked (for crashes outside the log
    pipeline); into the journal at priority 2 (critical), every line."""
    import traceback

    def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        write_stderr(text, _PRIORITY["critical"], stream=stream or sys.stderr)

    return hook
