"""``symbold show SYMBOL``: one symbol's record and its compiled order rules, read from the
snapshot the daemon published (one lookup, as the bot's readers do it).

Exit codes: 0 shown; 65 no such symbol in the snapshot (or its stored filters cannot be
compiled, or Redis answered with a data error); 69 no snapshot of that market in Redis, or
Redis unreachable; 78 configuration or authentication error. :mod:`.check` reads the symbol
the same way (:func:`load_symbol`).
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from daemon import exitcodes

if TYPE_CHECKING:
    from daemon.config.loader import Config
    from daemon.contract.record import SymbolRecord
    from daemon.rules import Grid, SymbolRules

# Shown in full up to this many; a modern spot row carries hundreds of permission groups.
_MAX_PERMISSIONS = 8


def add_symbol_arguments(parser: argparse.ArgumentParser) -> None:
    """SYMBOL and ``--market``, shared with ``check``."""
    from daemon.config.settings import MARKETS

    parser.add_argument("symbol", metavar="SYMBOL", help="e.g. BTCUSDT (case-insensitive)")
    parser.add_argument(
        "--market", choices=MARKETS, default="spot", help="the market (default: spot)"
    )


NAME = "show"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        NAME,
        parents=[common],
        help="one symbol's record and order rules, from the published snapshot",
        description="Print a symbol as the bot's readers see it: status, base and quote, order "
        "types, permissions, and each order filter's bounds as compiled by daemon.rules. "
        "Read-only. Exit 0 shown; 65 no such symbol in the snapshot (or filters that cannot "
        "be compiled); 69 no snapshot of the market in Redis, or Redis unreachable; 78 "
        "configuration or authentication error.",
    )
    add_symbol_arguments(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object: the record's fields and, under 'rules', the compiled rules "
        "(decimals as strings)",
    )
    p.set_defaults(handler=handle)


def load_symbol(config: Config, symbol: str, market: str) -> tuple[SymbolRecord, SymbolRules] | int:
    """`symbol`'s record and compiled rules from the snapshot in Redis, or the exit code after
    a one-line message on stderr: 65 no such symbol (or uncompilable filters, or a Redis data
    error), 69 no snapshot or Redis unavailable, 78 Redis refused our credentials."""
    from daemon.cli.failures import redis_failure
    from daemon.readers import SnapshotMissingError, SymbolReader
    from daemon.redis.errors import RECOVERABLE
    from daemon.rules import RulesError, rules_for

    try:
        with SymbolReader(config.connection, config.settings) as reader:
            record = reader.get_symbol(symbol, market)
            if record is None and symbol.upper() != symbol:
                symbol = symbol.upper()
                record = reader.get_symbol(symbol, market)
    except SnapshotMissingError as exc:
        print(
            f"symbold: no snapshot of market {market} in Redis ({exc.key} is absent: evicted, "
            f"flushed, or not written yet); is the daemon running? "
            f"`symbold refresh --market {market}` writes one now",
            file=sys.stderr,
        )
        return exitcodes.UNAVAILABLE
    except RECOVERABLE as exc:
        return redis_failure(exc)
    if record is None:
        print(f"symbold: no symbol {symbol} in the {market} snapshot", file=sys.stderr)
        return exitcodes.DATAERR
    try:
        return record, rules_for(record)
    except RulesError as exc:
        print(f"symbold: {symbol}: its stored filters cannot be compiled: {exc}", file=sys.stderr)
        return exitcodes.DATAERR


def handle(config: Config, args: argparse.Namespace) -> int:
    import msgspec

    from daemon.contract.record import record_to_dict

    found = load_symbol(config, args.symbol, args.market)
    if isinstance(found, int):
        return found
    record, rules = found
    if args.json:
        body = record_to_dict(record) | {"rules": rules_to_builtins(rules)}
        print(msgspec.json.encode(body).decode())
    else:
        print(format_symbol(record, rules))
    return exitcodes.OK


# ---------------------------------------------------------------------------------------------
# rendering (also used by `check`)
# ---------------------------------------------------------------------------------------------


def plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros (``0.01000000`` -> ``0.01``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def to_builtins(value: Any) -> Any:
    """JSON-ready builtins: decimals as fixed-point strings (exact, never ``0E-8``), sets
    sorted, structs as objects."""
    import msgspec

    def convert(item: Any) -> Any:
        if isinstance(item, Decimal):
            return format(item, "f")
        if isinstance(item, dict):
            return {k: convert(v) for k, v in item.items()}
        if isinstance(item, list):
            return [convert(v) for v in item]
        return item

    return convert(msgspec.to_builtins(value, builtin_types=(Decimal,), order="deterministic"))


def rules_to_builtins(rules: SymbolRules) -> dict[str, Any]:
    """The compiled rules as a JSON object (see :class:`daemon.rules.SymbolRules`)."""
    out: dict[str, Any] = to_builtins(rules)
    out["order_types"] = sorted(rules.order_types)
    return out


def _bound(value: Decimal) -> str:
    return "none" if value == 0 else plain(value)


def _grid_line(grid: Grid, what: str) -> str:
    return (
        f"{what} min {_bound(grid.minimum)}, max {_bound(grid.maximum)}, step {_bound(grid.step)}"
    )


def _average(minutes: int | None) -> str:
    return f"the {minutes}-minute average price" if minutes else "the average price"


def rule_lines(rules: SymbolRules) -> list[tuple[str, str]]:
    """(filter, bounds in words) for every filter the rules check, then what they cannot."""
    lines: list[tuple[str, str]] = []
    if rules.price is not None:
        lines.append((rules.price.filter_type, _grid_line(rules.price, "price")))
    if rules.lot is not None:
        lines.append((rules.lot.filter_type, _grid_line(rules.lot, "quantity")))
    if rules.market_lot is not None:
        lines.append(
            (rules.market_lot.filter_type, _grid_line(rules.market_lot, "MARKET quantity"))
        )
    if rules.market_qty is not None and rules.market_lot is not None:
        lines.append(("", _grid_line(rules.market_qty, "MARKET orders round to: quantity")))
    pp = rules.percent_price
    if pp is not None:
        if pp.by_side_futures:
            text = f"BUY price <= {plain(pp.up)} x, SELL >= {plain(pp.down)} x the mark price"
        else:
            text = f"price {plain(pp.down)} .. {plain(pp.up)} x {_average(pp.avg_price_mins)}"
        lines.append(("PERCENT_PRICE", text))
    ps = rules.percent_price_by_side
    if ps is not None:
        lines.append(
            (
                "PERCENT_PRICE_BY_SIDE",
                f"BUY price {plain(ps.bid_down)} .. {plain(ps.bid_up)} x, SELL "
                f"{plain(ps.ask_down)} .. {plain(ps.ask_up)} x {_average(ps.avg_price_mins)}",
            )
        )
    for n in rules.notionals:
        parts = [f"notional (price x quantity) min {_bound(n.minimum)}"]
        if n.minimum:
            parts[0] += " (MARKET too)" if n.apply_min_to_market else " (not MARKET)"
        parts.append(f"max {_bound(n.maximum)}")
        if n.maximum:
            parts[1] += " (MARKET too)" if n.apply_max_to_market else " (not MARKET)"
        lines.append((n.filter_type, ", ".join(parts)))
    if rules.iceberg_parts:
        lines.append(("ICEBERG_PARTS", f"at most {rules.iceberg_parts} parts"))
    td = rules.trailing_delta
    if td is not None:
        lines.append(
            (
                "TRAILING_DELTA",
                f"basis points: above {td.min_above} .. {td.max_above}, "
                f"below {td.min_below} .. {td.max_below}",
            )
        )
    if rules.contract_size is not None:
        lines.append(("contract size", plain(rules.contract_size)))
    if rules.unchecked:
        lines.append(
            ("not checked", ", ".join(rules.unchecked) + " (account state or unknown filter)")
        )
    return lines


def format_symbol(record: SymbolRecord, rules: SymbolRules) -> str:
    """The record and its rules, for a person."""
    permissions = list(record.permissions)
    shown = ", ".join(permissions[:_MAX_PERMISSIONS]) or "-"
    if len(permissions) > _MAX_PERMISSIONS:
        shown += f", ... ({len(permissions)} in all)"
    out = [
        f"{record.symbol} ({record.market}): {record.status}",
        f"  base {record.base}, quote {record.quote}",
        f"  order types: {', '.join(sorted(record.order_types)) or '-'}",
        f"  permissions: {shown}",
        "order rules:",
    ]
    lines = rule_lines(rules)
    width = max((len(name) for name, _ in lines), default=0)
    out.extend(f"  {name:<{width}}  {text}" for name, text in lines)
    if not lines:
        out.append("  (no order filters)")
    return "\n".join(out)
