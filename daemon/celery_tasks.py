"""The documented module to put in a legacy Celery app's ``include``: importing it registers
``symbold.refresh_symbols``. The task lives in :mod:`daemon.celery_interop.tasks`."""

from daemon.celery_interop.tasks import refresh_symbols

__all__ = ["refresh_symbols"]
