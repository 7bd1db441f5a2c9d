"""Settings and the Redis target, resolved once by :func:`load_config` into a :class:`Config`.

``load_config`` and ``Config`` are imported lazily: ``import daemon.config`` stays cheap (no
redis-py) for code that only needs the settings types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.config.loader import Config, config_from_loaded, load_config

__all__ = ["Config", "config_from_loaded", "load_config"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from daemon.config import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'daemon.config' has no attribute {name!r}")
