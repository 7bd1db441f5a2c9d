"""Tests for daemon.snapshot.listing: listing order and the snapshot blobs and version."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest

from daemon.contract.record import SymbolRecord, decode_record, encode_record
from daemon.snapshot.listing import (
    KeptListing,
    build_snapshot,
    patch_listing,
    patched,
    prioritize,
    replace_rows,
    splice_listing,
)
from daemon.snapshot.normalize import Encoded, digest, normalize
from tests.snapshot.rows import (
    compact_json,
    make_payload,
    make_row,
    only_record,
    records_by_symbol,
    snapshot_of,
)
from tests.support.fixtures import sample_bytes

# --- prioritize ----------------------------------------------------------------------------

_TEMPLATE = only_record(make_payload(make_row("TEMPLATE")))


def _rec(symbol: str, quote: str, status: str = "TRADING") -> SymbolRecord:
    return msgspec.structs.replace(_TEMPLATE, symbol=symbol, quote=quote, status=status)


_POOL = [
    _rec("ETHBTC", "BTC"),
    _rec("XRPUSDT", "USDT"),
    _rec("BTCUSDT", "USDT"),
    _rec("ADAUSDT", "USDT"),
    _rec("BTCFDUSD", "FDUSD"),
    _rec("ETHUSDT", "USDT"),
    _rec("BTCTRY", "TRY"),
    _rec("BTCEUR", "EUR"),
    _rec("SOLUSDT", "USDT", status="BREAK"),
    _rec("LUNAUSDT", "USDT", status="HALT"),
    _rec("BNBBTC", "BTC"),
]


def _order(records: list[SymbolRecord], **kwargs: Any) -> list[str]:
    params: dict[str, Any] = {
        "list_statuses": {"TRADING"},
        "quote_priority": ("USDT", "FDUSD", "BTC"),
        "pinned": (),
    }
    params.update(kwargs)
    return [r.symbol for r in prioritize(records, **params)]


def test_prioritize_quote_rank_then_symbol_unknown_quotes_last() -> None:
    assert _order(_POOL) == [
        "ADAUSDT",
        "BTCUSDT",
        "ETHUSDT",
        "XRPUSDT",
        "BTCFDUSD",
        "BNBBTC",
        "ETHBTC",
        "BTCEUR",  # unknown quotes: after every known one, by symbol
        "BTCTRY",
    ]


def test_prioritize_pinned_first_in_given_order_only_if_present_and_listed() -> None:
    order = _order(_POOL, pinned=("ETHBTC", "SOLUSDT", "NOPEUSDT", "BTCTRY", "ETHBTC"))
    assert order[:2] == ["ETHBTC", "BTCTRY"]
    assert "SOLUSDT" not in order  # pinned but BREAK: not listed
    assert order.count("ETHBTC") == 1
    assert order[2:] == ["ADAUSDT", "BTCUSDT", "ETHUSDT", "XRPUSDT", "BTCFDUSD", "BNBBTC", "BTCEUR"]


def test_prioritize_statuses_and_determinism() -> None:
    expected = _order(_POOL, list_statuses=("TRADING", "BREAK"), pinned=("BTCUSDT",))
    assert expected[0] == "BTCUSDT"
    assert "SOLUSDT" in expected
    assert "LUNAUSDT" not in expected
    rng = random.Random(7)
    for _ in range(5):
        shuffled = _POOL[:]
        rng.shuffle(shuffled)
        assert _order(shuffled, list_statuses=("TRADING", "BREAK"), pinned=("BTCUSDT",)) == expected


def test_prioritize_symbol_order_is_plain_str_order() -> None:
    records = [_rec("币安人生USDT", "USDT"), _rec("ZECUSDT", "USDT"), _rec("1INCHUSDT", "USDT")]
    assert _order(records) == ["1INCHUSDT", "ZECUSDT", "币安人生USDT"]


def test_prioritize_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError, match="list_statuses"):
        prioritize(_POOL, list_statuses="TRADING", quote_priority=(), pinned=())
    with pytest.raises(TypeError, match="pinned"):
        prioritize(_POOL, list_statuses={"TRADING"}, quote_priority=(), pinned="BTCUSDT")


# --- snapshot blobs ------------------------------------------------------------------------


def test_snapshot_contents() -> None:
    data = sample_bytes("spot-sample.json")
    result = normalize(data, market="spot")
    listed = prioritize(
        result.records, list_statuses={"TRADING"}, quote_priority=("USDT",), pinned=("ETHBTC",)
    )
    snap = build_snapshot(result.records, listed)
    assert snap.count == len(snap.by_symbol) == 20  # every status
    assert snap.listed == len(listed) == 16
    assert snap.by_symbol["GASBTC"] == encode_record(records_by_symbol(result)["GASBTC"])
    assert {decode_record(v).symbol for v in snap.by_symbol.values()} == set(snap.by_symbol)
    # symbols_json is exactly the listed records, in order, same bytes as encoding each.
    assert json.loads(snap.symbols_json) == [json.loads(encode_record(r)) for r in listed]
    assert msgspec.json.decode(snap.symbols_json, type=list[SymbolRecord]) == listed
    assert snap.symbols_json == b"[" + b",".join(encode_record(r) for r in listed) + b"]"
    assert json.loads(snap.symbols_json)[0]["symbol"] == "ETHBTC"
    assert len(snap.version) == 32
    int(snap.version, 16)


@pytest.mark.parametrize("listed_count", [0, 1, 2, 16])
def test_listing_spans_give_the_same_bytes_as_encoding_each_row(listed_count: int) -> None:
    """A whole write cuts listed rows out of the listing: the same bytes as encoding them."""
    result = normalize(sample_bytes("spot-sample.json"), market="spot")
    listed = prioritize(
        result.records, list_statuses={"TRADING"}, quote_priority=("USDT",), pinned=("ETHBTC",)
    )[:listed_count]
    snap = build_snapshot(result.records, listed, result.digests)
    listing, starts = snap.symbols_json_spans()
    assert starts is not None
    assert len(starts) == listed_count
    assert listing == snap.symbols_json
    assert snap.by_symbol_from(listing, starts) == snap.by_symbol
    assert list(snap.by_symbol_from(listing, starts)) == list(snap.by_symbol)  # record order
    # A listing not encoded here (read back from Redis) has no spans: rows are encoded.
    stored = type(snap).stored(snap.by_symbol, listing, version="v", count=20, listed=0)
    assert stored.symbols_json_spans() == (listing, None)
    assert stored.by_symbol_from(listing, None) == snap.by_symbol


def _spliced_pair(
    edit: dict[int, str],
) -> tuple[Any, Any, KeptListing]:
    """Snapshots before and after giving listed rows (by listing position) a new tick size
    (a longer or shorter text, so later rows move), and the listing kept from before."""
    result = normalize(sample_bytes("spot-sample.json"), market="spot")
    params: dict[str, Any] = {
        "list_statuses": {"TRADING"},
        "quote_priority": ("USDT",),
        "pinned": ("ETHBTC",),
    }
    before = build_snapshot(result.records, prioritize(result.records, **params))
    listing, starts = before.symbols_json_spans()
    assert starts is not None
    assert before.listing_digest is not None
    kept = KeptListing(before.listing_digest, before.listed_names, starts, len(listing), listing)
    edited = {before.listed_names[i]: tick for i, tick in edit.items()}
    records = [
        msgspec.structs.replace(r, tick_size=edited[r.symbol]) if r.symbol in edited else r
        for r in result.records
    ]
    after = build_snapshot(records, prioritize(records, **params))
    return before, after, kept


@pytest.mark.parametrize(
    "edit",
    [{}, {0: "0.1"}, {15: "0.000000000001"}, {3: "1", 4: "0.0000000000001", 15: "0.5"}],
    ids=["none", "first shorter", "last longer", "three"],
)
def test_a_spliced_listing_is_the_listing_encoded_whole(edit: dict[int, str]) -> None:
    before, after, kept = _spliced_pair(edit)
    spliced = splice_listing(kept, after, before)
    assert spliced is not None
    assert spliced == after.symbols_json_spans()
    assert after.by_symbol_from(*spliced) == after.by_symbol


def test_a_listing_is_not_spliced_from_another_listing_or_order() -> None:
    before, after, kept = _spliced_pair({2: "0.5"})
    other = KeptListing(b"\0" * 16, kept.names, kept.starts, kept.size, kept.listing)
    reordered = KeptListing(kept.digest, kept.names[::-1], kept.starts, kept.size, kept.listing)
    for wrong in (other, reordered):
        assert splice_listing(wrong, after, before) is None
        assert patch_listing(wrong, after, before) is None
    # Without the JSON kept (a large listing) nothing is spliced.
    bare = KeptListing(kept.digest, kept.names, kept.starts, kept.size)
    assert splice_listing(bare, after, before) is None


@pytest.mark.parametrize(
    ("edit", "in_place"),
    [
        ({2: "0.30000000"}, True),  # the same width: patched in place
        ({0: "0.20000000", 15: "0.40000000"}, True),
        ({2: "0.3"}, False),  # shorter: the rows after it move
    ],
)
def test_a_patched_listing_is_the_listing_encoded_whole(
    edit: dict[int, str], in_place: bool
) -> None:
    before, after, kept = _spliced_pair(edit)
    bare = KeptListing(kept.digest, kept.names, kept.starts, kept.size)  # no JSON needed
    patches = patch_listing(bare, after, before)
    if not in_place:
        assert patches is None
        return
    assert patches is not None
    assert len(patches) == len(edit)
    assert kept.listing is not None
    assert patched(kept.listing, patches) == after.symbols_json
    assert {p.old for p in patches} == {before.digests[before.listed_names[i]] for i in edit}


def test_a_snapshot_with_its_json_made_writes_the_same_bytes() -> None:
    result = normalize(sample_bytes("spot-sample.json"), market="spot", keep_json=True)
    listed = prioritize(
        result.records, list_statuses={"TRADING"}, quote_priority=("USDT",), pinned=("ETHBTC",)
    )
    snap = build_snapshot(result.records, listed, result.digests)
    assert result.json is not None
    made = snap.with_json(result.json)
    assert not made.records  # every row's JSON was made by normalize
    assert made.symbols_json_spans() == snap.symbols_json_spans()
    assert made.by_symbol_from(*made.symbols_json_spans()) == snap.by_symbol
    assert (made.version, made.digests, made.listing_digest) == (
        snap.version,
        snap.digests,
        snap.listing_digest,
    )
    # JSON made for another record object (an older one, a held row) is not taken.
    other = Encoded(
        [msgspec.structs.replace(rec) for rec in result.json.records],
        result.json.text,
        result.json.ends,
    )
    assert snap.with_json(other) is snap


@pytest.mark.parametrize(
    ("edit", "same_order"),
    [
        ({"tick_size": "0.5"}, True),
        ({"min_notional": "7", "permissions": ("SPOT",)}, True),
        ({"status": "BREAK"}, False),  # leaves the listing
        ({"quote": "EUR"}, False),  # another quote rank
    ],
)
def test_rows_replaced_in_place_give_what_a_full_build_gives(
    edit: dict[str, Any], same_order: bool
) -> None:
    result = normalize(sample_bytes("spot-sample.json"), market="spot")
    params: dict[str, Any] = {
        "list_statuses": {"TRADING"},
        "quote_priority": ("USDT",),
        "pinned": ("ETHBTC",),
    }
    before = build_snapshot(result.records, prioritize(result.records, **params), result.digests)
    changed = [
        msgspec.structs.replace(rec, **edit) for rec in result.records if rec.status == "TRADING"
    ][1:3]
    swapped = {rec.symbol: rec for rec in changed}
    records = [swapped.get(rec.symbol, rec) for rec in result.records]
    digests = {rec.symbol: digest(encode_record(rec)) for rec in records}
    whole = build_snapshot(records, prioritize(records, **params), digests)
    fast = replace_rows(before, changed, digests)
    if not same_order:
        assert fast is None
        return
    assert fast is not None
    assert (fast.version, fast.listing_digest, fast.count, fast.listed) == (
        whole.version,
        whole.listing_digest,
        whole.count,
        whole.listed,
    )
    assert list(fast.digests.items()) == list(whole.digests.items())
    assert fast.records == whole.records
    assert fast.listed_names == whole.listed_names
    assert fast.symbols_json == whole.symbols_json
    # A snapshot read back from Redis has no hash header to start from.
    stored = type(before).stored(
        before.by_symbol, before.symbols_json, version="v", count=1, listed=0
    )
    assert replace_rows(stored, changed, digests) is None


def test_empty_snapshot() -> None:
    snap = build_snapshot([], [])
    assert (snap.by_symbol, snap.symbols_json, snap.count, snap.listed) == ({}, b"[]", 0, 0)
    assert json.loads(snap.symbols_json) == []


def test_version_stable_and_independent_of_upstream_row_order() -> None:
    data = sample_bytes("spot-sample.json")
    first = snapshot_of(data)
    assert snapshot_of(data).version == first.version
    body = json.loads(data)
    body["symbols"].reverse()
    body["serverTime"] += 60_000  # a later fetch of the same content
    assert snapshot_of(compact_json(body)).version == first.version


def test_version_changes_when_one_tick_size_changes() -> None:
    data = sample_bytes("spot-sample.json")
    before = snapshot_of(data)
    body = json.loads(data)
    row = next(r for r in body["symbols"] if r["symbol"] == "ANTUSDT")
    assert row["status"] == "BREAK"
    price = next(f for f in row["filters"] if f["filterType"] == "PRICE_FILTER")
    price["tickSize"] = "0.00200000"
    after = snapshot_of(compact_json(body))
    assert after.version != before.version
    # The change is in an unlisted (BREAK) row: symbols_json is unchanged, by_symbol is not.
    assert after.symbols_json == before.symbols_json
    assert after.by_symbol[row["symbol"]] != before.by_symbol[row["symbol"]]


def test_version_changes_when_listing_order_changes() -> None:
    data = sample_bytes("spot-sample.json")
    assert snapshot_of(data).version != snapshot_of(data, pinned=("GASBTC", "BTCTRY")).version
    assert snapshot_of(data).version != snapshot_of(data, pinned=("BTCTRY",)).version


def test_build_snapshot_rejects_inconsistent_input() -> None:
    records = list(normalize(sample_bytes("spot-sample.json"), market="spot").records)
    with pytest.raises(ValueError, match="duplicate"):
        build_snapshot([*records, records[0]], [])
    with pytest.raises(ValueError, match="not in records"):
        build_snapshot(records[1:], [records[0]])
