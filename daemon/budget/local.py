"""The per-process limiter used while Redis cannot be reached (policy ``local``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from daemon.budget.limits import window_end, window_start
from daemon.budget.plan import Charge
from daemon.budget.results import Attempt


@dataclass
class _LocalWindow:
    start: int = -1
    used: int = 0  # counted against the local share (written-off windows count in full)
    spent: int = 0  # actually granted here


@dataclass
class LocalLimiter:
    """Per-process limits used while Redis cannot be reached (policy ``local``).

    Each limit allows cap / expected_processes per window. Time is Binance's as last seen
    through Redis, carried forward on this process's monotonic clock (the wall clock only
    when Redis was never reached). The window in which the outage began is treated as spent
    (its shared count is unknown; allowing a fresh share would risk a burst), and the spends
    made here are handed back to Redis when it returns (see :meth:`handback`).
    """

    expected_processes: int
    anchor: tuple[int, float] | None = None
    outage_ms: int | None = None
    windows: dict[str, _LocalWindow] = field(default_factory=dict)
    last_local_ms: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note_server_time(self, now_ms: int) -> None:
        self.anchor = (now_ms, time.monotonic())

    def now_ms(self) -> int:
        anchor = self.anchor
        if anchor is None:
            return int(time.time() * 1000)  # never reached Redis: no better clock
        return anchor[0] + int((time.monotonic() - anchor[1]) * 1000)

    @property
    def active(self) -> bool:
        return self.outage_ms is not None

    def try_acquire(self, charges: Sequence[Charge], priority: str) -> tuple[bool, int, int]:
        """(granted, now_ms, reset_ms): charge every limit's local share, or none."""
        with self.lock:
            now = self.now_ms()
            if self.outage_ms is None:
                self.outage_ms = now
            worst = 0
            states: list[tuple[_LocalWindow, int, int]] = []
            for c in charges:
                iv = c.caps.limit.interval_ms
                start = window_start(now, iv)
                share = c.caps.for_priority(priority) // self.expected_processes
                win = self.windows.setdefault(c.key, _LocalWindow())
                if win.start != start:
                    win.start, win.used, win.spent = start, 0, 0
                    if self.outage_ms >= start:
                        win.used = share  # the outage began in this window
                states.append((win, c.cost, share))
                if win.used + c.cost > share:
                    worst = max(worst, window_end(now, iv))
            if worst:
                return False, now, worst
            for win, cost, _ in states:
                win.used += cost
                win.spent += cost
            self.last_local_ms = now
            return True, now, 0

    def handback(self, charges: Sequence[Charge]) -> tuple[bool, dict[str, int]]:
        """What to tell Redis on the first call after an outage: poison (spends were made
        locally in the current window) and the local spends per key of the current windows."""
        with self.lock:
            if self.outage_ms is None:
                return False, {}
            now = self.now_ms()
            extra: dict[str, int] = {}
            poison = False
            for c in charges:
                iv = c.caps.limit.interval_ms
                win = self.windows.get(c.key)
                if win is not None and win.start == window_start(now, iv) and win.spent > 0:
                    extra[c.key] = win.spent
                    poison = True
            return poison, extra

    def recovered(self) -> None:
        with self.lock:
            self.outage_ms = None
            self.windows.clear()

    def attempt(self, charges: Sequence[Charge], priority: str) -> Attempt:
        """:meth:`try_acquire` as an :class:`Attempt`; when refused, the blocking limit is
        the longest one charged (its window ends last)."""
        ok, now_ms, reset_ms = self.try_acquire(charges, priority)
        blocking = None
        if not ok:
            blocking = max(charges, key=lambda c: c.caps.limit.interval_ms).caps.limit
        return Attempt(ok, now_ms, reset_ms, blocking, True)


class BanMemory:
    """A ban deadline this process knows (epoch s), kept on its monotonic clock so that a
    wall-clock step does not end or stretch it; later acquires raise without asking Redis."""

    __slots__ = ("_mono", "until")

    def __init__(self) -> None:
        self._mono = 0.0
        self.until = 0.0

    def remember(self, until: float, now: float) -> None:
        mono = time.monotonic() + max(0.0, until - now)
        if mono > self._mono:
            self._mono, self.until = mono, until

    def current(self) -> float | None:
        """The deadline while it stands, else None."""
        return self.until if time.monotonic() < self._mono else None

    def forget(self) -> None:
        self._mono = 0.0
