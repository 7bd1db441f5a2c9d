"""Measuring processes from outside: memory and open file descriptors from /proc, and a
monotonic stopwatch for recovery times."""

from __future__ import annotations

import os
import time
from pathlib import Path


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS / VmHWM / VmSize / VmPeak of a process, in KiB, from /proc/PID/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmSize", "VmPeak"):
            out[key] = int(value.split()[0])
    return out


def open_fds(pid: int | str = "self") -> int:
    """How many file descriptors the process has open now."""
    return len(os.listdir(f"/proc/{pid}/fd"))


class Stopwatch:
    """Monotonic seconds since creation (or the last `reset`)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def reset(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0
