"""The documented Celery entry point: ``celery -A daemon.celery_app worker``.

The app lives in :mod:`daemon.celery_interop.app`; this name is kept so existing commands and
deploy scripts keep working.
"""

from daemon.celery_interop.app import app

__all__ = ["app"]
