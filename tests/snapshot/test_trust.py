"""Matching a payload's rows against stored row digests (daemon.snapshot.trust), and the
stored value's layout (daemon.contract.rows). Pure: no I/O."""

from __future__ import annotations

import msgspec
import pytest

from daemon.contract.rows import decode_row_digests, encode_row_digests
from daemon.snapshot.normalize import RowMemo, digest, normalize
from daemon.snapshot.payload import WHOLE_BELOW
from daemon.snapshot.trust import fingerprint, match_rows
from tests.support.builders import SERVER_TIME, make_rows, payload, replace_row

ROWS = make_rows(40)
# Large enough to be split into chunks (the daemon's path for real payloads).
BIG_ROWS = make_rows(20000)


def _digests(body: bytes) -> bytes:
    memo = RowMemo()
    normalize(body, market="spot", memo=memo)
    return b"".join(memo.digests)


@pytest.mark.parametrize("rows", [ROWS, BIG_ROWS], ids=["whole", "chunked"])
def test_the_same_rows_match_and_give_the_header(rows: list[dict[str, object]]) -> None:
    body = payload(rows)
    if rows is BIG_ROWS:
        assert len(body) > WHOLE_BELOW
    matched = match_rows(body, _digests(body))
    assert matched is not None
    assert matched.rows == len(rows)
    assert matched.server_time == SERVER_TIME
    assert matched.weight_limit == 6000
    assert [limit.rate_limit_type for limit in matched.rate_limits] == [
        "REQUEST_WEIGHT",
        "ORDERS",
    ]


@pytest.mark.parametrize("rows", [ROWS, BIG_ROWS], ids=["whole", "chunked"])
def test_any_difference_does_not_match(rows: list[dict[str, object]]) -> None:
    body = payload(rows)
    stored = _digests(body)
    middle = rows[len(rows) // 2]["symbol"]
    assert isinstance(middle, str)
    changed = payload(replace_row(list(rows), middle, tick_size="0.5"))
    assert match_rows(changed, stored) is None
    assert match_rows(payload(rows[:-1]), stored) is None  # a row fewer
    assert match_rows(payload([*rows, *make_rows(1, prefix="Z")]), stored) is None  # one more
    assert match_rows(payload(list(reversed(rows))), stored) is None  # moved rows
    assert match_rows(body, stored[:-16]) is None
    # A new serverTime alone is not a row change: it matches, and is reported.
    later = match_rows(payload(rows, server_time=SERVER_TIME + 1), stored)
    assert later is not None
    assert later.server_time == SERVER_TIME + 1


def test_a_payload_that_is_not_json_does_not_match() -> None:
    assert match_rows(b'{"symbols": [', _digests(payload(ROWS))) is None


def test_the_stored_value_round_trips_and_refuses_odd_values() -> None:
    digests = bytes(range(32))
    value = encode_row_digests("ab" * 16, b"f" * 16, digests)
    decoded = decode_row_digests(value)
    assert decoded is not None
    assert (decoded.version, decoded.fingerprint, decoded.digests) == (
        "ab" * 16,
        b"f" * 16,
        digests,
    )
    assert decoded.rows == 2
    for odd in (
        None,
        b"",
        b"SRD1",
        value[:-1],
        b"XXXX" + value[4:],
        value[:5] + b"\xff" + value[6:],
    ):
        assert decode_row_digests(odd) is None
    with pytest.raises(ValueError, match="row digests"):
        encode_row_digests("v", b"short", digests)
    with pytest.raises(ValueError, match="row digests"):
        encode_row_digests("v", b"f" * 16, digests, b"short")
    with_region = decode_row_digests(encode_row_digests("v", b"f" * 16, digests, b"r" * 16))
    assert with_region is not None
    assert (with_region.region, with_region.digests) == (b"r" * 16, digests)


def test_the_fingerprint_names_the_listing_settings() -> None:
    base = fingerprint("spot", list_statuses=("TRADING",), quote_priority=("USDT",), pinned=())
    assert len(base) == 16
    assert base == fingerprint(
        "spot", list_statuses=("TRADING", "TRADING"), quote_priority=("USDT",), pinned=()
    )
    others = {
        fingerprint("usdm", list_statuses=("TRADING",), quote_priority=("USDT",), pinned=()),
        fingerprint("spot", list_statuses=("BREAK",), quote_priority=("USDT",), pinned=()),
        fingerprint("spot", list_statuses=("TRADING",), quote_priority=("BTC",), pinned=()),
        fingerprint("spot", list_statuses=("TRADING",), quote_priority=("USDT",), pinned=("X",)),
    }
    assert base not in others
    assert len(others) == 4


def test_digests_are_of_the_row_bytes_as_sent() -> None:
    body = payload(ROWS)
    assert _digests(body) == b"".join(digest(msgspec.json.encode(row)) for row in ROWS)


def test_a_match_names_the_rows_region_and_the_next_reply_matches_with_one_hash() -> None:
    body = payload(ROWS)
    first = match_rows(body, _digests(body))
    assert first is not None
    assert len(first.region) == 16
    # Same rows, a later serverTime: matched by the region alone (the digests given here are
    # wrong on purpose, so only the region can have matched), with this reply's header.
    later = payload(ROWS, server_time=SERVER_TIME + 5)
    wrong = bytes(len(_digests(body)))
    again = match_rows(later, wrong, first.region)
    assert again is not None
    assert (again.server_time, again.region) == (SERVER_TIME + 5, first.region)
    # A changed row: the region differs, and the rows are compared one by one.
    name = ROWS[3]["symbol"]
    assert isinstance(name, str)
    changed = payload(replace_row(list(ROWS), name, tick_size="0.5"))
    assert changed != body
    assert match_rows(changed, _digests(body), first.region) is None
    assert match_rows(changed, _digests(changed), first.region) is not None


def test_no_region_when_a_header_key_follows_the_rows() -> None:
    body = msgspec.json.encode({"symbols": ROWS, "serverTime": 9})
    matched = match_rows(body, _digests(body))
    assert matched is not None
    assert (matched.server_time, matched.region) == (9, b"")
