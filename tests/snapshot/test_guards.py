"""Pure tests of the acceptance guard, daemon.snapshot.guards.judge (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.snapshot.guards import ShrinkStreak, Verdict, judge


def run(**kwargs: Any) -> Verdict:
    values: dict[str, Any] = {
        "listed": 100,
        "count": 120,
        "version": "v-new",
        "last_listed": 100,
        "streak": ShrinkStreak(),
        "max_shrink": 0.2,
        "confirm_shrink": 3,
    }
    values.update(kwargs)
    return judge(**values)


# -- empty ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("listed", "count"), [(0, 0), (0, 5), (5, 0)])
def test_empty_is_refused_even_without_history(listed: int, count: int) -> None:
    verdict = run(listed=listed, count=count, last_listed=None)
    assert verdict == Verdict(False, "empty", ShrinkStreak())


def test_empty_resets_a_running_streak() -> None:
    verdict = run(listed=0, count=0, streak=ShrinkStreak("v-shrunk", 2))
    assert verdict == Verdict(False, "empty", ShrinkStreak())


def test_empty_is_refused_even_when_confirm_shrink_is_one() -> None:
    verdict = run(listed=0, count=0, confirm_shrink=1)
    assert verdict.accept is False
    assert verdict.reason == "empty"


# -- first ----------------------------------------------------------------------------------


@pytest.mark.parametrize("last_listed", [None, 0])
def test_first_snapshot_is_accepted_whatever_its_size(last_listed: int | None) -> None:
    verdict = run(listed=1, count=1, last_listed=last_listed, streak=ShrinkStreak("x", 2))
    assert verdict == Verdict(True, "first", ShrinkStreak())


# -- ok and the boundary ----------------------------------------------------------------------


@pytest.mark.parametrize("listed", [80, 81, 100, 101, 5000])
def test_within_the_allowed_shrink_or_growth_is_ok(listed: int) -> None:
    verdict = run(listed=listed, last_listed=100, max_shrink=0.2)
    assert verdict == Verdict(True, "ok", ShrinkStreak())


def test_ok_resets_a_running_streak() -> None:
    verdict = run(listed=95, last_listed=100, streak=ShrinkStreak("v-shrunk", 2))
    assert verdict == Verdict(True, "ok", ShrinkStreak())


@pytest.mark.parametrize(
    ("last_listed", "max_shrink", "listed"),
    [
        (100, 0.2, 80),
        (50, 0.2, 40),
        # Losing exactly max_shrink is allowed ("more than max_shrink" is held back). These
        # are the cases where last * (1 - max_shrink) lands a hair above the whole number
        # in binary floating point (e.g. 10 * (1 - 0.7) == 3.0000000000000004).
        (10, 0.7, 3),
        (20, 0.85, 3),
        (20, 0.95, 1),
        (25, 0.44, 14),
        (30, 0.7, 9),
        (1000, 0.7, 300),
        (3, 1 / 3, 2),
    ],
)
def test_losing_exactly_max_shrink_is_ok(last_listed: int, max_shrink: float, listed: int) -> None:
    verdict = run(listed=listed, count=listed, last_listed=last_listed, max_shrink=max_shrink)
    assert verdict == Verdict(True, "ok", ShrinkStreak())


@pytest.mark.parametrize(
    ("last_listed", "max_shrink", "listed"),
    [(100, 0.2, 79), (10, 0.7, 2), (25, 0.44, 13), (1000, 0.7, 299), (3, 1 / 3, 1)],
)
def test_one_below_the_boundary_is_held_back(
    last_listed: int, max_shrink: float, listed: int
) -> None:
    verdict = run(listed=listed, count=listed, last_listed=last_listed, max_shrink=max_shrink)
    assert verdict.accept is False
    assert verdict.reason.startswith("shrink: ")


def test_every_exact_boundary_in_a_grid_is_ok() -> None:
    """For every last count up to 200 and every whole-percent max_shrink, losing exactly
    that share (when it is a whole number of symbols) is ok and losing one more is not."""
    wrong = []
    for last in range(1, 201):
        for pct in range(0, 100):
            if (last * pct) % 100:
                continue
            listed = last - last * pct // 100
            at = run(listed=listed, count=listed, last_listed=last, max_shrink=pct / 100)
            if not at.accept:
                wrong.append((last, pct, listed, "boundary refused"))
            if listed > 1:
                below = run(listed=listed - 1, count=listed, last_listed=last, max_shrink=pct / 100)
                if below.accept:
                    wrong.append((last, pct, listed - 1, "below boundary accepted"))
    assert wrong == []


def test_max_shrink_zero_refuses_any_loss_and_one_allows_all_but_empty() -> None:
    assert run(listed=99, last_listed=100, max_shrink=0.0).accept is False
    assert run(listed=100, last_listed=100, max_shrink=0.0).reason == "ok"
    assert run(listed=1, count=1, last_listed=100, max_shrink=1.0).reason == "ok"


# -- shrink streak ----------------------------------------------------------------------------


def test_shrink_is_held_back_and_starts_a_streak() -> None:
    verdict = run(listed=20, count=25, version="v-s", last_listed=50)
    assert verdict == Verdict(
        False,
        "shrink: 20 listed vs 50 last good (more than 20% lost; 1/3 confirmations)",
        ShrinkStreak("v-s", 1),
    )


def test_identical_shrunk_replies_count_up_and_the_last_one_is_accepted() -> None:
    streak = ShrinkStreak()
    reasons = []
    for _ in range(2):
        verdict = run(listed=20, version="v-s", last_listed=50, streak=streak)
        assert verdict.accept is False
        assert verdict.confirmed_shrink is False
        reasons.append(verdict.reason)
        streak = verdict.streak
    assert streak == ShrinkStreak("v-s", 2)
    assert reasons[1].endswith("(more than 20% lost; 2/3 confirmations)")

    verdict = run(listed=20, version="v-s", last_listed=50, streak=streak)
    assert verdict == Verdict(True, "shrink_confirmed", ShrinkStreak(), confirmed_shrink=True)


def test_a_different_version_restarts_the_count() -> None:
    verdict = run(listed=20, version="v-other", last_listed=50, streak=ShrinkStreak("v-s", 2))
    assert verdict.accept is False
    assert verdict.streak == ShrinkStreak("v-other", 1)
    assert verdict.reason.endswith("1/3 confirmations)")


def test_a_streak_beyond_the_threshold_still_accepts() -> None:
    # A persisted count can only be below the threshold, but a lowered setting must not
    # wedge the guard: anything at or above it confirms.
    verdict = run(listed=20, version="v-s", last_listed=50, streak=ShrinkStreak("v-s", 9))
    assert verdict.accept is True
    assert verdict.confirmed_shrink is True


def test_confirm_shrink_one_accepts_the_first_shrunk_reply() -> None:
    verdict = run(listed=20, version="v-s", last_listed=50, confirm_shrink=1)
    assert verdict == Verdict(True, "shrink_confirmed", ShrinkStreak(), confirmed_shrink=True)


def test_the_guard_compares_listed_not_total_count() -> None:
    # Many symbols going to BREAK (count stays, listed drops) is a shrink too.
    verdict = run(listed=40, count=1000, last_listed=100)
    assert verdict.accept is False
    assert verdict.reason.startswith("shrink: 40 listed vs 100 last good")
