"""The meta hash: written by SnapshotMeta.to_hash, read back by SnapshotMeta.from_hash and
MetaFields, including hashes from older daemons and partial or damaged ones. Pure tests."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from daemon.contract import (
    FORMAT,
    MetaError,
    MetaFields,
    RateLimit,
    SnapshotMeta,
    decode_rate_limits,
    encode_rate_limits,
    request_weight_limit,
)
from daemon.contract.meta import HeldRow, decode_timestamp, encode_timestamp

LIMITS = (
    RateLimit(rate_limit_type="REQUEST_WEIGHT", interval="MINUTE", interval_num=1, limit=6000),
    RateLimit(rate_limit_type="ORDERS", interval="SECOND", interval_num=10, limit=100),
)
BINANCE_SHAPE = (
    '[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000},'
    '{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":100}]'
)

META = SnapshotMeta(
    version="abc123",
    count=8,
    listed=6,
    source="https://api.binance.com/api/v3/exchangeInfo",
    server_time=1_700_000_000_000,
    fetched_at=1_700_000_000.1234,
    duration_ms=12.34,
    writer="host:1:x",
    rate_limits=LIMITS,
)


def _as_redis(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


def test_to_hash_fields() -> None:
    assert META.to_hash() == {
        "version": "abc123",
        "count": "8",
        "listed": "6",
        "source": "https://api.binance.com/api/v3/exchangeInfo",
        "server_time": "1700000000000",
        "fetched_at": "1700000000.123",
        "duration_ms": "12.3",
        "stale": "0",
        "last_error": "",
        "writer": "host:1:x",
        "rate_limits": BINANCE_SHAPE,
        "format": str(FORMAT),
        "held_rows": "[]",
    }


def test_held_rows_round_trip_and_tolerate_damage() -> None:
    held = (HeldRow("BTCUSDT", "tick_size became 0 (served 0.01)", "ab" * 16, 2, False),)
    fields = dataclasses.replace(META, held_rows=held).to_hash()
    assert msgspec.json.decode(fields["held_rows"]) == [
        {
            "symbol": "BTCUSDT",
            "reason": "tick_size became 0 (served 0.01)",
            "digest": "ab" * 16,
            "seen": 2,
            "invalid": False,
        }
    ]
    assert SnapshotMeta.from_hash(_as_redis(fields)).held_rows == held
    # an older daemon's hash has no such field; a damaged one is reported, never raised on
    assert MetaFields.from_hash({"version": "v"}).held_rows == ()
    damaged = MetaFields.from_hash({"version": "v", "held_rows": "[{"})
    assert damaged.held_rows == ()
    assert damaged.unreadable == {"held_rows"}


def test_round_trip_through_a_bytes_hash() -> None:
    back = SnapshotMeta.from_hash(_as_redis(META.to_hash()))
    assert back.rate_limits == LIMITS
    assert back.to_hash() == META.to_hash()
    assert (back.fetched_at, back.duration_ms) == (1_700_000_000.123, 12.3)


def test_a_hash_from_an_older_daemon_reads_with_defaults() -> None:
    old = {
        "version": "v1",
        "count": "3",
        "listed": "2",
        "source": "s",
        "server_time": "",
        "fetched_at": "5.5",
        "duration_ms": "1.0",
        "stale": "0",
        "last_error": "",
        "shrink_version": "",
        "shrink_count": "0",
    }
    meta = SnapshotMeta.from_hash(_as_redis(old))
    assert meta == SnapshotMeta(
        version="v1",
        count=3,
        listed=2,
        source="s",
        server_time=None,
        fetched_at=5.5,
        duration_ms=1.0,
    )
    assert meta.rate_limits == ()
    assert meta.writer == ""
    assert meta.format == 1


@pytest.mark.parametrize(
    "damage",
    [{"version": None}, {"version": ""}, {"count": "many"}, {"fetched_at": "soon"}],
)
def test_from_hash_refuses_what_is_not_a_complete_snapshot(damage: dict[str, str | None]) -> None:
    fields: dict[str, str | None] = {**META.to_hash(), **damage}
    with pytest.raises(MetaError):
        SnapshotMeta.from_hash({k: v for k, v in fields.items() if v is not None})
    assert issubclass(MetaError, ValueError)


def test_from_hash_tolerates_damaged_optional_fields() -> None:
    fields = META.to_hash() | {"server_time": "x", "rate_limits": "[{", "format": "?"}
    meta = SnapshotMeta.from_hash(fields)
    assert (meta.server_time, meta.rate_limits, meta.format) == (None, (), 1)
    assert MetaFields.from_hash(fields).unreadable == {"server_time", "rate_limits", "format"}


def test_meta_fields_of_a_hash_with_no_snapshot() -> None:
    # A first refresh that failed records only stale and last_error.
    fields = MetaFields.from_hash({b"stale": b"1", b"last_error": b"upstream 503"})
    assert fields.version is None
    assert fields.count is None
    assert fields.fetched_at is None
    assert fields.stale
    assert fields.last_error == "upstream 503"
    assert fields.source is None
    assert fields.unreadable == frozenset()
    with pytest.raises(MetaError):
        fields.snapshot_meta()


def test_meta_fields_keep_empty_strings_and_skip_none_values() -> None:
    fields = MetaFields.from_hash({"version": b"v", "source": b"", "count": None, "listed": b""})
    assert (fields.version, fields.source, fields.count, fields.listed) == ("v", "", None, None)
    assert fields.unreadable == frozenset()


def test_meta_fields_never_raise_on_bad_bytes() -> None:
    fields = MetaFields.from_hash({b"version": b"\xff\xfe", b"shrink_count": b"2"})
    assert fields.version == "\ufffd\ufffd"
    assert fields.shrink_count == 2


def test_rate_limits_keep_binance_shape() -> None:
    assert encode_rate_limits(LIMITS).decode() == BINANCE_SHAPE
    assert decode_rate_limits(BINANCE_SHAPE) == LIMITS
    assert encode_rate_limits(()) == b"[]"
    # an odd entry keeps only what it had
    assert encode_rate_limits([RateLimit(limit=5)]) == b'[{"limit":5}]'
    assert request_weight_limit(LIMITS) == 6000


def test_timestamps() -> None:
    assert encode_timestamp(1.23456) == "1.235"
    assert decode_timestamp(b"1.235") == 1.235
    assert decode_timestamp("7") == 7.0
    for raw in (None, b"", b"soon"):
        assert decode_timestamp(raw) is None
