"""Every error ``daemon.upstream.fetch`` raises, and the per-host failure record.

Each error carries ``kind`` (a short stable name for logs and metrics), ``retryable``,
``next_host`` (whether ``fetch`` tries the next base URL after it), ``url`` (redacted),
``status``, ``used_weight`` and ``headers``. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

Headers: TypeAlias = tuple[tuple[str, str], ...]
"""Response headers as (name, value) pairs in the order received, repeats kept."""


@dataclass(frozen=True, slots=True)
class HostFailure:
    """Why one base URL failed: enough to log, no traceback or body kept alive."""

    url: str
    kind: str
    message: str
    retryable: bool
    status: int | None
    elapsed_ms: float


class UpstreamError(Exception):
    """Base of every error ``fetch`` raises.

    ``kind``: short stable name (see subclasses); ``retryable``: a later attempt may succeed;
    ``next_host``: whether ``fetch`` moves on to the next base URL after it (internal policy,
    exposed for transparency); ``attempts``: hosts that failed before this one, when ``fetch``
    stopped early on this error.
    """

    kind: str = "upstream"
    retryable: bool = True
    next_host: bool = True

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        used_weight: int | None = None,
        kind: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.status = status
        self.used_weight = used_weight
        # The response headers when an HTTP answer arrived (any status); None otherwise.
        # Never part of the message: a header may carry a cookie.
        self.headers = headers
        if kind is not None:
            self.kind = kind
        self.attempts: tuple[HostFailure, ...] = ()

    def __str__(self) -> str:
        return self.message


class TransportError(UpstreamError):
    """Could not connect, or the connection broke before a response (kind ``connection``)."""

    kind = "connection"


class UpstreamTimeout(TransportError):
    """Connect, read or total timeout (kind ``timeout``)."""

    kind = "timeout"


class ServerError(UpstreamError):
    """A 5xx from Binance or a proxy in front of it (kind ``server_error``)."""

    kind = "server_error"


class UnexpectedStatus(UpstreamError):
    """Any other non-200 status (3xx, 404, ...): most likely a wrong URL (kind ``http_status``)."""

    kind = "http_status"
    retryable = False


class BadBody(UpstreamError):
    """The body did not arrive intact: kind ``truncated`` or ``bad_encoding`` (corrupt gzip)."""

    kind = "bad_body"


class _StopsHere(UpstreamError):
    # Neither a later attempt nor another host can do better: fetch stops at once.
    retryable = False
    next_host = False


class BodyTooLarge(_StopsHere):
    """The body grew past ``max_body_bytes`` (kind ``body_too_large``): raise the cap or alert.

    Every host serves the same payload: if it outgrew the cap on one, it has on all, and each
    further try would download up to the cap again."""

    kind = "body_too_large"


class FileSourceError(UpstreamError):
    """A ``file:`` URL could not be read (kind ``file``)."""

    kind = "file"
    retryable = False


class RateLimited(UpstreamError):
    """429 (kind ``rate_limited``) or 418 IP ban (kind ``banned``).

    ``retry_after``: seconds to wait, from ``Retry-After`` or, failing that, the "banned until"
    time in a Binance error body; clamped to 0..``MAX_RETRY_AFTER``; None if neither said.
    Limits are per IP, so ``fetch`` does not try the other hosts.
    """

    kind = "rate_limited"
    next_host = False

    def __init__(self, message: str, *, retry_after: float | None, **context: Any) -> None:
        super().__init__(message, **context)
        self.kind = "banned" if self.status == 418 else "rate_limited"
        self.retry_after = retry_after


class Forbidden(_StopsHere):
    """403: a WAF block. Permanent until a human looks (kind ``forbidden``)."""

    kind = "forbidden"


class LegalRestriction(_StopsHere):
    """451: Binance refuses this location. Permanent (kind ``legal_restriction``)."""

    kind = "legal_restriction"


class AllHostsFailed(UpstreamError):
    """Every base URL failed; ``failures`` has one entry per host, in order.

    ``retryable`` is True if any host's failure was.
    """

    kind = "all_hosts_failed"

    def __init__(self, failures: tuple[HostFailure, ...]) -> None:
        reasons = "; ".join(f"{f.url} -> {f.kind}: {f.message}" for f in failures)
        super().__init__(f"all {len(failures)} upstream hosts failed: {reasons}")
        self.failures = failures
        self.attempts = failures
        self.retryable = any(f.retryable for f in failures)
