"""The one freshness rule, shared by every surface that says "fresh" or "stale".

Definition (what a caller may rely on):

- A market is **fresh** when it has an accepted snapshot whose ``refreshed_at`` (the time the
  daemon accepted it, UTC epoch seconds) is at most ``health.max_age`` seconds ago.
- It is **stale** otherwise: no snapshot at all, or an older one. Nothing else makes it stale.
- **serving a fallback** is a separate fact, never part of the verdict: the meta hash's
  ``stale`` flag (a name kept for the data contract) says the last refresh attempt failed or was
  held back, or the cache was republished from memory or ``last_good``. A fallback younger than
  ``max_age`` is still fresh: its data is as new as the data the bot would otherwise have.

``symbold status`` (text, ``--json``, ``--check``), ``/healthz`` and the systemd ``STATUS=``
line all call :func:`judge` and use :attr:`Freshness.word` / :attr:`Freshness.reason`, so they
cannot disagree about the same snapshot at the same moment.
"""

from __future__ import annotations

import msgspec

FRESH = "fresh"
STALE = "STALE"


def duration(seconds: float) -> str:
    """A short human duration: "41 s", "12 min", "3.5 h", "2.1 d"."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


class Freshness(msgspec.Struct, frozen=True):
    """The verdict for one market; `reason` is empty when fresh."""

    market: str
    fresh: bool
    age: float | None
    max_age: float
    reason: str

    @property
    def word(self) -> str:
        """ "fresh" or "STALE": the word every surface prints."""
        return FRESH if self.fresh else STALE


def judge(market: str, refreshed_at: float | None, max_age: float, now: float) -> Freshness:
    """Pure: fresh iff a snapshot exists and ``now - refreshed_at <= max_age``."""
    if refreshed_at is None:
        return Freshness(market, False, None, max_age, f"{market}: no snapshot yet")
    age = max(0.0, now - refreshed_at)
    if age > max_age:
        reason = f"{market}: snapshot {age:.0f} s old (max {max_age:.0f} s)"
        return Freshness(market, False, age, max_age, reason)
    return Freshness(market, True, age, max_age, "")
