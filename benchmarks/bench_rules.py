"""Order rules (daemon.rules) on compiled rules, against ccxt's precision helpers, in one run.

On the 2023-09 spot fixture (2,292 symbols), for 64 TRADING symbols spread over the listing
and one LIMIT order each (decimal-string inputs, as a bot holding exchange strings sends
them), this measures per call:

1. ``check_order`` (LIMIT, quantity + price, no reference price) on that order, which is off
   both grids (it fails PRICE_FILTER and LOT_SIZE: violations are built), and on the same
   order made valid by ``fix_order`` (the common case: everything passes);
2. ``round_price`` and ``round_quantity`` each, and the pair: ``round_price`` to the nearest
   tick (the rounding ccxt's ``price_to_precision`` applies) + ``round_quantity`` (truncated,
   as ``amount_to_precision``), and the pair with the side-aware default (BUY: floor);
3. the baseline: ccxt's ``price_to_precision`` + ``amount_to_precision`` on the same orders
   and the same input strings (markets loaded offline from the same payload; ccxt never
   touches the network). Both give the same values (checked before timing); ccxt returns
   strings and daemon.rules ``Decimal`` values;
4. compiling rules for every symbol of the payload (``rules_for`` on each stored record), also
   given per symbol (what a near-cache pays on a symbol's first use).

A near-cache hit hands the bot a compiled ``SymbolRules``, so 1-3 start from one. Each case
runs in batches, round-robin with the others; the median batch is reported, with the
quartiles and the spread (best and worst batch). The pair's speed-up over ccxt is the ratio of
the two medians; the median (and quartiles) of the ratio within each round is printed too,
since both batches of a round ran seconds apart under the same load. Batches are timed in
CPU time of this process by default (``time.process_time``): on a machine shared with other
work, wall time also counts the time the process waited for a core. ``--timer wall`` times
them by the wall clock. Goals (reported, never failed): check_order <= 5 us; each rounding
helper <= 2 us; the pair >= 10x faster than ccxt's pair (the nearest pair: the same roundings
as ccxt); compiling all symbols <= 50 ms.

``python -m benchmarks rules [--rounds N] [--warmup N] [--timer cpu|wall]``
"""

from __future__ import annotations

import argparse
import decimal
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks.common import FIXTURES_DIR, python_version, skipped, table

FIXTURE = "spot-exchangeinfo-2023-09.json"
SAMPLE = 64
BATCH = {
    "check": 2_000,
    "check_ok": 2_000,
    "price": 5_000,
    "qty": 5_000,
    "pair": 5_000,
    "pair_side": 5_000,
    "ccxt": 300,
    "compile": 1,
}
LABELS = {
    "check": "check_order (LIMIT, off-grid: 2+ violations)",
    "check_ok": "check_order (LIMIT, valid order)",
    "price": "round_price (side default)",
    "qty": "round_quantity",
    "pair": "round_price nearest + round_quantity",
    "pair_side": "round_price side default + round_quantity",
    "ccxt": "ccxt price_ + amount_to_precision",
    "compile": "rules_for, all symbols (per call: ms)",
}
CHECK_MAX_US = 5.0
ROUND_MAX_US = 2.0
PAIR_MIN_SPEEDUP = 10.0
COMPILE_MAX_MS = 50.0


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks rules", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=25, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument(
        "--timer", choices=("cpu", "wall"), default="cpu", help="CPU time (default) or wall time"
    )
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def main() -> int:
    args = _parse_args()
    path = FIXTURES_DIR / FIXTURE
    if not path.is_file():
        return skipped(f"{path} absent")
    try:
        import ccxt
    except ImportError:
        return skipped("ccxt is not installed (pip install -e '.[dev]')")

    from daemon.rules import check_order, fix_order, round_price, round_quantity, rules_for
    from daemon.snapshot import normalize

    body = path.read_bytes()
    records = normalize.normalize(body, market="spot").records
    rng = random.Random(2023)
    trading = [r for r in records if r.status == "TRADING"]
    chosen = rng.sample(trading, SAMPLE)
    rules = [rules_for(r) for r in chosen]
    orders: list[tuple[str, str]] = []  # (price, quantity) as decimal strings, off the grids
    for r in rules:
        assert r.price is not None
        assert r.lot is not None
        tick, step = r.price.step, r.lot.step
        price = format(tick * rng.randrange(1000, 10**6) + tick * Decimal("0.37"), "f")
        qty = format((r.lot.minimum or step) * rng.randrange(2, 50) + step * Decimal("0.61"), "f")
        orders.append((price, qty))
    valid: list[tuple[str, str]] = []  # the same orders made valid (a LIMIT BUY)
    for r, (price, qty) in zip(rules, orders, strict=True):
        fixed = fix_order(r, "BUY", "LIMIT", quantity=qty, price=price)
        assert fixed.price is not None
        assert fixed.quantity is not None
        valid.append((str(fixed.price), str(fixed.quantity)))
        assert check_order(r, "BUY", "LIMIT", quantity=valid[-1][1], price=valid[-1][0]).ok

    with decimal.localcontext():  # ccxt changes the thread's decimal context
        exchange = ccxt.binance({"enableRateLimit": False})
        exchange.options["crossMarginPairsData"] = []
        exchange.options["isolatedMarginPairsData"] = []
        exchange.set_markets([m for m in exchange.parse_markets(json.loads(body)["symbols"]) if m])
        ids = {m["id"]: m["symbol"] for m in exchange.markets.values()}
        names = [ids[r.symbol] for r in rules]
        to_price, to_amount = exchange.price_to_precision, exchange.amount_to_precision
        # Same answers before timing anything (nearest price, truncated amount).
        for r, name, (price, qty) in zip(rules, names, orders, strict=True):
            assert round_price(r, price, "nearest") == Decimal(to_price(name, price))
            assert round_quantity(r, qty) == Decimal(to_amount(name, qty))
        n = len(rules)
        work = list(zip(rules, names, orders, strict=True))
        valid_work = list(zip(rules, valid, strict=True))

        def run_check(count: int) -> None:
            for i in range(count):
                r, _, (price, qty) = work[i % n]
                check_order(r, "BUY", "LIMIT", quantity=qty, price=price)

        def run_check_ok(count: int) -> None:
            for i in range(count):
                r, (price, qty) = valid_work[i % n]
                check_order(r, "BUY", "LIMIT", quantity=qty, price=price)

        def run_price(count: int) -> None:
            for i in range(count):
                r, _, (price, _q) = work[i % n]
                round_price(r, price, side="BUY")

        def run_qty(count: int) -> None:
            for i in range(count):
                r, _, (_p, qty) = work[i % n]
                round_quantity(r, qty)

        def run_pair(count: int) -> None:
            for i in range(count):
                r, _, (price, qty) = work[i % n]
                round_price(r, price, "nearest")
                round_quantity(r, qty)

        def run_pair_side(count: int) -> None:
            for i in range(count):
                r, _, (price, qty) = work[i % n]
                round_price(r, price, side="BUY")
                round_quantity(r, qty)

        def run_ccxt(count: int) -> None:
            for i in range(count):
                _, name, (price, qty) = work[i % n]
                to_price(name, price)
                to_amount(name, qty)

        def run_compile(count: int) -> None:
            for _ in range(count):
                for record in records:
                    rules_for(record)

        runners: dict[str, Callable[[int], None]] = {
            "check": run_check,
            "check_ok": run_check_ok,
            "price": run_price,
            "qty": run_qty,
            "pair": run_pair,
            "pair_side": run_pair_side,
            "ccxt": run_ccxt,
            "compile": run_compile,
        }
        samples: dict[str, list[float]] = {case: [] for case in runners}
        clock = time.process_time if args.timer == "cpu" else time.perf_counter
        for rnd in range(args.warmup + args.rounds):
            for case, runner in runners.items():
                count = BATCH[case]
                gc.collect()
                started = clock()
                runner(count)
                elapsed = clock() - started
                if rnd >= args.warmup:
                    samples[case].append(elapsed / count)

    us = {case: statistics.median(found) * 1e6 for case, found in samples.items()}
    q1 = {case: _quartiles(found)[0] * 1e6 for case, found in samples.items()}
    q3 = {case: _quartiles(found)[1] * 1e6 for case, found in samples.items()}
    best = {case: min(found) * 1e6 for case, found in samples.items()}
    worst = {case: max(found) * 1e6 for case, found in samples.items()}
    compile_ms = us["compile"] / 1000
    speedup = us["ccxt"] / us["pair"]
    per_round = [c / p for c, p in zip(samples["ccxt"], samples["pair"], strict=True)]
    round_q1, round_q3 = _quartiles(per_round)
    print(
        f"{FIXTURE}: {len(records)} symbols, {SAMPLE} sampled TRADING symbols; "
        f"Python {python_version()}, ccxt {ccxt.__version__}; "
        f"{args.rounds} rounds after {args.warmup} warm-up; {args.timer} time"
    )
    rows = []
    for case in ("check", "check_ok", "price", "qty", "pair", "pair_side", "ccxt"):
        rows.append(
            [
                LABELS[case],
                f"{us[case]:.2f}",
                f"{q1[case]:.2f}",
                f"{q3[case]:.2f}",
                f"{best[case]:.2f}",
                f"{worst[case]:.2f}",
                f"{us['ccxt'] / us[case]:.1f}x",
            ]
        )
    rows.append(
        [
            LABELS["compile"],
            f"{compile_ms:.1f} ms",
            f"{q1['compile'] / 1000:.1f} ms",
            f"{q3['compile'] / 1000:.1f} ms",
            f"{best['compile'] / 1000:.1f} ms",
            f"{worst['compile'] / 1000:.1f} ms",
            "-",
        ]
    )
    per = len(records)
    rows.append(
        [
            "  the same, per symbol (us)",
            f"{us['compile'] / per:.1f}",
            f"{q1['compile'] / per:.1f}",
            f"{q3['compile'] / per:.1f}",
            f"{best['compile'] / per:.1f}",
            f"{worst['compile'] / per:.1f}",
            "-",
        ]
    )
    headers = ["case", "median us", "q1 us", "q3 us", "best us", "worst us", "vs ccxt pair"]
    print(table(headers, rows))
    print(
        f"ccxt pair / nearest pair within each round: median "
        f"{statistics.median(per_round):.1f}x, quartiles {round_q1:.1f}x-{round_q3:.1f}x"
    )
    print()
    goals = [
        ("check_order off-grid <= 5 us", f"{us['check']:.2f} us", us["check"] <= CHECK_MAX_US),
        ("check_order valid <= 5 us", f"{us['check_ok']:.2f} us", us["check_ok"] <= CHECK_MAX_US),
        ("round_price <= 2 us", f"{us['price']:.2f} us", us["price"] <= ROUND_MAX_US),
        ("round_quantity <= 2 us", f"{us['qty']:.2f} us", us["qty"] <= ROUND_MAX_US),
        ("pair >= 10x faster than ccxt", f"{speedup:.1f}x", speedup >= PAIR_MIN_SPEEDUP),
        ("compile all <= 50 ms", f"{compile_ms:.1f} ms", compile_ms <= COMPILE_MAX_MS),
    ]
    print(table(["goal", "measured", "met"], [[g, m, "yes" if ok else "NO"] for g, m, ok in goals]))
    print()
    bench_near_cache(args, path, work)
    return 0


def _quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles of ``values`` (inclusive method)."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


NEAR_BATCH = {
    "ping": 300,
    "rules_hit_check": 5_000,
    "rules_hit": 20_000,
    "symbol_hit": 20_000,
    "rules_redis_check": 300,
}
NEAR_LABELS = {
    "ping": "PING round trip, same client",
    "rules_hit_check": "get_rules near-cache hit + check_order",
    "rules_hit": "get_rules near-cache hit alone",
    "symbol_hit": "get_symbol near-cache hit (for scale)",
    "rules_redis_check": "get_rules, no near-cache (HGET + compile) + check_order",
}
NEAR_MIN_SPEEDUP = 5.0


def bench_near_cache(args: argparse.Namespace, fixture: Path, work: list[Any]) -> None:
    """What the bot pays per order check on its hot path: ``reader.get_rules`` served from the
    near-cache (rules compiled once and kept next to the record) then ``check_order``, against
    one PING on the same client; sync reader, private redis-server on loopback, the snapshot
    written by one daemon refresh cycle over the fixture. Same symbols and orders as above.
    Goal (reported): the hit + check at least 5x faster than a PING."""
    from benchmarks.bench_readers import _write_snapshot
    from benchmarks.common import daemon_logging_to_devnull, private_redis
    from daemon.readers import NearCacheOptions, SymbolReader
    from daemon.rules import check_order

    with private_redis() as server:
        with daemon_logging_to_devnull():
            _write_snapshot(server.url, fixture)
        with (
            SymbolReader.from_url(server.url) as plain,
            SymbolReader.from_url(
                server.url, near_cache=NearCacheOptions(markets=("spot",))
            ) as cached,
        ):
            if not cached.wait_until(lambda st: st.live, timeout=10):
                raise RuntimeError("near-cache subscriber did not come up")
            items = [(r.symbol, price, qty) for r, _, (price, qty) in work]
            for name, _, _ in items:  # fill the near-cache and compile once
                assert cached.get_rules(name) == plain.get_rules(name)
            n = len(items)
            ping, hit, get_rules = plain.client.ping, cached.get_symbol, cached.get_rules
            cold = plain.get_rules

            def run_ping(count: int) -> None:
                for _ in range(count):
                    ping()

            def run_rules_hit_check(count: int) -> None:
                for i in range(count):
                    name, price, qty = items[i % n]
                    rules = get_rules(name)
                    assert rules is not None
                    check_order(rules, "BUY", "LIMIT", quantity=qty, price=price)

            def run_rules_hit(count: int) -> None:
                for i in range(count):
                    get_rules(items[i % n][0])

            def run_symbol_hit(count: int) -> None:
                for i in range(count):
                    hit(items[i % n][0])

            def run_rules_redis_check(count: int) -> None:
                for i in range(count):
                    name, price, qty = items[i % n]
                    rules = cold(name)
                    assert rules is not None
                    check_order(rules, "BUY", "LIMIT", quantity=qty, price=price)

            runners: dict[str, Callable[[int], None]] = {
                "ping": run_ping,
                "rules_hit_check": run_rules_hit_check,
                "rules_hit": run_rules_hit,
                "symbol_hit": run_symbol_hit,
                "rules_redis_check": run_rules_redis_check,
            }
            samples: dict[str, list[float]] = {case: [] for case in runners}
            for rnd in range(args.warmup + args.rounds):
                for case, runner in runners.items():
                    gc.collect()
                    started = time.perf_counter()
                    runner(NEAR_BATCH[case])
                    elapsed = time.perf_counter() - started
                    if rnd >= args.warmup:
                        samples[case].append(elapsed / NEAR_BATCH[case])
            if not cached.near_cache_status().live:
                raise RuntimeError("near-cache channel was lost during the run")
            compiled = cached.near_cache_status().compiled["spot"]
    us = {case: statistics.median(found) * 1e6 for case, found in samples.items()}
    print(
        f"near-cache: {n} symbols cached with their rules ({compiled} compiled once each); "
        f"sync reader, private redis-server on loopback; {args.rounds} rounds"
    )
    rows = [
        [NEAR_LABELS[case], f"{us[case]:.2f}", f"{us['ping'] / us[case]:.1f}x"] for case in runners
    ]
    print(table(["case", "median us", "vs PING"], rows))
    speedup = us["ping"] / us["rules_hit_check"]
    ok = speedup >= NEAR_MIN_SPEEDUP
    print()
    print(
        table(
            ["goal", "measured", "met"],
            [
                [
                    "get_rules hit + check_order >= 5x faster than a PING",
                    f"{speedup:.1f}x",
                    "yes" if ok else "NO",
                ]
            ],
        )
    )


if __name__ == "__main__":
    sys.exit(main())
