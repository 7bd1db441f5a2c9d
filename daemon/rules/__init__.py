"""Binance order rules: a symbol's exchangeInfo filters compiled into exact values, and the
checks and rounding a trading bot needs before it sends an order.

A pure library: no I/O, no logging, no output; every value is immutable. Its only module
state is a few bounded memo caches (``functools.lru_cache``) of parsed filter strings and
compiled filter objects: pure functions of their argument, so they change no result.
Numbers are ``Decimal`` (exact); inputs may be ``Decimal``, ``str``, ``int`` or ``float``
(a float is read by its shortest repr, ``Decimal(repr(x))``).

    rules = rules_for(record)                       # once per record (cache it)
    check = check_order(rules, "BUY", "LIMIT", quantity="0.01", price="27000.123")
    if not check.ok:
        for v in check.violations:
            print(v.message)                        # "Filter failure: PRICE_FILTER (...)"
    price = round_price(rules, "27000.123", side="BUY")     # Decimal("27000.12")
    qty = round_quantity(rules, "0.012345")                # Decimal("0.01234")
    order = fix_order(rules, "BUY", "LIMIT", quantity="0.00001", price="27000.123")
"""

from daemon.rules.check import check_order
from daemon.rules.compile import KNOWN_FILTERS, RecordLike, compile_rules, rules_for
from daemon.rules.decimals import Number
from daemon.rules.errors import NoValidOrder, OrderValueError, RulesError
from daemon.rules.fix import fix_order
from daemon.rules.model import (
    CheckPlan,
    FixedOrder,
    Grid,
    NotionalRule,
    OrderCheck,
    PercentPrice,
    PercentPriceBySide,
    SymbolRules,
    TrailingDelta,
    TypePlan,
    Violation,
)
from daemon.rules.rounding import RoundingMode, min_quantity, round_price, round_quantity

__all__ = [
    "KNOWN_FILTERS",
    "CheckPlan",
    "FixedOrder",
    "Grid",
    "NoValidOrder",
    "NotionalRule",
    "Number",
    "OrderCheck",
    "OrderValueError",
    "PercentPrice",
    "PercentPriceBySide",
    "RecordLike",
    "RoundingMode",
    "RulesError",
    "SymbolRules",
    "TrailingDelta",
    "TypePlan",
    "Violation",
    "check_order",
    "compile_rules",
    "fix_order",
    "min_quantity",
    "round_price",
    "round_quantity",
    "rules_for",
]
