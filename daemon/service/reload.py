"""What a reload (SIGHUP, ``systemctl reload``) can apply in place, as pure functions.

- ``health.*`` is applied live without touching the market loops: ``max_age`` at once, and the
  endpoint is started, stopped or moved to its new address.
- ``celery.on_change`` / ``celery.on_failure`` are read at every event, so they apply live.
- Everything else that feeds the market loops (``redis.*``, ``markets.*``, ``upstream.*``,
  ``guards.*``, ``scheduler.*``, ``lease.*``, ``budget.*``, ``log.*``) is applied by rebuilding
  the loops with the new settings (the snapshot held in memory is kept).
- The keys in :data:`RESTART_ONLY` take effect at the next start only; a reload that changes
  them logs a warning naming them, and the STATUS= line says a restart is needed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from daemon.config.settings import Settings

# Keys (or whole sections, by prefix) read only while the service starts.
RESTART_ONLY: tuple[str, ...] = (
    "celery.enabled",
    "celery.broker_url",
    "celery.queue",
    "celery.send_timeout",
    "celery.max_pending",
    "service.start_timeout",
)
# Keys applied live without rebuilding the market loops.
LIVE_WITHOUT_LOOPS: tuple[str, ...] = ("health.", "service.", "celery.")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def changed_keys(old: Settings, new: Settings) -> set[str]:
    """Dotted names of the settings that differ (names only: values may be secrets)."""
    a = _flatten(msgspec.to_builtins(old))
    b = _flatten(msgspec.to_builtins(new))
    return {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}


def needs_loops(changed: set[str]) -> bool:
    """True when a changed key feeds the market loops (they must be rebuilt)."""
    return any(not key.startswith(LIVE_WITHOUT_LOOPS) for key in changed)


def restart_pending(started: Settings, current: Settings) -> list[str]:
    """The restart-only keys whose value now differs from the one the service started with."""
    changed = changed_keys(started, current)
    return sorted(key for key in changed if key in RESTART_ONLY)
