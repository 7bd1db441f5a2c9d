"""daemon.snapshot.payload: payloads that cannot be read at all are PayloadErrors, and the
request-weight limit read from a payload's rateLimits.

Pure tests: the only I/O is reading the shipped samples and, when present, the shared
recorded payloads (never copied into the repo).
"""

from __future__ import annotations

import pytest

from daemon.contract.ratelimits import RateLimit, request_weight_limit
from daemon.snapshot.normalize import normalize
from daemon.snapshot.payload import PayloadError, decode_payload
from tests.snapshot.rows import make_payload
from tests.support.fixtures import sample_bytes


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"[]", "object"),
        (b'"symbols"', "object"),
        (b"42", "object"),
        (b"{}", "symbols"),
        (b'{"serverTime":1,"rateLimits":[]}', "symbols"),
        (b'{"symbols":{}}', "symbols"),
        (b'{"symbols":null}', "symbols"),
        (b'{"symbols":"BTCUSDT"}', "symbols"),
        (b"not json", "JSON"),
        (b"", "JSON"),
        (b'{"symbols":[]} trailing', "JSON"),
        (b"<html>502 Bad Gateway</html>", "JSON"),
    ],
)
def test_payload_errors(payload: bytes, fragment: str) -> None:
    with pytest.raises(PayloadError, match=fragment):
        normalize(payload, market="spot")
    with pytest.raises(PayloadError):
        decode_payload(payload)


def test_truncated_payload_is_a_payload_error() -> None:
    data = sample_bytes("spot-sample.json")
    for cut in (1, len(data) // 3, len(data) // 2, len(data) - 3):
        with pytest.raises(PayloadError, match="not valid JSON"):
            normalize(data[:cut], market="spot")


def test_payload_error_is_a_value_error() -> None:
    assert issubclass(PayloadError, ValueError)


def test_empty_symbols_list_is_fine() -> None:
    result = normalize(make_payload(), market="spot")
    assert result.records == ()
    assert result.rows == 0
    assert result.weight_limit == 6000


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ([RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 6000)], 6000),
        (
            [RateLimit("ORDERS", "SECOND", 10, 50), RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 1200)],
            1200,
        ),
        ([RateLimit("REQUEST_WEIGHT", "MINUTE", 5, 30000)], None),
        ([RateLimit("RAW_REQUESTS", "MINUTE", 1, 6000)], None),
        ([RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 0)], None),
        ([], None),
    ],
)
def test_request_weight_limit(limits: list[RateLimit], expected: int | None) -> None:
    assert request_weight_limit(limits) == expected
