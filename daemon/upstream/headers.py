"""Pure helpers of the upstream client: response headers, error bodies, backoff, redaction.

No I/O and no clock beyond ``time.time()`` where a relative wait is computed from an absolute
date (``now`` overrides it in tests).
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import time
from datetime import UTC
from typing import Final

from yarl import URL

from daemon.redaction import redact_endpoint

__all__ = [
    "MAX_RETRY_AFTER",
    "USED_WEIGHT_HEADER",
    "banned_until",
    "parse_retry_after",
    "parse_used_weight",
    "redact_url",
    "retry_delay",
    "snippet_text",
]

_ERROR_SNIPPET_CHARS: Final = 200

MAX_RETRY_AFTER: Final = 3 * 24 * 3600.0
"""Longest wait we honour: Binance IP bans escalate up to 3 days."""

USED_WEIGHT_HEADER: Final = "X-MBX-USED-WEIGHT-1M"

_DELAY_SECONDS: Final = re.compile(r"\d{1,15}(\.\d{1,9})?")
_WEIGHT: Final = re.compile(r"\d{1,15}")
# Binance's 418 body: "... IP banned until 1694185561976. Please use WebSocket Streams ..."
_BANNED_UNTIL: Final = re.compile(rb"banned until (\d{12,14})")


def redact_url(url: str | URL) -> str:
    """``url`` for messages: no user/password, no fragment, secret-looking query values masked
    (the rules of :func:`daemon.redaction.redact_endpoint`)."""
    return redact_endpoint(str(url))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP-date.

    Returns None when absent or unparsable; otherwise clamped to 0..``MAX_RETRY_AFTER``
    (a date in the past gives 0). ``now`` (epoch seconds) is for tests.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELAY_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000" parses naive; HTTP-dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def parse_used_weight(value: str | None) -> int | None:
    """``X-MBX-USED-WEIGHT-1M`` as an int; None when absent or not a plain non-negative integer."""
    if value is None:
        return None
    text = value.strip()
    return int(text) if _WEIGHT.fullmatch(text) else None


def retry_delay(
    retry_after: float | None,
    attempt: int,
    *,
    base: float,
    cap: float,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the next try.

    With ``retry_after`` (the server said): exactly that, clamped to 0..``MAX_RETRY_AFTER``.
    The backoff ``cap`` does not shorten it: waiting less than a ban makes the ban longer.
    Without: full-jitter exponential backoff, uniform in
    ``[0, min(cap, base * 2**attempt)]``, ``attempt`` counting consecutive failures from 0.
    ``rng`` makes it deterministic in tests. No I/O, no clock.
    """
    if retry_after is not None and not math.isnan(retry_after):
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
    # min(..., 64): 2.0**attempt overflows for a very long outage; the cap applies long before.
    ceiling = max(0.0, min(cap, base * 2.0 ** min(max(attempt, 0), 64)))
    return rng.uniform(0.0, ceiling) if rng is not None else random.uniform(0.0, ceiling)


def snippet_text(snippet: bytes) -> str:
    text = snippet.decode("utf-8", errors="replace")
    if text.lstrip().startswith("<"):
        text = re.sub(r"<[^>]*>", " ", text)  # an HTML error page: keep its words
    text = " ".join(text.split())
    if len(text) > _ERROR_SNIPPET_CHARS:
        text = text[:_ERROR_SNIPPET_CHARS] + "..."
    return text


def banned_until(snippet: bytes, *, now: float | None = None) -> float | None:
    match = _BANNED_UNTIL.search(snippet)
    if match is None:
        return None
    seconds = int(match.group(1)) / 1000.0 - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
