"""``rules_for`` compiles each distinct filter text once and shares the result; it must give
exactly what ``compile_rules`` gives on the decoded filters, and errors must still name the
symbol they come from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from daemon.rules import RulesError, compile_rules, rules_for
from tests.rules.payloads import PAYLOADS, symbols


@dataclass(frozen=True)
class Record:
    symbol: str
    market: str
    status: str
    order_types: tuple[str, ...]
    filters_raw: msgspec.Raw


def record(symbol: str, filters: list[dict[str, Any]], market: str = "spot") -> Record:
    raw = msgspec.Raw(json.dumps(filters).encode())
    return Record(symbol, market, "TRADING", ("LIMIT", "MARKET"), raw)


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_rules_for_equals_compile_rules(payload: str) -> None:
    for sym in symbols(payload):
        row = sym.row
        direct = compile_rules(
            row["symbol"], sym.rules.market, row["status"], row["orderTypes"], row["filters"],
            contract_size=None if sym.rules.contract_size is None else row["contractSize"],
        )  # fmt: skip
        assert sym.rules == direct, row["symbol"]


def test_errors_name_each_symbol_even_for_a_shared_filter_text() -> None:
    bad = [{"filterType": "LOT_SIZE", "minQty": "1", "maxQty": "2", "stepSize": "x"}]
    for symbol in ("FIRSTBTC", "SECONDBTC"):
        with pytest.raises(RulesError) as caught:
            rules_for(record(symbol, bad))
        assert caught.value.symbol == symbol
        assert caught.value.field == "stepSize"


def test_shared_texts_give_equal_rules_per_market() -> None:
    pp = {"filterType": "PERCENT_PRICE", "multiplierUp": "1.05", "multiplierDown": "0.95"}
    spot = rules_for(record("A", [pp]))
    usdm = rules_for(record("A", [pp], market="usdm"))
    assert spot.percent_price is not None
    assert usdm.percent_price is not None
    assert not spot.percent_price.by_side_futures  # the same text compiles per market
    assert usdm.percent_price.by_side_futures
    twice = [pp, pp]
    with pytest.raises(RulesError, match="listed twice"):
        rules_for(record("B", twice))
    with pytest.raises(RulesError):
        rules_for(Record("C", "spot", "TRADING", ("LIMIT",), msgspec.Raw(b'{"not": "a list"}')))
