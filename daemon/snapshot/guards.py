"""The acceptance guard: may this snapshot replace the last good one? Pure, no I/O.

A reply that is empty, or lost more than ``max_shrink`` of the last good listed count, is held
back. Binance does delist in bulk now and then, so a shrink is not refused for ever: after
``confirm_shrink`` identical shrunk replies in a row (same content version) it is accepted.
The streak lives in :class:`ShrinkStreak`, which the caller persists (in Redis meta), so a
one-shot ``symbold refresh`` run by cron or Celery beat counts confirmations too.
"""

from __future__ import annotations

from dataclasses import dataclass

_FLOOR_SLACK = 1e-6


@dataclass(frozen=True, slots=True)
class ShrinkStreak:
    """Consecutive identical shrunk replies seen so far (version "" and count 0: none)."""

    version: str = ""
    count: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """`accept` says whether to write; `reason` names why not (or why despite a shrink)."""

    accept: bool
    reason: str
    streak: ShrinkStreak
    confirmed_shrink: bool = False


def judge(
    *,
    listed: int,
    count: int,
    version: str,
    last_listed: int | None,
    streak: ShrinkStreak,
    max_shrink: float,
    confirm_shrink: int,
) -> Verdict:
    """Decide on a new snapshot with `listed` listed and `count` total symbols.

    `last_listed` is the listed count of the last accepted snapshot (None: there is none, so
    anything non-empty is accepted).
    """
    if count == 0 or listed == 0:
        return Verdict(False, "empty", ShrinkStreak())
    if last_listed is None or last_listed == 0:
        return Verdict(True, "first", ShrinkStreak())
    # Losing exactly `max_shrink` is allowed, but last * (1 - max_shrink) can land a hair above
    # the whole number in binary floating point (10 * (1 - 0.7) == 3.0000000000000004). The
    # slack absorbs that rounding; it cannot change a verdict on a whole listed count otherwise.
    floor = last_listed * (1.0 - max_shrink) - _FLOOR_SLACK
    if listed >= floor:
        return Verdict(True, "ok", ShrinkStreak())
    seen = streak.count + 1 if streak.version == version else 1
    new_streak = ShrinkStreak(version=version, count=seen)
    if seen >= confirm_shrink:
        return Verdict(True, "shrink_confirmed", ShrinkStreak(), confirmed_shrink=True)
    return Verdict(
        False,
        f"shrink: {listed} listed vs {last_listed} last good "
        f"(more than {max_shrink:.0%} lost; {seen}/{confirm_shrink} confirmations)",
        new_streak,
    )
