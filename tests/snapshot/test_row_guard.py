"""Pure tests of the row judgement (daemon.snapshot.guards.row_problem / judge_rows) and of
the serverTime guard: no I/O."""

from __future__ import annotations

import pytest

from daemon.contract.meta import HeldRow
from daemon.contract.record import SymbolRecord
from daemon.snapshot.guards import ShrinkStreak, judge, judge_rows, row_problem

pytestmark = pytest.mark.timeout(10)

SERVED = SymbolRecord(
    "BTCUSDT", "spot", "TRADING", "BTC", "USDT",
    "0.01", "0.01", "1000000", "0.00001", "0.00001", "9000",
    "0", "0", "120", "5", "9000000", ("SPOT",), ("LIMIT",),
    b"[]", None, None, None, None,
)  # fmt: skip


def _replace(rec: SymbolRecord, **changes: object) -> SymbolRecord:
    import msgspec

    return msgspec.structs.replace(rec, **changes)


@pytest.mark.parametrize("bad", ["NaN", "nan", "-0.01", "Infinity", "-inf", "abc", "", "1e"])
def test_a_non_finite_negative_or_non_numeric_decimal_is_invalid(bad: str) -> None:
    for field in ("tick_size", "step_size", "min_notional", "market_max_qty"):
        problem = row_problem(_replace(SERVED, **{field: bad}), SERVED)
        assert problem is not None
        assert problem[1] is True, (field, bad)
        assert field in problem[0]
    # also for a symbol never served
    assert row_problem(_replace(SERVED, tick_size=bad), None) is not None


def test_binance_zero_bounds_stay_valid() -> None:
    # 0 disables a bound: a max_price or market_* of 0 that the served row had too is fine
    assert (
        row_problem(_replace(SERVED, max_price="0", market_step_size="0.00000000"), SERVED) is None
    )
    assert row_problem(SERVED, None) is None


@pytest.mark.parametrize("field", ["tick_size", "step_size"])
def test_a_served_nonzero_tick_or_step_becoming_zero_is_suspicious(field: str) -> None:
    problem = row_problem(_replace(SERVED, **{field: "0.00000000"}), SERVED)
    assert problem == (f"{field} became 0.00000000 (served {getattr(SERVED, field)})", False)
    # a zero that was zero before is Binance's "no bound", not a loss
    zero = _replace(SERVED, **{field: "0"})
    assert row_problem(zero, zero) is None
    # a non-trading row is not judged on it
    assert row_problem(_replace(SERVED, status="BREAK", **{field: "0"}), SERVED) is None


def test_a_trading_row_losing_price_filter_or_lot_size_is_suspicious() -> None:
    lost = _replace(SERVED, tick_size=None, min_price=None, max_price=None)
    assert row_problem(lost, SERVED) == ("TRADING row without PRICE_FILTER", False)
    lost = _replace(SERVED, step_size=None, min_qty=None, max_qty=None)
    assert row_problem(lost, SERVED) == ("TRADING row without LOT_SIZE", False)
    # a new TRADING symbol without them too; one that never had them is left alone
    assert row_problem(lost, None) == ("TRADING row without LOT_SIZE", False)
    assert row_problem(lost, lost) is None


def test_judge_rows_counts_consecutive_identical_rows_and_confirms() -> None:
    bad = _replace(SERVED, tick_size="0")
    first = judge_rows([(bad, "d1", SERVED)], streaks={}, confirm=3)
    assert [(h.symbol, h.seen) for h in first.held] == [("BTCUSDT", 1)]
    assert not first.confirmed
    streaks = {h.symbol: h for h in first.held}
    second = judge_rows([(bad, "d1", SERVED)], streaks=streaks, confirm=3)
    assert second.held[0].seen == 2
    # a different bad row starts again
    other = judge_rows([(bad, "d2", SERVED)], streaks={h.symbol: h for h in second.held}, confirm=3)
    assert other.held[0].seen == 1
    third = judge_rows([(bad, "d1", SERVED)], streaks={h.symbol: h for h in second.held}, confirm=3)
    assert third.held == ()
    assert [h.symbol for h in third.confirmed] == ["BTCUSDT"]


def test_judge_rows_never_confirms_an_invalid_row() -> None:
    bad = _replace(SERVED, tick_size="NaN")
    streaks = {"BTCUSDT": HeldRow("BTCUSDT", "x", "d1", 99, True)}
    verdict = judge_rows([(bad, "d1", SERVED)], streaks=streaks, confirm=3)
    assert verdict.held[0].invalid
    assert verdict.held[0].seen == 100
    assert not verdict.confirmed


def test_judge_rows_passes_good_rows() -> None:
    good = _replace(SERVED, tick_size="0.1")
    assert judge_rows([(good, "d", SERVED)], streaks={}, confirm=3).held == ()


def _judge(**kw: object) -> object:
    args: dict[str, object] = {
        "listed": 10, "count": 10, "version": "v", "last_listed": 10,
        "streak": ShrinkStreak(), "max_shrink": 0.2, "confirm_shrink": 2,
    }  # fmt: skip
    args.update(kw)
    return judge(**args)  # type: ignore[arg-type]


def test_server_time_going_back_needs_confirmation() -> None:
    hour = 3_600_000
    first = _judge(server_time=10 * hour - hour, last_server_time=10 * hour)
    assert not first.accept
    assert "serverTime went back 3600 s" in first.reason  # type: ignore[attr-defined]
    second = _judge(
        server_time=9 * hour,
        last_server_time=10 * hour,
        streak=first.streak,  # type: ignore[attr-defined]
    )
    assert second.accept
    assert second.reason == "server_time_confirmed"  # type: ignore[attr-defined]
    # forward, equal, or back by less than the slack: fine
    for now in (10 * hour + 5, 10 * hour, 10 * hour - 500):
        assert _judge(server_time=now, last_server_time=10 * hour).accept  # type: ignore[attr-defined]
