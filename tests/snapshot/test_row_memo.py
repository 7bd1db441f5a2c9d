"""The row memo of daemon.snapshot.normalize: the result never depends on it, only the work
does.

Pure tests: the only I/O is reading the shipped samples and, when present, the shared
recorded payloads (never copied into the repo).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from daemon.snapshot.listing import build_snapshot, prioritize
from daemon.snapshot.normalize import Normalized, RowMemo, normalize
from tests.snapshot.rows import all_accounted, compact_json, make_payload, make_row, only_record


def _same(a: Normalized, b: Normalized) -> None:
    assert a.records == b.records
    assert list(a.digests.items()) == list(b.digests.items())  # record order too
    assert (a.rows, a.dropped, a.refused, a.duplicates, a.lenient) == (
        b.rows,
        b.dropped,
        b.refused,
        b.duplicates,
        b.lenient,
    )


def _rows(n: int) -> list[dict[str, Any]]:
    return [make_row(f"S{i:03d}USDT") for i in range(n)]


@pytest.mark.parametrize(
    "edit",
    [
        "identical",
        "in_place",
        "in_place_three",
        "renamed_in_place",
        "became_lenient",
        "became_dropped",
        "became_duplicate",
        "appended",
        "inserted_first",
        "removed_middle",
        "reordered",
        "odd_rows",
    ],
)
def test_memo_gives_the_same_result_as_a_fresh_run(edit: str) -> None:
    before = _rows(30)
    after = [dict(r) for r in before]
    if edit == "in_place":
        after[10] = make_row("S010USDT", status="BREAK")
    elif edit == "in_place_three":  # the first, a middle and the last row
        for i in (0, 12, 29):
            after[i] = make_row(f"S{i:03d}USDT", status="HALT")
    elif edit == "renamed_in_place":
        after[10] = make_row("ZZZUSDT")
    elif edit == "became_lenient":
        after[7] = make_row("S007USDT", filters=[{"filterType": "PRICE_FILTER", "tickSize": 0.5}])
    elif edit == "became_dropped":
        after[8] = {"symbol": "S008USDT", "status": "TRADING"}
    elif edit == "became_duplicate":
        after[9] = make_row("S001USDT", status="BREAK")
    elif edit == "appended":
        after.append(make_row("NEWUSDT"))
    elif edit == "inserted_first":
        after.insert(0, make_row("NEWUSDT"))
    elif edit == "removed_middle":
        del after[15]
    elif edit == "reordered":
        after.reverse()
    elif edit == "odd_rows":
        after[3] = make_row("BAD NAME")  # refused
        after[4] = make_row("S000USDT")  # duplicate of row 0
        after[5] = {"symbol": "NOBASE", "status": "TRADING"}  # dropped
        after[6] = make_row("S006USDT", filters=[{"filterType": "PRICE_FILTER", "tickSize": 0.5}])

    memo = RowMemo()
    normalize(make_payload(*before), market="spot", memo=memo)
    warm = normalize(make_payload(*after), market="spot", memo=memo)
    cold = normalize(make_payload(*after), market="spot")
    _same(warm, cold)
    assert all_accounted(warm)
    expected_work = {
        "identical": 0,
        "in_place": 1,
        "in_place_three": 3,
        "renamed_in_place": 1,
        "became_lenient": 1,
        "became_dropped": 1,
        "became_duplicate": 1,
        "appended": 1,
        "inserted_first": 1,
        "removed_middle": 0,
        "reordered": 0,
        "odd_rows": 3,  # the duplicate has the very bytes of row 0: found, not decoded
    }[edit]
    assert warm.processed == expected_work
    # and the memo now describes `after`: the same payload again costs nothing
    again = normalize(make_payload(*after), market="spot", memo=memo)
    _same(again, cold)
    assert again.processed == 0


def test_memo_keeps_records_independent_of_the_payload_buffer() -> None:
    memo = RowMemo()
    body = bytearray(make_payload(*_rows(3)))
    first = normalize(bytes(body), market="spot", memo=memo)
    filters = bytes(first.records[0].filters_raw)
    body[:] = b" " * len(body)  # the caller reuses its buffer
    assert bytes(first.records[0].filters_raw) == filters


def test_build_snapshot_with_and_without_digests_agree() -> None:
    result = normalize(make_payload(*_rows(12)), market="spot")
    listed = prioritize(result.records, list_statuses={"TRADING"}, quote_priority=[], pinned=[])
    with_digests = build_snapshot(result.records, listed, result.digests)
    without = build_snapshot(result.records, listed)
    assert with_digests == without
    assert with_digests.by_symbol == without.by_symbol
    assert with_digests.symbols_json == without.symbols_json


def test_coinm_rows_take_their_status_from_contract_status() -> None:
    # /dapi/v1/exchangeInfo names the field contractStatus and sends no status at all.
    row = make_row("BTCUSD_PERP", quoteAsset="USD", contractType="PERPETUAL", marginAsset="BTC")
    del row["status"]
    row["contractStatus"] = "TRADING"
    rec = only_record(make_payload(row), market="coinm")
    assert rec.status == "TRADING"
    assert rec.contract_type == "PERPETUAL"
    # `status`, when present, wins
    both = make_row("ETHUSD_PERP", quoteAsset="USD", status="BREAK", contractStatus="TRADING")
    assert only_record(make_payload(both), market="coinm").status == "BREAK"


def test_memo_does_not_keep_the_payload_body_alive() -> None:
    import sys

    memo = RowMemo()
    body = make_payload(*_rows(5))
    before = sys.getrefcount(body)
    result = normalize(body, market="spot", memo=memo)
    # a Raw slice keeps a reference to the whole body; the memo and the records must not
    assert sys.getrefcount(body) == before
    assert result.records
    normalize(body, market="spot", memo=memo)  # an all-unchanged pass keeps none either
    assert sys.getrefcount(body) == before


def _with_time(rows: list[dict[str, Any]], server_time: int, **top: Any) -> bytes:
    # Compact, as Binance sends it (the layout the header-only path recognizes).
    return compact_json(json.loads(make_payload(*rows, serverTime=server_time, **top)))


def test_replies_that_differ_only_in_their_header_cost_one_hash() -> None:
    rows = _rows(30)
    memo = RowMemo()
    normalize(_with_time(rows, 1), market="spot", memo=memo)
    second = normalize(_with_time(rows, 2), market="spot", memo=memo)
    assert second.same_rows
    third = normalize(_with_time(rows, 3), market="spot", memo=memo)
    # The rows were not looked at: the very same result objects, with this reply's header.
    assert third.records is second.records
    assert third.digests is second.digests
    assert (third.same_rows, third.processed, third.server_time) == (True, 0, 3)
    _same(third, normalize(_with_time(rows, 3), market="spot"))
    limits = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1}
    ]
    fourth = normalize(_with_time(rows, 4, rateLimits=limits), market="spot", memo=memo)
    assert fourth.records is second.records
    assert (fourth.server_time, fourth.weight_limit) == (4, 1)


def test_a_changed_row_after_header_only_replies_is_derived_again() -> None:
    rows = _rows(30)
    memo = RowMemo()
    for t in (1, 2, 3):
        normalize(_with_time(rows, t), market="spot", memo=memo)
    changed = [*rows[:10], make_row("S010USDT", status="BREAK"), *rows[11:]]
    result = normalize(_with_time(changed, 4), market="spot", memo=memo)
    assert not result.same_rows
    assert result.processed == 1
    _same(result, normalize(_with_time(changed, 4), market="spot"))
    # Back to the old rows: derived from the memo again, not taken for the changed ones.
    back = normalize(_with_time(rows, 5), market="spot", memo=memo)
    _same(back, normalize(_with_time(rows, 5), market="spot"))


def test_a_header_key_after_the_rows_is_never_taken_from_memory() -> None:
    rows = _rows(5)
    body = {"symbols": rows, "serverTime": 7}  # serverTime after the rows
    payload = msgspec.json.encode(body)
    memo = RowMemo()
    results = [normalize(payload, market="spot", memo=memo) for _ in range(3)]
    assert [r.server_time for r in results] == [7, 7, 7]
    assert memo.region == b""  # the one-hash shortcut is never armed: the payload is decoded


def test_rows_repaired_after_odd_ones_give_the_same_result_as_a_fresh_run() -> None:
    """The previous result had dropped, refused and repeated rows: it is not patched."""
    clean = _rows(12)
    odd = [dict(r) for r in clean]
    odd[2] = make_row("BAD NAME")
    odd[3] = make_row("S000USDT")
    odd[4] = {"symbol": "S004USDT", "status": "TRADING"}
    memo = RowMemo()
    normalize(make_payload(*odd), market="spot", memo=memo)
    warm = normalize(make_payload(*clean), market="spot", memo=memo)
    _same(warm, normalize(make_payload(*clean), market="spot"))
    assert warm.processed == 3


def test_keep_json_hands_over_each_derived_record_json_and_the_memo_keeps_none() -> None:
    from daemon.contract.record import encode_record

    before = _rows(12)
    after = [dict(r) for r in before]
    after[4] = make_row("S004USDT", status="BREAK")
    memo = RowMemo()
    first = normalize(make_payload(*before), market="spot", memo=memo, keep_json=True)
    assert first.json is not None
    made = list(first.json.items())
    assert [rec for rec, _ in made] == list(first.records)
    for rec, blob in made:
        assert blob == encode_record(rec)
    assert memo.last is not None
    assert memo.last.json is None  # the memo never keeps JSON
    second = normalize(make_payload(*after), market="spot", memo=memo, keep_json=True)
    assert second.json is not None
    assert [rec.symbol for rec, _ in second.json.items()] == ["S004USDT"]  # derived now only
    assert normalize(make_payload(*after), market="spot").json is None  # off by default
