"""ccxt as a second oracle for the rounding helpers.

ccxt's binance markets are built offline from the recorded payloads (``parse_markets`` +
``set_markets`` on the decoded JSON; ``fetch`` is replaced so nothing can reach the network).
For every recorded symbol, ``round_price(..., "nearest")`` must equal ``price_to_precision``
(ccxt ROUNDs prices, half up) and ``round_quantity`` must equal ``amount_to_precision``
(ccxt TRUNCATEs amounts), on many random values.

Known, documented differences (each counted and asserted below):

* ``tickSize`` 0 (USD-M OPENUSDT while PENDING_TRADING): ccxt asserts that a tick size must be
  positive; Binance documents 0 as "tick disabled", so ``round_price`` returns the price as
  is. We follow Binance.
* A quantity below one step: ccxt raises ``InvalidOrder`` ("must be greater than minimum
  amount precision"); ``round_quantity`` returns 0, which ``check_order`` then rejects
  (LOT_SIZE minQty). Both refuse the order; only the place differs.
"""

from __future__ import annotations

import decimal
import random
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from daemon.rules import round_price, round_quantity
from tests.rules.payloads import PAYLOADS, payload_json, symbols

ccxt = pytest.importorskip("ccxt")

VALUES_PER_SYMBOL = 12


def offline_binance(name: str) -> Any:
    """A ccxt binance instance whose markets come from the recorded payload ``name``."""
    exchange = ccxt.binance({"enableRateLimit": False})

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the ccxt oracle must never touch the network")

    exchange.fetch = no_network
    exchange.fetch2 = no_network
    # load_markets would fill these from the network; parse_market only reads them.
    exchange.options["crossMarginPairsData"] = []
    exchange.options["isolatedMarginPairsData"] = []
    markets = [m for m in exchange.parse_markets(payload_json(name)["symbols"]) if m]
    exchange.set_markets(markets)
    return exchange


def random_value(rng: random.Random, scale: Decimal) -> str:
    """A positive decimal string around ``scale`` with up to 12 more decimals than it."""
    digits = rng.randrange(0, 13)
    mantissa = rng.randrange(1, 10**6)
    value = (scale * mantissa / 1000).quantize(Decimal(1).scaleb(scale.adjusted() - digits))
    return format(value if value > 0 else scale, "f")


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_rounding_matches_ccxt(payload: str) -> None:
    found = symbols(payload)
    with decimal.localcontext():  # ccxt changes the thread's decimal context; keep it here
        exchange = offline_binance(payload)
        by_id = {m["id"]: m["symbol"] for m in exchange.markets.values()}
        rng = random.Random(payload)
        outcome: Counter[str] = Counter()
        for sym in found:
            market_symbol = by_id.get(sym.rules.symbol)
            if market_symbol is None or sym.rules.price is None or sym.rules.lot is None:
                outcome["not in ccxt"] += 1
                continue
            tick = sym.rules.price.step or Decimal(1)
            step = sym.rules.lot.step or Decimal(1)
            for _ in range(VALUES_PER_SYMBOL):
                price = random_value(rng, tick * 1000)
                ours = round_price(sym.rules, price, "nearest")
                try:
                    theirs = exchange.price_to_precision(market_symbol, price)
                except AssertionError:
                    assert sym.rules.price.step == 0
                    assert ours == Decimal(price)
                    outcome["tick 0: ccxt refuses, we keep the price"] += 1
                else:
                    assert ours == Decimal(theirs), (sym.rules.symbol, price, ours, theirs)
                    outcome["price equal"] += 1
                qty = random_value(rng, step * rng.choice((Decimal(1), Decimal(1000))))
                ours_q = round_quantity(sym.rules, qty)
                try:
                    theirs_q = exchange.amount_to_precision(market_symbol, qty)
                except ccxt.InvalidOrder:
                    assert ours_q == 0
                    outcome["below one step: ccxt raises, we give 0"] += 1
                else:
                    assert ours_q == Decimal(theirs_q), (sym.rules.symbol, qty, ours_q, theirs_q)
                    outcome["amount equal"] += 1
    assert outcome["price equal"] > len(found) * VALUES_PER_SYMBOL * 0.9
    assert outcome["amount equal"] > len(found) * VALUES_PER_SYMBOL * 0.8
    assert outcome["not in ccxt"] < len(found) * 0.01, outcome
