"""Counting the commands a Redis server ran, by name, to prove how many round trips a call
costs (``with Commands(client) as seen: ...; seen.delta``)."""

from __future__ import annotations

from collections import Counter

import redis


def _calls(client: redis.Redis) -> Counter[str]:
    # Successful calls only: a first EVALSHA on a server that does not know the script yet
    # fails with NOSCRIPT (and the script is loaded); that depends on what ran before.
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    return Counter(
        {
            k.removeprefix("cmdstat_"): v["calls"] - v.get("failed_calls", 0)
            for k, v in stats.items()
        }
    )


class Commands:
    """Commands the server ran between entering and leaving (minus our INFO and the
    subscriber's PINGs), by name: ``with Commands(client) as seen: ...; seen.delta``."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.delta: dict[str, int] = {}

    def __enter__(self) -> Commands:
        self._before = _calls(self.client)
        return self

    def __exit__(self, *exc: object) -> None:
        after = _calls(self.client)
        after.subtract(self._before)
        after["info"] -= 1  # the INFO that took the "before" numbers
        ignored = ("ping", "info", "script|load")
        self.delta = {k: v for k, v in after.items() if v > 0 and k not in ignored}
