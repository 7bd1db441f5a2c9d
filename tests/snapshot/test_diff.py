"""Tests for daemon.snapshot.diff."""

from __future__ import annotations

import json

from daemon.contract.record import decode_record, encode_record
from daemon.snapshot.diff import diff_snapshots
from tests.snapshot.rows import compact_json, make_payload, make_row, only_record, snapshot_of
from tests.support.fixtures import sample_bytes

# --- diff ----------------------------------------------------------------------------------


def test_diff_identical_is_empty() -> None:
    snap = snapshot_of(sample_bytes("spot-sample.json"))
    diff = diff_snapshots(snap.by_symbol, dict(snap.by_symbol))
    assert diff.is_empty
    assert diff.to_builtins() == {
        "added": [],
        "removed": [],
        "status_changed": [],
        "filters_changed": [],
        "other_changed": [],
    }
    assert diff_snapshots({}, {}).is_empty


def test_diff_reports_each_kind_of_change() -> None:
    data = sample_bytes("spot-sample.json")
    old = snapshot_of(data)
    body = json.loads(data)
    rows = {r["symbol"]: r for r in body["symbols"]}
    rows["ANTUSDT"]["status"] = "TRADING"  # status change
    next(f for f in rows["ETHBTC"]["filters"] if f["filterType"] == "LOT_SIZE")["stepSize"] = (
        "0.00100000"  # step change
    )
    rows["XRPUSDT"]["filters"].append({"filterType": "MAX_POSITION", "maxPosition": "10.0"})
    rows["DOGEUSDT"]["permissionSets"] = [["SPOT"]]  # not a filter change
    del rows["WAVESBTC"]
    rows["PEPEUSDT"] = dict(rows["DOGEUSDT"], symbol="PEPEUSDT", baseAsset="PEPE")
    body["symbols"] = list(rows.values())
    new = snapshot_of(compact_json(body))

    diff = diff_snapshots(old.by_symbol, new.by_symbol)
    assert diff.added == ("PEPEUSDT",)
    assert diff.removed == ("WAVESBTC",)
    assert diff.status_changed == (("ANTUSDT", "BREAK", "TRADING"),)
    assert diff.filters_changed == ("ETHBTC", "XRPUSDT")
    assert diff.other_changed == ("DOGEUSDT",)
    assert not diff.is_empty
    builtins = diff.to_builtins()
    assert builtins["status_changed"] == [{"symbol": "ANTUSDT", "old": "BREAK", "new": "TRADING"}]
    assert json.loads(json.dumps(builtins)) == builtins

    # Same answer from records, and from a mix of records and stored bytes.
    old_records = {s: decode_record(b) for s, b in old.by_symbol.items()}
    new_records = {s: decode_record(b) for s, b in new.by_symbol.items()}
    assert diff_snapshots(old_records, new_records) == diff
    assert diff_snapshots(old.by_symbol, new_records) == diff
    # And it is directional.
    reverse = diff_snapshots(new.by_symbol, old.by_symbol)
    assert (reverse.added, reverse.removed) == (("WAVESBTC",), ("PEPEUSDT",))
    assert reverse.status_changed == (("ANTUSDT", "TRADING", "BREAK"),)


def test_diff_ignores_filter_key_order() -> None:
    # USD-M sends the keys of each filter object in a varying order.
    a = only_record(
        make_payload(make_row(filters=[{"filterType": "PRICE_FILTER", "tickSize": "0.1"}]))
    )
    b = only_record(
        make_payload(make_row(filters=[{"tickSize": "0.1", "filterType": "PRICE_FILTER"}]))
    )
    assert encode_record(a) != encode_record(b)
    assert diff_snapshots({"BTCUSDT": a}, {"BTCUSDT": b}).is_empty


def test_diff_treats_an_unreadable_old_value_as_changed() -> None:
    rec = only_record(make_payload(make_row()))
    diff = diff_snapshots({"BTCUSDT": b"\x00garbage"}, {"BTCUSDT": rec})
    assert diff.status_changed == (("BTCUSDT", "", "TRADING"),)
    assert diff.filters_changed == ("BTCUSDT",)
    assert diff.other_changed == ("BTCUSDT",)
