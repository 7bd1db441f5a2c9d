"""Decoding a payload a chunk at a time gives exactly what one whole decode gives, or refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon.snapshot.normalize import RowMemo, normalize
from daemon.snapshot.payload import (
    ROW_CHUNK_BYTES,
    WHOLE_BELOW,
    SplitFailed,
    decode_payload,
    decode_rows_in_chunks,
)
from tests.snapshot.rows import compact_json, make_row
from tests.support.fixtures import fixture_bytes


def _body(rows: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "serverTime": 1700000000000,
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            }
        ],
        "exchangeFilters": [],
        "symbols": rows,
        **top,
    }


def _rows(n: int) -> list[dict[str, Any]]:
    return [make_row(f"S{i}USDT") for i in range(n)]


def _chunked_rows(payload: bytes, chunk_bytes: int) -> tuple[Any, list[bytes]]:
    info, chunks = decode_rows_in_chunks(payload, chunk_bytes)
    return info, [bytes(raw) for rows in chunks for raw in rows]


@pytest.mark.parametrize("chunk_bytes", [1, 700, 5000, 50_000])
def test_chunks_give_the_rows_and_header_of_a_whole_decode(chunk_bytes: int) -> None:
    # A key after `symbols`, as spot's `sors`, is part of the header.
    payload = compact_json(_body(_rows(300), sors=[{"baseAsset": "BTC", "symbols": ["S1USDT"]}]))
    assert len(payload) > chunk_bytes
    whole = decode_payload(payload)
    info, rows = _chunked_rows(payload, chunk_bytes)
    assert rows == [bytes(raw) for raw in whole.symbols]
    assert (info.server_time, info.rate_limits) == (whole.server_time, whole.rate_limits)


def test_recorded_payload_splits_like_a_whole_decode() -> None:
    payload = fixture_bytes("spot-exchangeinfo-2023-09.json")
    whole = decode_payload(payload)
    info, rows = _chunked_rows(payload, 64 * 1024)
    assert rows == [bytes(raw) for raw in whole.symbols]
    assert info.server_time == whole.server_time


@pytest.mark.parametrize(
    "payload",
    [
        # Pretty-printed: no compact separator between rows.
        json.dumps(_body(_rows(50)), indent=2).encode(),
        # A nested list of objects keyed "symbol" inside a row: a cut there is mid-row.
        compact_json(
            _body([make_row(f"S{i}USDT", legs=[{"a": 1}, {"symbol": "Q"}]) for i in range(60)])
        ),
        # "symbols" nested in the header before the real one.
        compact_json(_body(_rows(60), exchangeFilters=[{"symbols": [1, 2]}])),
        # The row separator again in a key after `symbols`: the last cut lands there.
        compact_json(_body(_rows(60), after=[{"x": 1}, {"symbol": "y"}])),
        # Not JSON after the first chunk.
        compact_json(_body(_rows(60)))[:-500] + b"#" * 500,
    ],
    ids=["pretty", "nested-symbol-objects", "nested-symbols-key", "separator-after", "broken-tail"],
)
def test_an_unexpected_layout_refuses_and_normalize_still_agrees(payload: bytes) -> None:
    with pytest.raises(SplitFailed):
        _chunked_rows(payload, 500)
    # normalize falls back to one whole decode: the same result as before chunking existed.
    try:
        whole = decode_payload(payload)
    except ValueError:
        return  # the broken one: normalize raises PayloadError too (tested elsewhere)
    result = normalize(payload, market="spot")
    assert result.rows == len(whole.symbols)


def test_normalize_keeps_digests_not_rows_and_reuses_unchanged_rows() -> None:
    rows = _rows(400)
    payload = compact_json(_body(rows))
    memo = RowMemo()
    first = normalize(payload, market="spot", memo=memo)
    assert first.processed == 400
    assert not first.same_rows  # nothing to compare with yet
    again = normalize(payload, market="spot", memo=memo)
    assert again.same_rows
    assert again.processed == 0
    assert again.records == first.records
    assert all(isinstance(d, bytes) and len(d) == 16 for d in memo.digests)
    rows[7] = make_row("S7USDT", status="BREAK")
    second = normalize(compact_json(_body(rows)), market="spot", memo=memo)
    assert second.processed == 1
    assert not second.same_rows
    assert second.records == normalize(compact_json(_body(rows)), market="spot").records
    # A record's filters do not keep its row's bytes alive (the memo drops rows).
    assert all(bytes(rec.filters_raw).startswith(b"[") for rec in second.records)


def test_large_payloads_are_split_and_small_ones_decoded_whole_with_the_same_result() -> None:
    rows = _rows(12000)
    large = compact_json(_body(rows))
    assert len(large) >= WHOLE_BELOW
    # A bytearray is never split: the same payload decoded whole.
    split_memo, whole_memo = RowMemo(), RowMemo()
    split = normalize(large, market="spot", memo=split_memo)
    whole = normalize(bytearray(large), market="spot", memo=whole_memo)
    assert split.records == whole.records
    assert split.digests == whole.digests
    assert split_memo.digests == whole_memo.digests
    # Below the threshold a payload is decoded in one call, never split.
    small = compact_json(_body(rows[:200]))
    assert ROW_CHUNK_BYTES < len(compact_json(_body(rows[:3000]))) < WHOLE_BELOW
    assert (
        normalize(small, market="spot").records
        == normalize(bytearray(small), market="spot").records
    )
