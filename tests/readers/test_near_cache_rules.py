"""The near-cache's rules without Redis: which ticket and version may install or replace a
cached snapshot, and the options it accepts.

Against real redis-server processes; tests taking ``make_reader`` run on both readers.
"""

from __future__ import annotations

import time

import msgspec
import pytest

from daemon.contract.record import SymbolRecord
from daemon.readers import NearCacheOptions
from daemon.readers._near_cache import MarketCache, NearCache
from tests.readers.sample_snapshots import V1_RECORDS

pytestmark = pytest.mark.timeout(20)


def _record(tick: str) -> SymbolRecord:
    return msgspec.structs.replace(V1_RECORDS["BTCUSDT"], tick_size=tick)


def test_rule_current_ticket_replaces_version() -> None:
    near = NearCache(NearCacheOptions(markets=("spot",)))
    mc = near.markets["spot"]
    near.offer(mc, mc.gen, "v1", "BTCUSDT", _record("1"))
    assert mc.version == "v1"
    assert mc.records["BTCUSDT"] == _record("1")
    near.offer(mc, mc.gen, "v2", "ETHUSDT", None)  # a read that started later saw v2
    assert mc.version == "v2"
    assert mc.records == {"ETHUSDT": None}


def test_rule_stale_ticket_with_other_version_empties() -> None:
    near = NearCache(NearCacheOptions(markets=("spot",)))
    mc: MarketCache = near.markets["spot"]
    ticket = mc.gen  # two reads start together...
    near.offer(mc, ticket, "v2", "BTCUSDT", _record("2"))  # ...one returns v2 first
    near.offer(mc, ticket, "v1", "ETHUSDT", None)  # the other saw v1: order unknown
    assert mc.version is None
    assert mc.records == {}
    assert "BTCUSDT" not in mc.records  # neither is served


def test_rule_stale_ticket_with_same_version_installs() -> None:
    near = NearCache(NearCacheOptions(markets=("spot",)))
    mc = near.markets["spot"]
    ticket = mc.gen
    near.offer(mc, ticket, "v1", "BTCUSDT", _record("1"))
    near.offer(mc, ticket, "v1", "ETHUSDT", None)  # same content hash: same data
    assert mc.records == {"BTCUSDT": _record("1"), "ETHUSDT": None}


def test_rule_events_and_subscription() -> None:
    near = NearCache(NearCacheOptions(markets=("spot",)))
    mc = near.markets["spot"]
    near.offer(mc, mc.gen, "v1", "BTCUSDT", _record("1"))
    near.on_event("spot", b'{"market":"spot","version":"v1"}')  # late or repeated: kept
    assert mc.records
    ticket = mc.gen
    near.on_event("spot", b'{"market":"spot","version":"v2"}')
    assert mc.version is None
    assert mc.records == {}
    near.offer(mc, ticket, "v1", "BTCUSDT", _record("1"))  # read from before the event
    assert mc.records == {}
    near.offer(mc, mc.gen, "v2", "BTCUSDT", _record("2"))
    near.on_event("spot", b"not json")  # unreadable: drop, to be safe
    assert mc.records == {}
    near.offer(mc, mc.gen, "v2", "BTCUSDT", _record("2"))
    near.subscribed(time.monotonic())  # anything may have been missed before
    assert mc.records == {}
    assert near.live
    assert near.lost() is True
    assert near.live_until == 0.0


def test_rule_no_snapshot_is_never_cached() -> None:
    near = NearCache(NearCacheOptions(markets=("spot",), max_entries=2))
    mc = near.markets["spot"]
    near.offer(mc, mc.gen, None, "BTCUSDT", None)
    assert mc.records == {}
    for name in ("A", "B", "C"):
        near.offer(mc, mc.gen, "v1", name, None)
    assert len(mc.records) == 2  # bounded


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="ping_interval"):
        NearCacheOptions(ping_interval=2.0, silence_limit=1.0)
    with pytest.raises(TypeError):
        NearCacheOptions(markets="spot")  # type: ignore[arg-type]
