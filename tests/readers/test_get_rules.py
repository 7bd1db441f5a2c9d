"""``get_rules``: compiled order rules through the readers, sync and async twins, against real
redis-server processes holding snapshots written by the daemon's own store; and the reader
changes that came with it (``get_symbols(statuses=...)`` on a missing snapshot, readers
configured through ``load_config``)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import redis

from daemon import readers
from daemon.config.loader import load_config
from daemon.config.settings import load_settings
from daemon.contract.keys import market_keys
from daemon.contract.record import SymbolRecord
from daemon.readers import SnapshotMissingError, SymbolReader
from daemon.readers import _near_cache as near_cache_module
from daemon.readers._near_cache import MarketCache
from daemon.rules import RulesError, SymbolRules, check_order, rules_for
from tests.readers.reader_twins import FAST, MakeReader, live
from tests.readers.sample_snapshots import BASE, V1, V1_RECORDS, Writer, snapshot_of
from tests.support.command_counts import Commands

pytestmark = pytest.mark.timeout(30)

KEYS = market_keys("spot")


def _replace_filters(symbol: str, old: bytes, new: bytes) -> list[SymbolRecord]:
    """The sample's records, `symbol`'s stored filter array with `old` replaced by `new`."""
    out = []
    for r in BASE:
        if r.symbol == symbol:
            raw = bytes(r.filters_raw)
            assert old in raw
            r = msgspec.structs.replace(r, filters_raw=msgspec.Raw(raw.replace(old, new)))
        out.append(r)
    return out


# BTCUSDT's PRICE_FILTER tick 0.01 -> 0.02 (in the filters themselves: what rules read).
TICK_002 = snapshot_of(
    _replace_filters("BTCUSDT", b'"tickSize":"0.01000000"', b'"tickSize":"0.02000000"')
)


def _step(rules: SymbolRules | None) -> Decimal:
    assert rules is not None
    assert rules.price is not None
    return rules.price.step


# ---------------------------------------------------------------------------------------------
# without the near-cache
# ---------------------------------------------------------------------------------------------


def test_rules_of_every_stored_record_without_near_cache(
    redis_url: str, make_reader: MakeReader
) -> None:
    Writer(redis_url).commit(V1)
    reader = make_reader(redis_url)
    for record in BASE:
        assert reader.get_rules(record.symbol) == rules_for(record), record.symbol
    assert reader.get_rules("NOSUCHSYMBOL") is None
    with pytest.raises(SnapshotMissingError):
        reader.get_rules("BTCUSDT", "usdm")


def test_rules_without_near_cache_cost_one_hget(
    redis_url: str, direct: redis.Redis, make_reader: MakeReader
) -> None:
    Writer(redis_url).commit(V1)
    reader = make_reader(redis_url)
    reader.get_rules("BTCUSDT")  # warm the connection
    with Commands(direct) as seen:
        first = reader.get_rules("BTCUSDT")
        second = reader.get_rules("BTCUSDT")
    assert seen.delta == {"hget": 2}
    assert first == second
    assert first is not second  # compiled again each time: nothing is kept


# ---------------------------------------------------------------------------------------------
# with the near-cache
# ---------------------------------------------------------------------------------------------


def test_near_cache_hit_returns_the_kept_rules_without_redis(
    redis_url: str, direct: redis.Redis, make_reader: MakeReader
) -> None:
    Writer(redis_url).commit(V1)
    reader = make_reader(redis_url, near_cache=FAST)
    assert reader.wait_until(live)
    with Commands(direct) as first:
        rules = reader.get_rules("BTCUSDT")
        assert reader.get_rules("NOSUCHSYMBOL") is None
    assert first.delta["evalsha_ro"] == 2  # one record script per miss (HGETs run inside)
    assert rules == rules_for(V1_RECORDS["BTCUSDT"])
    with Commands(direct) as again:
        for _ in range(50):
            assert reader.get_rules("BTCUSDT") is rules  # the kept object, not a new compile
            assert reader.get_rules("NOSUCHSYMBOL") is None
    assert again.delta == {}
    status = reader.near_cache_status()
    assert status.compiled["spot"] == 1
    assert status.entries["spot"] == 2


def test_a_hit_compiles_nothing(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    Writer(redis_url).commit(V1)
    compiled: list[str] = []

    def counting(record: SymbolRecord) -> SymbolRules:
        compiled.append(record.symbol)
        return rules_for(record)

    monkeypatch.setattr(near_cache_module, "rules_for", counting)
    with SymbolReader.from_url(redis_url, near_cache=FAST) as reader:
        assert reader.wait_until(live)
        assert reader.get_symbol("BTCUSDT") is not None  # the record is cached first...
        assert compiled == []  # ...and get_symbol never compiles
        for _ in range(100):
            reader.get_rules("BTCUSDT")
    assert compiled == ["BTCUSDT"]


def test_new_version_drops_the_rules_with_the_record(
    redis_url: str, direct: redis.Redis, make_reader: MakeReader
) -> None:
    writer = Writer(redis_url)
    writer.commit(V1)
    reader = make_reader(redis_url, near_cache=FAST)
    assert reader.wait_until(live)
    old = reader.get_rules("BTCUSDT")
    assert _step(old) == Decimal("0.01")
    writer.commit(TICK_002)
    assert reader.wait_until(lambda s: s.last_events.get("spot") == TICK_002.version)
    assert reader.near_cache_status().compiled["spot"] == 0
    with Commands(direct) as seen:
        new = reader.get_rules("BTCUSDT")
    assert seen.delta["evalsha_ro"] == 1
    assert _step(new) == Decimal("0.02")
    assert not check_order(new, "BUY", "LIMIT", quantity="0.001", price="27000.02").ok
    assert reader.get_rules("BTCUSDT") is new


def test_rules_compiled_for_an_older_record_are_never_served_for_a_newer_one() -> None:
    mc = MarketCache()
    v1, v2 = V1_RECORDS["BTCUSDT"], msgspec.structs.replace(V1_RECORDS["BTCUSDT"], tick_size="x")
    mc.records = {"BTCUSDT": v1}
    old_rules = mc.rules_of("BTCUSDT", v1)
    assert mc.rules_of("BTCUSDT", v1) is old_rules
    mc._reset("v2")
    mc.records["BTCUSDT"] = v2
    # A lookup that held v1 before the reset finishes now: its rules are returned, not kept.
    assert mc.rules_of("BTCUSDT", v1) == old_rules
    assert mc.compiled == {}
    new_rules = mc.rules_of("BTCUSDT", v2)
    assert new_rules is not old_rules
    assert mc.compiled == {"BTCUSDT": (v2, new_rules)}
    mc.compiled["BTCUSDT"] = (v1, old_rules)  # a racing store of the old pair
    assert mc.rules_of("BTCUSDT", v2) is not old_rules


def test_malformed_filters_raise_rules_error_and_nothing_is_kept(
    redis_url: str, make_reader: MakeReader
) -> None:
    records = _replace_filters("ETHBTC", b'"minPrice":"', b'"minPrice":"abc')
    Writer(redis_url).commit(snapshot_of(records))
    for options in (False, FAST):
        reader = make_reader(redis_url, near_cache=options)
        if options:
            assert reader.wait_until(live)
        with pytest.raises(RulesError, match="ETHBTC"):
            reader.get_rules("ETHBTC")
        assert reader.get_symbol("ETHBTC") is not None  # the record itself is fine
        assert reader.near_cache_status().compiled.get("spot", 0) == 0


# ---------------------------------------------------------------------------------------------
# get_symbols(statuses=...) when the snapshot is missing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("near", [False, True])
@pytest.mark.parametrize("statuses", [{"TRADING"}, set()])
def test_get_symbols_by_status_raises_when_by_symbol_is_missing(
    redis_url: str,
    direct: redis.Redis,
    make_reader: MakeReader,
    near: bool,
    statuses: Collection[str],
) -> None:
    Writer(redis_url).commit(V1)
    reader = make_reader(redis_url, near_cache=FAST if near else False)
    if near:
        assert reader.wait_until(live)
    assert reader.get_symbols(statuses={"TRADING"})
    direct.delete(KEYS.by_symbol)  # evicted, as under allkeys-lru
    with Commands(direct) as seen, pytest.raises(SnapshotMissingError) as caught:
        reader.get_symbols(statuses=statuses)
    assert seen.delta["evalsha_ro"] == 1  # decided in the same round trip
    assert "hget" not in seen.delta or seen.delta["hget"] == 1  # the version, in the script
    assert caught.value.key == KEYS.by_symbol
    assert reader.get_symbols()  # the listing itself is still there and still served


def test_get_symbols_by_status_on_an_empty_database_raises(
    redis_url: str, make_reader: MakeReader
) -> None:
    reader = make_reader(redis_url)
    with pytest.raises(SnapshotMissingError):
        reader.get_symbols(statuses={"TRADING"})
    assert reader.get_symbols() == []  # unchanged: the listing call still answers []


# ---------------------------------------------------------------------------------------------
# configuration through load_config, and the module-level functions
# ---------------------------------------------------------------------------------------------


def test_from_settings_takes_a_config_or_a_loaded(redis_url: str) -> None:
    Writer(redis_url).commit(V1)
    config = load_config(environ={"REDIS_URL": redis_url}, use_default_path=False)
    loaded = load_settings(environ={"REDIS_URL": redis_url}, use_default_path=False)
    with SymbolReader.from_settings(config) as by_config:
        assert by_config.get_rules("BTCUSDT") == rules_for(V1_RECORDS["BTCUSDT"])
    with SymbolReader.from_settings(loaded) as by_loaded:
        assert by_loaded.get_rules("BTCUSDT") == rules_for(V1_RECORDS["BTCUSDT"])
    with pytest.raises(TypeError):
        SymbolReader.from_settings("redis://localhost")  # type: ignore[arg-type]


def test_from_settings_without_arguments_uses_load_config(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    Writer(redis_url).commit(V1)
    seen: list[object] = []
    real = load_config

    def spy(*args: Any, **kwargs: Any) -> Any:
        config = real(tmp_path / "none.toml", environ={"REDIS_URL": redis_url}, **kwargs)
        seen.append(config)
        return config

    monkeypatch.setattr("daemon.readers._core.load_config", spy)
    (tmp_path / "none.toml").write_text("")
    with SymbolReader.from_settings() as reader:
        assert reader.get_symbol("BTCUSDT") == V1_RECORDS["BTCUSDT"]
    assert len(seen) == 1


def test_module_functions_get_rules(redis_url: str) -> None:
    Writer(redis_url).commit(V1)
    readers.configure(load_config(environ={"REDIS_URL": redis_url}, use_default_path=False))
    expected = rules_for(V1_RECORDS["BTCUSDT"])
    assert readers.get_rules_sync("BTCUSDT") == expected
    assert readers.get_rules_sync("NOSUCHSYMBOL") is None

    async def work() -> SymbolRules | None:
        try:
            return await readers.get_rules("BTCUSDT")
        finally:
            await readers.close_async()

    assert asyncio.run(work()) == expected


def test_module_functions_get_rules_with_near_cache(redis_url: str, direct: redis.Redis) -> None:
    Writer(redis_url).commit(V1)
    config = load_config(environ={"REDIS_URL": redis_url}, use_default_path=False)
    readers.configure(config, near_cache=FAST)
    assert readers.default_reader().wait_until(live)
    rules = readers.get_rules_sync("BTCUSDT")
    with Commands(direct) as seen:
        assert readers.get_rules_sync("BTCUSDT") is rules
    assert seen.delta == {}
