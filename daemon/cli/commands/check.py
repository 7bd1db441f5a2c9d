"""``symbold check SYMBOL SIDE TYPE ...``: would Binance accept this order, by the symbol's
filters in the published snapshot? Optionally, the nearest order that it would accept.

Exit codes: 0 the order passes every filter that can be checked; 65 it does not (also with
``--fix``, which then prints the nearest valid order too), or no such symbol in the snapshot;
69 no snapshot of that market in Redis, or Redis unreachable; 78 configuration or
authentication error; 64 bad arguments (a value that is not a number, SIDE not BUY/SELL).
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from daemon import exitcodes

if TYPE_CHECKING:
    from daemon.config.loader import Config
    from daemon.rules import FixedOrder, OrderCheck, SymbolRules

# (flag, check_order keyword, Binance's parameter name), in the order they are shown.
_NUMBERS = (
    ("quantity", "quantity", "quantity"),
    ("quote_quantity", "quote_quantity", "quoteOrderQty"),
    ("price", "price", "price"),
    ("stop_price", "stop_price", "stopPrice"),
    ("trailing_delta", "trailing_delta", "trailingDelta"),
    ("iceberg_quantity", "iceberg_quantity", "icebergQty"),
    ("reference_price", "reference_price", "referencePrice"),
)
_NEEDS_REFERENCE = frozenset({"PERCENT_PRICE", "PERCENT_PRICE_BY_SIDE", "NOTIONAL", "MIN_NOTIONAL"})


def number(text: str) -> str:
    """An argparse type: a finite decimal, kept as the text given (checked exactly)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return text


NAME = "check"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    from daemon.cli.commands.show import add_symbol_arguments

    p = sub.add_parser(
        NAME,
        parents=[common],
        help="check an order against a symbol's filters (exit 0 valid, 65 invalid)",
        description="Check one order against the symbol's filters as the daemon published "
        "them (daemon.rules.check_order) and print each violation with Binance's message. "
        "Exit 0 valid; 65 invalid (also with --fix), or no such symbol; 69 no snapshot of the "
        "market in Redis, or Redis unreachable; 78 configuration or authentication error; 64 "
        "bad arguments. Without --reference-price (the average price on spot, the mark "
        "price on futures) PERCENT_PRICE* and MARKET notional checks are reported as not "
        "checked.",
    )
    add_symbol_arguments(p)
    p.add_argument("side", metavar="SIDE", type=str.upper, choices=("BUY", "SELL"))
    p.add_argument("order_type", metavar="TYPE", type=str.upper, help="LIMIT, MARKET, ...")
    p.add_argument("--quantity", type=number, help="quantity (base asset, or contracts)")
    p.add_argument("--quote-quantity", type=number, help="quoteOrderQty (spot MARKET orders)")
    p.add_argument("--price", type=number, help="limit price")
    p.add_argument("--stop-price", type=number, help="stopPrice")
    p.add_argument("--trailing-delta", type=int, help="trailingDelta, in basis points")
    p.add_argument("--iceberg-quantity", type=number, help="icebergQty")
    p.add_argument(
        "--reference-price", type=number, help="average price (spot) or mark price (futures)"
    )
    p.add_argument(
        "--fix", action="store_true", help="also print the nearest valid order (daemon.rules)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=handle)


# One check's question and answer, as both output formats print it: the rules, the flags, the
# order's numbers, the verdict, and the nearest valid order (or why there is none). A plain
# tuple: a NamedTuple class would cost its creation at every `symbold` start.
_Checked = tuple[
    "SymbolRules",
    argparse.Namespace,
    dict[str, Any],
    "OrderCheck",
    "FixedOrder | None",
    "str | None",
]


def handle(config: Config, args: argparse.Namespace) -> int:
    from daemon.cli.commands.show import load_symbol
    from daemon.rules import NoValidOrder, OrderValueError, check_order, fix_order

    found = load_symbol(config, args.symbol, args.market)
    if isinstance(found, int):
        return found
    _, rules = found
    order = {kw: getattr(args, flag) for flag, kw, _ in _NUMBERS if getattr(args, flag) is not None}
    fixed: FixedOrder | None = None
    fix_error: str | None = None
    try:
        result = check_order(rules, args.side, args.order_type, **order)
        if args.fix and not result.ok:
            try:
                fixed = fix_order(rules, args.side, args.order_type, **order)
            except NoValidOrder as exc:
                fix_error = exc.reason
    except OrderValueError as exc:
        print(f"symbold check: error: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    checked: _Checked = (rules, args, order, result, fixed, fix_error)
    if args.json:
        _print_json(checked)
    else:
        _print_text(checked)
    return exitcodes.OK if result.ok else exitcodes.DATAERR


def _describe(side: str, order_type: str, values: dict[str, Any]) -> str:
    names = {kw: name for _, kw, name in _NUMBERS}
    shown = " ".join(f"{names[kw]}={v}" for kw, v in values.items() if v is not None)
    return f"{side} {order_type}" + (f" {shown}" if shown else "")


def _fixed_values(fixed: FixedOrder) -> dict[str, Any]:
    from daemon.cli.commands.show import plain

    out: dict[str, Any] = {}
    for _, kw, _ in _NUMBERS:
        if kw == "reference_price":
            continue
        value = getattr(fixed, kw)
        if value is not None:
            out[kw] = plain(value) if isinstance(value, Decimal) else value
    return out


def _unchecked_words(rules: SymbolRules, result: OrderCheck, has_reference: bool) -> str:
    words = []
    for name in result.unchecked:
        if name in _NEEDS_REFERENCE and not has_reference and name not in rules.unchecked:
            words.append(f"{name} (needs --reference-price)")
        else:
            words.append(name)
    return ", ".join(words)


def _print_text(c: _Checked) -> None:
    rules, args, order, result, fixed, fix_error = c
    asked = {k: v for k, v in order.items() if k != "reference_price"}
    head = f"{rules.symbol} ({rules.market}) {_describe(args.side, args.order_type, asked)}"
    if result.ok:
        print(f"{head}: valid")
    else:
        count = len(result.violations)
        print(f"{head}: invalid ({count} violation{'s' if count != 1 else ''})")
        for violation in result.violations:
            print(f"  {violation.message}")
    if result.unchecked:
        has_reference = "reference_price" in order
        print(f"not checked: {_unchecked_words(rules, result, has_reference)}")
    if fixed is not None:
        order_text = _describe(fixed.side, fixed.order_type, _fixed_values(fixed))
        changed = ", ".join(fixed.changed) or "nothing"
        print(f"nearest valid order: {order_text} (changed: {changed})")
    elif fix_error is not None:
        print(f"no valid order near this one: {fix_error}")


def _print_json(c: _Checked) -> None:
    rules, args, order, result, fixed, fix_error = c
    import msgspec

    from daemon.cli.commands.show import to_builtins

    body: dict[str, Any] = {
        "symbol": rules.symbol,
        "market": rules.market,
        "side": args.side,
        "type": args.order_type,
        "order": dict(order),
        "ok": result.ok,
        "violations": to_builtins(list(result.violations)),
        "unchecked": list(result.unchecked),
    }
    if args.fix:
        if fixed is not None:
            body["fix"] = {
                "order": _fixed_values(fixed),
                "changed": list(fixed.changed),
                "unchecked": list(fixed.unchecked),
            }
        elif fix_error is not None:
            body["fix"] = {"error": fix_error}
        else:
            body["fix"] = None  # nothing to fix: the order is valid
    print(msgspec.json.encode(body).decode())
