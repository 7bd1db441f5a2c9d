"""Optional extras a configuration needs: checked where they will be used, before running.

``[celery] enabled = true`` needs the ``celery`` extra. The check looks the module up without
importing it (no Celery start-up cost for a process that does not send yet), and is made by
``symbold config check`` and ``symbold run`` only: ``status`` or ``ping`` from a shell whose
environment lacks Celery still work against the service's settings.
"""

from __future__ import annotations

import importlib.util
import sys

from daemon.config.settings import ConfigError, Settings

CELERY_HINT = "pip install 'symbold[celery]'"


def module_available(name: str) -> bool:
    """Whether `name` can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        # A finder that refuses the name, or a half-imported module without a spec.
        return False


def require_extras(settings: Settings) -> None:
    """Raise ConfigError (exit 78) naming the setting and the extra to install when an enabled
    feature's package is missing from this interpreter."""
    if settings.celery.enabled and not module_available("celery"):
        raise ConfigError(
            "celery.enabled is true but Celery is not installed for "
            f"{sys.executable}: {CELERY_HINT}"
        )
