"""The four recorded payloads as compiled rules and as raw filter objects, loaded once per
test session (each test skips with a clear reason when the shared fixtures are absent)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from daemon.rules import SymbolRules, rules_for
from daemon.snapshot import normalize
from tests.support.fixtures import fixture_bytes

PAYLOADS = {
    "spot-exchangeinfo-2020-11.json": "spot",
    "spot-exchangeinfo-2023-09.json": "spot",
    "spot-testnet-exchangeinfo-2024-09.json": "spot",
    "usdm-futures-exchangeinfo-2025-12.json": "usdm",
}


@dataclass(frozen=True)
class Symbol:
    """One recorded symbol: its compiled rules and its upstream filters, decoded as plain
    JSON (for the independent reference and for ccxt)."""

    payload: str
    rules: SymbolRules
    filters: dict[str, dict[str, Any]]
    row: dict[str, Any]


@functools.cache
def _load(name: str) -> tuple[Symbol, ...]:
    body = fixture_bytes(name)
    market = PAYLOADS[name]
    records = {r.symbol: r for r in normalize.normalize(body, market=market).records}
    rows = json.loads(body)["symbols"]
    found = []
    for row in rows:
        record = records.get(row["symbol"])
        if record is None:
            continue
        filters = {f["filterType"]: f for f in row["filters"]}
        found.append(Symbol(name, rules_for(record), filters, row))
    return tuple(found)


def symbols(name: str) -> tuple[Symbol, ...]:
    """Every symbol of payload ``name`` (skips the calling test when it is absent)."""
    return _load(name)


def all_symbols() -> tuple[Symbol, ...]:
    return tuple(s for name in PAYLOADS for s in symbols(name))


@functools.cache
def payload_json(name: str) -> dict[str, Any]:
    return json.loads(fixture_bytes(name))  # type: ignore[no-any-return]
