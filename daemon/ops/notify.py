"""sd_notify without libsystemd: datagrams to ``$NOTIFY_SOCKET``, and the watchdog pinger.

What a caller may rely on:
- :class:`Notifier` is a no-op when ``NOTIFY_SOCKET`` is unset (not under systemd), supports
  abstract sockets (``@name``), and never raises for a failed send (it logs once);
- :func:`watchdog_interval` turns ``WATCHDOG_USEC`` (honouring ``WATCHDOG_PID``) into the ping
  period, half the timeout as sd_watchdog_enabled(3) advises;
- :class:`Watchdog` pings only while the event loop runs *and* the given liveness check passes,
  so a wedged loop or a dead scheduler stops the pings and systemd restarts the service, while
  an upstream outage (which the scheduler survives) does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping

from daemon.logs import get_logger


class Notifier:
    """Sends sd_notify state lines to the socket systemd gave us."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if path.startswith("@"):
            self.address = "\0" + path[1:]  # abstract namespace
        elif path.startswith("/"):
            self.address = path
        self._sock: socket.socket | None = None
        self._warned = False
        self.log = get_logger("symbold.notify")

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines (e.g. ``send(READY=1, STATUS="...")``). True if sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                self.log.warning("notify.failed", error=str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self._with_status(status, READY=1)

    def reloading(self) -> bool:
        # MONOTONIC_USEC is required with RELOADING=1, or `systemctl reload` waits forever
        # (Type=notify-reload).
        return self.send(
            RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        )

    def stopping(self, status: str | None = None) -> bool:
        return self._with_status(status, STOPPING=1)

    def status(self, text: str) -> bool:
        return self.send(STATUS=_one_line(text))

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def _with_status(self, status: str | None, **fields: str | int) -> bool:
        if status is not None:
            fields["STATUS"] = _one_line(status)
        return self.send(**fields)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings, or None when systemd asked for no watchdog."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. our parent)
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 2 / 1_000_000


class Watchdog:
    """Pings systemd every `interval` seconds while `alive()` says the service works."""

    def __init__(
        self, notifier: Notifier, interval: float, alive: Callable[[], str | None]
    ) -> None:
        self.notifier = notifier
        self.interval = interval
        # Returns None when healthy, or the reason the service is not.
        self.alive = alive
        self.pings = 0
        self.log = get_logger("symbold.notify")

    async def run(self, stop: asyncio.Event) -> None:
        withheld = False
        while not stop.is_set():
            problem = self.alive()
            if problem is None:
                self.notifier.watchdog()
                self.pings += 1
                withheld = False
            elif not withheld:
                withheld = True
                self.log.error("watchdog.withheld", reason=problem)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
