"""The acceptance guard: may this snapshot replace the last good one? Pure, no I/O.

A reply that is empty, or lost more than ``max_shrink`` of the last good listed count, is held
back. Binance does delist in bulk now and then, so a shrink is not refused for ever: after
``confirm_shrink`` identical shrunk replies in a row (same content version) it is accepted.
The streak lives in :class:`ShrinkStreak`, which the caller persists (in Redis meta), so a
one-shot ``symbold refresh`` run by cron or Celery beat counts confirmations too. A reply whose
``serverTime`` is older than the snapshot served (a stale cache or mirror) is held back the same
way and needs the same confirmations.

Row by row (:func:`judge_rows`): each *changed* row is judged against the row served for that
symbol. A decimal that is not a finite, non-negative number is never valid. A TRADING row that
loses its PRICE_FILTER or LOT_SIZE, or whose served non-zero tick or step becomes 0, is
suspicious: it needs ``confirm_shrink`` consecutive payloads sending exactly that row. Until
then (for ever, for an invalid row) the previous row is served for that symbol, or none when
there is none. Binance's own semantics stay: a 0 bound that was 0 before (or that the symbol
never had) is fine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from typing import Final

from daemon.contract.meta import HeldRow
from daemon.contract.record import DECIMAL_FIELDS, SymbolRecord

_FLOOR_SLACK = 1e-6
SERVER_TIME_SLACK_MS: Final = 1000
"""How far back (ms) a reply's serverTime may be from the served one before it is suspicious:
Binance's hosts' clocks agree to well within this."""


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
    server_time: int | None = None,
    last_server_time: int | None = None,
) -> Verdict:
    """Decide on a new snapshot with `listed` listed and `count` total symbols.

    `last_listed` is the listed count of the last accepted snapshot (None: there is none, so
    anything non-empty is accepted). `server_time` is the reply's ``serverTime`` (ms) and
    `last_server_time` the served snapshot's: going back by more than
    :data:`SERVER_TIME_SLACK_MS` needs confirmation like a shrink.
    """
    if count == 0 or listed == 0:
        return Verdict(False, "empty", ShrinkStreak())
    if last_listed is None or last_listed == 0:
        return Verdict(True, "first", ShrinkStreak())
    # A shrink and a serverTime that went back are both held until the same content (version)
    # was seen confirm_shrink times in a row; the shrink is checked first.
    seen = streak.count + 1 if streak.version == version else 1
    confirmed = seen >= confirm_shrink
    waiting = ShrinkStreak(version=version, count=seen)
    # Losing exactly `max_shrink` is allowed, but last * (1 - max_shrink) can land a hair above
    # the whole number in binary floating point (10 * (1 - 0.7) == 3.0000000000000004). The
    # slack absorbs that rounding; it cannot change a verdict on a whole listed count otherwise.
    if listed < last_listed * (1.0 - max_shrink) - _FLOOR_SLACK:
        if confirmed:
            return Verdict(True, "shrink_confirmed", ShrinkStreak(), confirmed_shrink=True)
        return Verdict(
            False,
            f"shrink: {listed} listed vs {last_listed} last good "
            f"(more than {max_shrink:.0%} lost; {seen}/{confirm_shrink} confirmations)",
            waiting,
        )
    if (
        server_time is None
        or last_server_time is None
        or server_time >= last_server_time - SERVER_TIME_SLACK_MS
    ):
        return Verdict(True, "ok", ShrinkStreak())
    if confirmed:
        return Verdict(True, "server_time_confirmed", ShrinkStreak(), confirmed_shrink=True)
    back = (last_server_time - server_time) / 1000.0
    return Verdict(
        False,
        f"serverTime went back {back:.0f} s from the snapshot served "
        f"({seen}/{confirm_shrink} confirmations)",
        waiting,
    )


# ---------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------

_DECIMAL_FIELDS: Final = DECIMAL_FIELDS


def _number(text: str) -> Decimal | None:
    """The value of a decimal string when it is finite and not negative, else None."""
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError, TypeError):
        return None
    if not value.is_finite() or value < 0:
        return None
    return value


# Whether a decimal string is usable, by its text: a payload repeats a few dozen distinct
# values ("0.01000000", ...) over thousands of rows, so a first cycle that judges every row
# parses each distinct value once. The texts found good hold None too (an absent value is
# fine), so a row whose decimal values are all known good is checked with one set operation.
# Bounded: a hostile payload cannot grow them for ever.
_GOOD: set[str | None] = {None}
_BAD: set[str] = set()
_KNOWN_LIMIT: Final = 4096
_decimal_texts: Final = attrgetter(*DECIMAL_FIELDS)


def _valid(text: str) -> bool:
    if text in _GOOD:
        return True
    if text in _BAD:
        return False
    found = _number(text) is not None
    if len(_GOOD) + len(_BAD) > _KNOWN_LIMIT:
        _GOOD.clear()
        _GOOD.add(None)
        _BAD.clear()
    (_GOOD if found else _BAD).add(text)
    return found


def _nonzero(text: str | None) -> bool:
    value = _number(text) if text is not None else None
    return value is not None and value != 0


def row_problem(new: SymbolRecord, served: SymbolRecord | None) -> tuple[str, bool] | None:
    """What is wrong with `new` given the row `served` for its symbol (None: a new symbol).

    Returns None for a usable row, else ``(reason, invalid)``: `invalid` rows are never
    accepted, the others (suspicious) once confirmed. Pure; cheap enough to run on every
    changed row.
    """
    texts = _decimal_texts(new)
    # Every value already known good (None counts as good): one C call for the whole row, the
    # usual case; a first cycle judges every row of the payload.
    if not _GOOD.issuperset(texts):
        for name, text in zip(_DECIMAL_FIELDS, texts, strict=True):
            if text is not None and not _valid(text):
                return f"{name} {text[:40]!r} is not a finite non-negative number", True
    if new.status != "TRADING":
        return None
    # Losing a filter the served row had (or a new TRADING symbol without it): a bot cannot
    # round a price or a quantity for it.
    for value, old, kind in (
        (new.tick_size, served.tick_size if served else "", "PRICE_FILTER"),
        (new.step_size, served.step_size if served else "", "LOT_SIZE"),
    ):
        if value is None and old is not None:
            return f"TRADING row without {kind}", False
    if served is not None:
        for name in ("tick_size", "step_size"):
            new_value, old_value = getattr(new, name), getattr(served, name)
            if new_value is not None and _nonzero(old_value) and not _nonzero(new_value):
                return f"{name} became {new_value} (served {old_value})", False
    return None


@dataclass(frozen=True, slots=True)
class RowVerdicts:
    """`held`: rows held back now, with their streaks (to store for the next cycle).
    `confirmed`: suspicious rows accepted this time because they were seen often enough."""

    held: tuple[HeldRow, ...]
    confirmed: tuple[HeldRow, ...]


def judge_rows(
    changed: Iterable[tuple[SymbolRecord, str, SymbolRecord | None]],
    *,
    streaks: Mapping[str, HeldRow],
    confirm: int,
) -> RowVerdicts:
    """Judge the rows that differ from the ones served.

    `changed` yields ``(new record, hex digest of its bytes, served record or None)``.
    `streaks` is the previous cycle's held rows by symbol: a suspicious row seen with the same
    digest last time counts one more confirmation; a different one starts again at 1.
    """
    held: list[HeldRow] = []
    confirmed: list[HeldRow] = []
    for new, row_digest, served in changed:
        problem = row_problem(new, served)
        if problem is None:
            continue
        reason, invalid = problem
        last = streaks.get(new.symbol)
        seen = last.seen + 1 if last is not None and last.digest == row_digest else 1
        verdict = HeldRow(new.symbol, reason, row_digest, seen, invalid)
        if not invalid and seen >= confirm:
            confirmed.append(verdict)
        else:
            held.append(verdict)
    return RowVerdicts(tuple(held), tuple(confirmed))
