"""Which rate-limit ban deadline a cycle honours (pure)."""

from __future__ import annotations

import math

from daemon.snapshot.store import MAX_BAN

__all__ = ["ban_to_honour"]


def ban_to_honour(
    stored: float | None, now: float, ours: float, unsaved: bool
) -> tuple[float, bool]:
    """The deadline to honour and whether the stored one was clamped.

    The stored deadline is re-read every cycle, so deleting the key lifts a ban; one longer
    than Binance's longest ban (:data:`MAX_BAN`, 3 days, infinity included) is clamped to it.
    `ours` counts as well only while we could not store it (`unsaved`), also clamped.
    0.0: no ban.
    """
    clamped = False
    if stored is not None and not math.isnan(stored) and stored > now + MAX_BAN:
        stored, clamped = now + MAX_BAN, True
    ban = stored if stored is not None and not math.isnan(stored) else 0.0
    if unsaved:
        ban = max(ban, min(ours, now + MAX_BAN))
    return ban, clamped
