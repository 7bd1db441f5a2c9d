"""SourceConfig validation and defaults, and the pure helpers of daemon.upstream.fetch:
Retry-After and used-weight header parsing, the retry delay, and FetchResult.

Against the fake Binance on loopback, never Binance itself (fixtures: conftest.py).
"""

from __future__ import annotations

import email.utils
import random
from typing import Any

import pytest

from daemon.upstream.fetch import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_RETRY_AFTER,
    FetchResult,
    SourceConfig,
    parse_retry_after,
    parse_used_weight,
    retry_delay,
)
from tests.support.fake_binance import SPOT


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_urls": "https://api.binance.com"}, "tuple"),
        ({"base_urls": ()}, "tuple"),
        ({"base_urls": ("ftp://h",)}, "http"),
        ({"base_urls": ("https://",)}, "http"),
        ({"base_urls": ("file:relative.json",)}, "absolute"),
        ({"base_urls": ("file://otherhost/x.json",)}, "absolute"),
        ({"timeout_read": 0}, "timeout_read"),
        ({"timeout_total": float("inf")}, "timeout_total"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
    ],
)
def test_source_config_validation(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {
        "base_urls": ("https://api.binance.com",),
        "path": SPOT,
        "timeout_total": 30.0,
        "timeout_connect": 5.0,
        "timeout_read": 10.0,
    }
    values.update(kwargs)
    with pytest.raises(ValueError, match=message):
        SourceConfig(**values)


def test_source_config_defaults() -> None:
    cfg = SourceConfig(("https://api.binance.com", "file:///srv/seed.json"), SPOT)
    assert cfg.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 64 * 1024 * 1024
    assert cfg.query == ()
    with pytest.raises(AttributeError):
        cfg.path = "/x"  # type: ignore[misc]


# ============================================================================================
# pure helpers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", None),
        ("soon", None),
        ("1e3", None),
        ("nan", None),
        ("99999999999", MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_relative_to_now() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 300, usegmt=True), now=now) == 300.0
    assert parse_retry_after(email.utils.formatdate(now + 300), now=now) == 300.0  # -0000 zone
    far = email.utils.formatdate(now + 10 * 86400, usegmt=True)
    assert parse_retry_after(far, now=now) == MAX_RETRY_AFTER


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("20", 20), (" 6000 ", 6000), ("", None), ("-1", None), ("1.5", None),
     ("x", None), ("9" * 40, None)],
)  # fmt: skip
def test_parse_used_weight(value: str | None, expected: int | None) -> None:
    assert parse_used_weight(value) == expected


def test_retry_delay_honours_retry_after_beyond_the_backoff_cap() -> None:
    assert retry_delay(120.0, 0, base=1.0, cap=60.0) == 120.0
    assert retry_delay(0.0, 5, base=1.0, cap=60.0) == 0.0
    assert retry_delay(-3.0, 5, base=1.0, cap=60.0) == 0.0
    assert retry_delay(10 * 86400.0, 0, base=1.0, cap=60.0) == MAX_RETRY_AFTER == 3 * 86400.0
    assert retry_delay(float("inf"), 0, base=1.0, cap=60.0) == MAX_RETRY_AFTER


def test_retry_delay_full_jitter_backoff() -> None:
    rng = random.Random(42)
    for attempt, ceiling in [(0, 2.0), (1, 4.0), (3, 16.0), (5, 60.0), (10_000, 60.0)]:
        samples = [retry_delay(None, attempt, base=2.0, cap=60.0, rng=rng) for _ in range(400)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > 0.9 * ceiling  # full jitter spans the whole range
        assert min(samples) < 0.1 * ceiling
    # NaN from a bad computation upstream means "no server hint": back off instead.
    assert 0.0 <= retry_delay(float("nan"), 0, base=1.0, cap=5.0) <= 1.0
    assert retry_delay(None, -3, base=1.0, cap=5.0) <= 1.0


def test_retry_delay_is_deterministic_with_a_seeded_rng() -> None:
    first = [retry_delay(None, i, base=1.0, cap=30.0, rng=random.Random(7)) for i in range(6)]
    again = [retry_delay(None, i, base=1.0, cap=30.0, rng=random.Random(7)) for i in range(6)]
    assert first == again


def test_fetch_result_is_frozen() -> None:
    result = FetchResult(b"{}", "u", 200, None, 1.0)
    with pytest.raises(AttributeError):
        result.status = 500  # type: ignore[misc]
    assert result.attempts == ()
