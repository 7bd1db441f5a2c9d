"""Binance's ``rateLimits`` entries, typed, and the one number the daemon derives from them.

The same struct decodes the upstream payload and the ``rate_limits`` field of a snapshot's
meta hash, so both hold Binance's exact shape::

    [{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000}, ...]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

__all__ = [
    "MAX_BAN_SECONDS",
    "RateLimit",
    "decode_rate_limits",
    "encode_rate_limits",
    "request_weight_limit",
]

MAX_BAN_SECONDS: Final = 3 * 86_400.0
"""Binance's longest IP ban (418 bans grow from 2 minutes to 3 days): a stored deadline
further away than this is clamped to it, by the daemon and by every budget alike."""


class RateLimit(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True, gc=False):
    """One entry of ``rateLimits``.

    Every field is optional so an odd entry cannot sink a payload; unknown keys are ignored.
    Encoded, a field that is ``None`` is left out, so an entry Binance sent whole comes back
    with the same four keys in the same order.
    """

    rate_limit_type: str | None = None
    interval: str | None = None
    interval_num: int | None = None
    limit: int | None = None


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(tuple[RateLimit, ...])


def encode_rate_limits(rate_limits: Iterable[RateLimit]) -> bytes:
    """The entries as a JSON array in Binance's shape (``[]`` for none). Deterministic."""
    return _ENCODER.encode(tuple(rate_limits))


def decode_rate_limits(data: bytes | str) -> tuple[RateLimit, ...]:
    """Inverse of :func:`encode_rate_limits`. Raises ``msgspec.DecodeError`` (a
    ``ValueError``) if ``data`` is not a JSON array of objects with fields of these types."""
    return _DECODER.decode(data)


def request_weight_limit(rate_limits: Iterable[RateLimit]) -> int | None:
    """The REQUEST_WEIGHT limit per one minute, or ``None`` if none is announced.

    Only an entry with ``interval == "MINUTE"`` and ``intervalNum == 1`` and a positive
    ``limit`` counts; other windows are not converted, since a per-5-minute budget does not
    translate into a safe per-minute one.
    """
    for rl in rate_limits:
        if (
            rl.rate_limit_type == "REQUEST_WEIGHT"
            and rl.interval == "MINUTE"
            and rl.interval_num == 1
            and rl.limit is not None
            and rl.limit > 0
        ):
            return rl.limit
    return None
