"""Normalizing recorded real Binance payloads (spot, USDⓈ-M, testnet; skipped when the shared
folder is absent), and diffing two of them.

Pure tests: the only I/O is reading the shipped samples and, when present, the shared
recorded payloads (never copied into the repo).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from daemon.contract.record import decode_record, encode_record, encode_records
from daemon.snapshot.diff import diff_snapshots
from daemon.snapshot.listing import build_snapshot, prioritize
from daemon.snapshot.normalize import digest, normalize
from tests.snapshot.rows import raw_filters_of, records_by_symbol, snapshot_of
from tests.support.fixtures import fixture_bytes


def test_fixture_spot_2023_09() -> None:
    data = fixture_bytes("spot-exchangeinfo-2023-09.json")
    result = normalize(data, market="spot")
    assert len(result.records) == result.rows == 2292
    assert (result.dropped, result.refused, result.duplicates, result.lenient) == (0, (), 0, 0)
    assert result.server_time == 1694185561976
    assert result.weight_limit == 6000
    listed = prioritize(
        result.records, list_statuses={"TRADING"}, quote_priority=("USDT",), pinned=()
    )
    snap = build_snapshot(result.records, listed)
    assert snap.count == 2292
    assert snap.listed == 1340
    # Independent cross-check against the stdlib parser (decimal strings compared as text).
    upstream = {row["symbol"]: row for row in json.loads(data)["symbols"]}
    raw = raw_filters_of(data)
    for rec in result.records:
        row = upstream[rec.symbol]
        filters = {f["filterType"]: f for f in row["filters"]}
        assert rec.tick_size == filters["PRICE_FILTER"]["tickSize"]
        assert rec.step_size == filters["LOT_SIZE"]["stepSize"]
        assert rec.min_notional == filters["NOTIONAL"]["minNotional"]
        assert rec.max_notional == filters["NOTIONAL"]["maxNotional"]
        assert rec.market_step_size == filters.get("MARKET_LOT_SIZE", {}).get("stepSize")
        assert rec.permissions == tuple(sorted(set(row["permissions"])))
        assert bytes(rec.filters_raw) == raw[rec.symbol]


def test_fixture_spot_2020_11_uses_min_notional() -> None:
    data = fixture_bytes("spot-exchangeinfo-2020-11.json")
    result = normalize(data, market="spot")
    assert len(result.records) == 1160
    upstream = {row["symbol"]: row for row in json.loads(data)["symbols"]}
    for rec in result.records:
        filters = {f["filterType"]: f for f in upstream[rec.symbol]["filters"]}
        assert "NOTIONAL" not in filters
        assert rec.min_notional == filters["MIN_NOTIONAL"]["minNotional"]
        assert rec.max_notional is None
    assert result.weight_limit == 1200


def test_fixture_usdm_2025_12() -> None:
    data = fixture_bytes("usdm-futures-exchangeinfo-2025-12.json")
    result = normalize(data, market="usdm")
    assert len(result.records) == 660
    assert result.lenient == 0
    assert all(r.contract_type is not None for r in result.records)
    assert Counter(r.status for r in result.records)["SETTLING"] == 49
    upstream = {row["symbol"]: row for row in json.loads(data)["symbols"]}
    for rec in result.records:
        row = upstream[rec.symbol]
        filters = {f["filterType"]: f for f in row["filters"]}
        assert rec.min_notional == filters["MIN_NOTIONAL"]["notional"]
        assert rec.tick_size == filters["PRICE_FILTER"]["tickSize"]
        assert rec.delivery_date == row["deliveryDate"]
        assert rec.margin_asset == row["marginAsset"]
        assert rec.permissions == tuple(sorted(set(row["permissionSets"])))
    names = {r.symbol for r in result.records}
    assert {"币安人生USDT", "测试测试USDT", "IDOL"} <= names
    assert records_by_symbol(result)["BTCUSDT_260327"].contract_type == "CURRENT_QUARTER"


def test_fixture_spot_testnet_2024_09_permissions_from_permission_sets() -> None:
    data = fixture_bytes("spot-testnet-exchangeinfo-2024-09.json")
    result = normalize(data, market="spot")
    assert len(result.records) == 1248
    upstream = {row["symbol"]: row for row in json.loads(data)["symbols"]}
    for rec in result.records:
        row = upstream[rec.symbol]
        assert row["permissions"] == []
        expected = tuple(sorted({p for group in row["permissionSets"] for p in group}))
        assert expected
        assert rec.permissions == expected


def test_fixture_versions_differ_between_payloads_and_diff_works() -> None:
    old = snapshot_of(fixture_bytes("spot-exchangeinfo-2020-11.json"))
    new = snapshot_of(fixture_bytes("spot-exchangeinfo-2023-09.json"))
    assert old.version != new.version
    diff = diff_snapshots(old.by_symbol, new.by_symbol)
    assert len(diff.added) == len(set(new.by_symbol) - set(old.by_symbol)) > 0
    assert len(diff.removed) == len(set(old.by_symbol) - set(new.by_symbol))
    assert all(
        json.loads(old.by_symbol[s])["status"] != json.loads(new.by_symbol[s])["status"]
        for s, _, _ in diff.status_changed
    )


@pytest.mark.parametrize(
    ("name", "market"),
    [
        ("spot-exchangeinfo-2020-11.json", "spot"),
        ("spot-exchangeinfo-2023-09.json", "spot"),
        ("spot-testnet-exchangeinfo-2024-09.json", "spot"),
        ("usdm-futures-exchangeinfo-2025-12.json", "usdm"),
    ],
)
def test_records_encode_again_to_the_very_same_bytes(name: str, market: str) -> None:
    # A snapshot keeps records and the digests of their JSON, and encodes the JSON again when
    # it writes: that must give the bytes the digest was taken of, and the bytes a record
    # read back from Redis gives, for every row (also after its filters were looked at).
    result = normalize(fixture_bytes(name), market=market)
    once = [encode_record(rec) for rec in result.records]
    assert encode_records(result.records) == once
    for rec, blob in zip(result.records, once, strict=True):
        assert result.digests[rec.symbol] == digest(blob)
        assert encode_record(decode_record(blob)) == blob
        assert rec.filters is not None
        assert encode_record(rec) == blob
    listed = prioritize(
        result.records, list_statuses={"TRADING"}, quote_priority=("USDT",), pinned=()
    )
    snap = build_snapshot(result.records, listed, result.digests)
    by_symbol, symbols_json = snap.materialize()
    assert (
        by_symbol
        == snap.by_symbol
        == {rec.symbol: b for rec, b in zip(result.records, once, strict=True)}
    )
    assert (
        symbols_json
        == snap.symbols_json
        == b"[" + b",".join(by_symbol[rec.symbol] for rec in listed) + b"]"
    )
