"""Fetch the raw exchangeInfo body from Binance (or a saved file), with host fallback.

What a caller may rely on:

- ``fetch(session, cfg)`` returns the raw body bytes of one successful ``200`` response (or of a
  ``file:`` URL) and never decodes or checks the JSON: another module does that.
- Base URLs are tried in order. A failure moves on to the next host only when another host could
  plausibly do better: connection error, timeout, 5xx, truncated or corrupt body, and also an
  unexpected status (3xx, 404: one mirror misconfigured) or an unreadable ``file:`` URL. It stops
  at once on rate limits (429/418: Binance counts weight per IP, not per host), on 403 (WAF) and
  451 (restricted location), which are permanent, and on a body over the cap (the payload is the
  same everywhere).
- Every error is an ``UpstreamError`` with ``.kind`` (a short stable string for logs and metrics),
  ``.retryable`` (whether trying again later may help; 403/451 say no), ``.url`` (redacted),
  ``.status`` and ``.used_weight``. ``RateLimited`` adds ``.retry_after`` (seconds, clamped to
  0..3 days, or None). ``AllHostsFailed`` adds ``.failures``, one ``HostFailure`` per host.
- Memory is bounded by ``max_body_bytes`` counted after decompression: the body is read as sent
  (compressed or not) in chunks and refused once it grows past the cap, then a gzip/deflate body
  is inflated in a worker thread that stops at the cap, so a gzip bomb costs about the cap, not
  its expanded size (the tests check it with a 200 MB bomb). Inflating there, not in aiohttp,
  keeps the event loop free while a 17 MB reply is decompressed (zlib releases the GIL).
- ``FetchResult.headers`` and ``UpstreamError.headers`` hold the response headers of an HTTP
  answer as (name, value) pairs (None for ``file:`` sources and when no answer arrived).
- No message or ``url`` attribute carries URL credentials or secret-looking query values
  (see ``redact_url``).

The module does not log: it returns results and raises errors, and the caller decides what to log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import math
import os
import time
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from aiohttp import hdrs
from aiohttp.http_exceptions import ContentEncodingError, ContentLengthError, TransferEncodingError
from yarl import URL

from daemon.upstream.errors import (
    AllHostsFailed,
    BadBody,
    BodyTooLarge,
    FileSourceError,
    Forbidden,
    Headers,
    HostFailure,
    LegalRestriction,
    RateLimited,
    ServerError,
    TransportError,
    UnexpectedStatus,
    UpstreamError,
    UpstreamTimeout,
)
from daemon.upstream.headers import (
    MAX_RETRY_AFTER,
    USED_WEIGHT_HEADER,
    banned_until,
    parse_retry_after,
    parse_used_weight,
    redact_url,
    retry_delay,
    snippet_text,
)
from daemon.upstream.inflate import WBITS, inflate, zlib_header

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_RETRY_AFTER",
    "USED_WEIGHT_HEADER",
    "AllHostsFailed",
    "BadBody",
    "BodyTooLarge",
    "FetchResult",
    "FileSourceError",
    "Forbidden",
    "HostFailure",
    "LegalRestriction",
    "RateLimited",
    "ServerError",
    "SourceConfig",
    "TransportError",
    "UnexpectedStatus",
    "UpstreamError",
    "UpstreamTimeout",
    "fetch",
    "make_session",
    "parse_retry_after",
    "parse_used_weight",
    "redact_url",
    "retry_delay",
]

DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
"""Default cap on a body after decompression. A full modern spot reply is about 17 MB."""

_CHUNK: Final = 64 * 1024
_ERROR_SNIPPET_BYTES: Final = 2048
_ERROR_SNIPPET_WAIT: Final = 1.0
# --------------------------------------------------------------------------------------------
# configuration and results


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """Where and how to fetch one exchangeInfo endpoint.

    ``base_urls`` are tried in order; each is ``scheme://host[:port]`` and ``path`` is appended
    (``/api/v3/exchangeInfo``). A ``file:///abs/payload.json`` entry names a saved payload itself:
    ``path`` and ``query`` are not applied to it. Timeouts are in seconds and apply per host:
    ``timeout_total`` bounds one whole request (connect, headers and body), ``timeout_connect``
    getting a connection, ``timeout_read`` any single wait for bytes from the peer.
    ``max_body_bytes`` caps the body after decompression.
    """

    base_urls: tuple[str, ...]
    path: str
    timeout_total: float = 30.0
    timeout_connect: float = 5.0
    timeout_read: float = 10.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    user_agent: str = "symbold/0.1"
    query: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # A bare string would be iterated character by character, each "URL" failing oddly.
        if not isinstance(self.base_urls, tuple) or not self.base_urls:
            raise ValueError("base_urls must be a non-empty tuple of URLs")
        for base in self.base_urls:
            _check_base_url(base)
        for name in ("timeout_total", "timeout_connect", "timeout_read"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes must be positive, got {self.max_body_bytes!r}")


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A successful fetch.

    ``url`` is the redacted URL that answered; ``status`` is 200 (also for ``file:``);
    ``used_weight`` is ``X-MBX-USED-WEIGHT-1M`` (None if absent, unparsable, or a file);
    ``elapsed_ms`` is the time of the successful attempt alone; ``attempts`` lists the hosts
    that failed before it, in order; ``headers`` holds the response headers as (name, value)
    pairs (None for a ``file:`` source).
    """

    body: bytes = field(repr=False)  # up to tens of MB: never in a repr or a log line
    url: str
    status: int
    used_weight: int | None
    elapsed_ms: float
    attempts: tuple[HostFailure, ...] = ()
    # The answer's response headers as (name, value) pairs; None for a file: source.
    headers: Headers | None = field(default=None, repr=False)


# --------------------------------------------------------------------------------------------
# session and fetch


def make_session(cfg: SourceConfig, *, limit: int = 4) -> aiohttp.ClientSession:
    """Create the one shared session (call it inside the running loop; ``await .close()`` it).

    Timeouts and User-Agent default from ``cfg``, but ``fetch`` passes each config's own
    timeouts per request, so one session can serve several ``SourceConfig``s. ``limit`` bounds
    open connections: we make a request every few minutes, not a crawl.
    """
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=_client_timeout(cfg),
        headers={hdrs.USER_AGENT: cfg.user_agent},
        # fetch inflates the body itself, off the event loop (see inflate); it also asks for
        # that per request, so a session built elsewhere works too.
        auto_decompress=False,
        raise_for_status=False,
        # No proxies or .netrc picked up from the environment behind the operator's back.
        trust_env=False,
    )


async def fetch(session: aiohttp.ClientSession, cfg: SourceConfig) -> FetchResult:
    """Fetch ``cfg.path`` from the first base URL that delivers a complete 200 body.

    Raises ``RateLimited``, ``Forbidden``, ``LegalRestriction`` or ``BodyTooLarge`` at once
    (with ``.attempts`` set to the hosts that failed before), and ``AllHostsFailed`` when every
    host failed for a reason worth trying elsewhere. Worst-case duration is about
    ``len(base_urls) * timeout_total``. Cancellation propagates untouched.
    """
    failures: list[HostFailure] = []
    for base in cfg.base_urls:
        started = time.perf_counter()
        try:
            if _is_file_url(base):
                result = await _fetch_file(base, cfg, started)
            else:
                result = await _fetch_http(session, base, cfg, started)
        except UpstreamError as err:
            failure = HostFailure(
                url=err.url or redact_url(base),
                kind=err.kind,
                message=err.message,
                retryable=err.retryable,
                status=err.status,
                elapsed_ms=_ms_since(started),
            )
            if not err.next_host:
                err.attempts = tuple(failures)
                raise
            failures.append(failure)
            continue
        return dataclasses.replace(result, attempts=tuple(failures))
    # Raised outside the except block on purpose: no __context__ chain keeping the last
    # attempt's frames (and its partial body buffer) alive.
    raise AllHostsFailed(tuple(failures))


def _client_timeout(cfg: SourceConfig) -> aiohttp.ClientTimeout:
    # aiohttp's default is 300 s total and no read timeout at all: always set all of them.
    return aiohttp.ClientTimeout(
        total=cfg.timeout_total,
        connect=cfg.timeout_connect,
        sock_connect=cfg.timeout_connect,
        sock_read=cfg.timeout_read,
    )


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _is_file_url(base: str) -> bool:
    return base[:5].lower() == "file:"


def _check_base_url(base: object) -> None:
    if not isinstance(base, str):
        raise TypeError(f"base URL must be a string, got {type(base).__name__}")
    if _is_file_url(base):
        _file_path(base)
        return
    shown = redact_url(base)
    try:
        url = URL(base)
    except (ValueError, TypeError):
        raise ValueError(f"invalid base URL {shown}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base URL must be http(s)://host[:port] or file:///path, got {shown}")


def _file_path(base: str) -> str:
    parts = urllib.parse.urlsplit(base)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file URL must name a local absolute path: {redact_url(base)}")
    path = urllib.request.url2pathname(parts.path)
    if not os.path.isabs(path):
        raise ValueError(f"file URL must name a local absolute path: {redact_url(base)}")
    return path


def _request_url(base: str, cfg: SourceConfig) -> URL:
    joined = base.rstrip("/") + "/" + cfg.path.lstrip("/") if cfg.path else base
    url = URL(joined)
    return url.extend_query(cfg.query) if cfg.query else url


async def _fetch_http(
    session: aiohttp.ClientSession, base: str, cfg: SourceConfig, started: float
) -> FetchResult:
    url = _request_url(base, cfg)
    shown = redact_url(url)
    headers = {
        hdrs.USER_AGENT: cfg.user_agent,
        hdrs.ACCEPT: "application/json",
        # Only the codecs whose bounded decompression is tested here; aiohttp would also offer
        # br/zstd when those optional packages happen to be installed.
        hdrs.ACCEPT_ENCODING: "gzip, deflate",
    }
    try:
        async with session.get(
            url,
            headers=headers,
            timeout=_client_timeout(cfg),
            # Binance does not redirect; a redirect means a portal or a wrong URL, so report it.
            allow_redirects=False,
            # Inflating 17 MB in the event loop would stall it for tens of ms: inflate does it
            # in a thread (zlib releases the GIL), with the cap on the inflated size.
            auto_decompress=False,
        ) as resp:
            answer = tuple(resp.headers.items())
            used_weight = parse_used_weight(resp.headers.get(USED_WEIGHT_HEADER))
            if resp.status != 200:
                raise await _status_error(resp, shown, used_weight, answer)
            body = await _read_capped(resp, cfg.max_body_bytes, shown, used_weight, answer)
            return FetchResult(
                body=body,
                url=shown,
                status=resp.status,
                used_weight=used_weight,
                elapsed_ms=_ms_since(started),
                headers=answer,
            )
    # TimeoutError first: aiohttp's ServerTimeoutError is both a TimeoutError and a ClientError.
    except TimeoutError as exc:
        what = str(exc) or f"no complete response within {cfg.timeout_total:g}s"
        raise UpstreamTimeout(f"timeout fetching {shown}: {what}", url=shown) from exc
    except aiohttp.ClientPayloadError as exc:
        raise BadBody(
            f"bad body from {shown}: {_describe(exc)}", url=shown, kind=_payload_kind(exc)
        ) from exc
    except aiohttp.ClientError as exc:
        raise TransportError(f"cannot fetch {shown}: {_describe(exc)}", url=shown) from exc


def _payload_kind(exc: aiohttp.ClientPayloadError) -> str:
    cause = exc.__cause__
    if isinstance(cause, ContentEncodingError):
        return "bad_encoding"
    if isinstance(cause, ContentLengthError | TransferEncodingError):
        return "truncated"
    return "bad_body"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.InvalidURL):
        return type(exc).__name__  # its text is the raw URL, credentials and all
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


async def _read_capped(
    resp: aiohttp.ClientResponse,
    cap: int,
    shown: str,
    used_weight: int | None,
    answer: Headers,
) -> bytes:
    encoding = resp.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    context: dict[str, Any] = {
        "url": shown,
        "status": resp.status,
        "used_weight": used_weight,
        "headers": answer,
    }
    plain = encoding in ("", "identity")
    if not plain and encoding not in WBITS:
        raise BadBody(
            f"bad body from {shown}: unsupported Content-Encoding {encoding[:40]!r}",
            kind="bad_encoding",
            **context,
        )
    declared = resp.content_length
    # Without compression the declared length is the body size: refuse before reading a byte.
    if declared is not None and plain and declared > cap:
        raise BodyTooLarge(
            f"body from {shown} declares {declared} bytes, over max_body_bytes={cap}", **context
        )
    # BytesIO.getvalue() hands over its buffer without a copy when nothing else shares it, so
    # a 17 MB body does not briefly cost 34 MB as b"".join or bytes(bytearray) would.
    buf = io.BytesIO()
    size = 0
    # The bytes as sent (compressed or not); a compressed body larger than the cap would
    # inflate past it too. aiohttp pauses the socket when we stop reading.
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > cap:
            buf.close()  # free the partial body now, not when the traceback is dropped
            raise BodyTooLarge(f"body from {shown} exceeds max_body_bytes={cap}", **context)
        buf.write(chunk)
    if plain:
        return buf.getvalue()
    sent = buf.getvalue()
    buf.close()
    # zlib releases the GIL while it inflates, so the event loop keeps running meanwhile.
    body = await asyncio.to_thread(inflate, sent, WBITS[encoding], cap)
    if body is None:
        raise BodyTooLarge(
            f"body from {shown} exceeds max_body_bytes={cap} after decompression", **context
        )
    if isinstance(body, str):
        raise BadBody(f"bad body from {shown}: {body}", kind="bad_encoding", **context)
    return body


async def _status_error(
    resp: aiohttp.ClientResponse, shown: str, used_weight: int | None, answer: Headers
) -> UpstreamError:
    status = resp.status
    snippet = await _error_snippet(resp)
    detail = f"HTTP {status}"
    text = snippet_text(snippet)
    if text:
        detail = f"{detail}: {text}"
    if status in (418, 429):
        retry_after = parse_retry_after(resp.headers.get(hdrs.RETRY_AFTER))
        if retry_after is None:
            retry_after = banned_until(snippet)
        wait = "unknown" if retry_after is None else f"{retry_after:g}s"
        weight = "unknown" if used_weight is None else str(used_weight)
        return RateLimited(
            f"rate limited by {shown} ({detail}); retry after {wait}, used weight {weight}",
            url=shown,
            status=status,
            used_weight=used_weight,
            retry_after=retry_after,
            headers=answer,
        )
    cls: type[UpstreamError]
    if status == 403:
        cls = Forbidden
    elif status == 451:
        cls = LegalRestriction
    elif 500 <= status <= 599:
        cls = ServerError
    else:
        cls = UnexpectedStatus
    return cls(
        f"{shown} answered {detail}",
        url=shown,
        status=status,
        used_weight=used_weight,
        headers=answer,
    )


async def _error_snippet(resp: aiohttp.ClientResponse) -> bytes:
    # The start of an error body says why (Binance's {"code":..,"msg":..}); it is best effort,
    # bounded in size and time, and never turns one error into another.
    try:
        async with asyncio.timeout(_ERROR_SNIPPET_WAIT):
            head = await resp.content.read(_ERROR_SNIPPET_BYTES)
    except (aiohttp.ClientError, TimeoutError):
        return b""
    wbits = WBITS.get(resp.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower())
    if wbits is None:
        return head
    if wbits == 32 + 15 and head and not zlib_header(head):
        wbits = -zlib.MAX_WBITS
    try:
        # The start of a compressed stream inflates on its own; a few KB, so in the loop.
        return zlib.decompressobj(wbits).decompress(head, _ERROR_SNIPPET_BYTES)
    except zlib.error:
        return b""


async def _fetch_file(base: str, cfg: SourceConfig, started: float) -> FetchResult:
    shown = redact_url(base)
    path = _file_path(base)
    try:
        # A thread: reading tens of MB from disk must not stall the event loop.
        body = await asyncio.to_thread(_read_file_capped, path, cfg.max_body_bytes, shown)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise FileSourceError(f"cannot read {shown}: {reason}", url=shown) from exc
    return FetchResult(
        body=body, url=shown, status=200, used_weight=None, elapsed_ms=_ms_since(started)
    )


def _read_file_capped(path: str, cap: int, shown: str) -> bytes:
    """The file's bytes, refused when larger than `cap`.

    Memory follows the file's size, not the cap: ``read(cap + 1)`` would allocate the whole
    cap (64 MB by default) up front. st_size is only a hint (a file may grow while read), so
    the read goes one byte past it and continues in chunks, stopping past the cap.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > cap:
            raise BodyTooLarge(f"{shown} is larger than max_body_bytes={cap}", url=shown)
        data = fh.read(size + 1)
        if len(data) <= size:
            return data
        parts = [data]
        total = len(data)
        while total <= cap:
            chunk = fh.read(min(_CHUNK, cap + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
    if total > cap:
        raise BodyTooLarge(f"{shown} is larger than max_body_bytes={cap}", url=shown)
    return b"".join(parts)
