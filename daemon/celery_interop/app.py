"""A standalone Celery app for ``celery -A daemon.celery_app worker`` (needs ``symbold[celery]``).

The broker is ``[celery] broker_url``, else the Redis URL resolved the usual way, so
``CELERY_BROKER_URL`` keeps working.
"""

from __future__ import annotations

from celery import Celery

from daemon.config.loader import load_config

_config = load_config()

app = Celery(
    "symbold",
    broker=_config.settings.celery.broker_url or _config.url.url,
    include=["daemon.celery_interop.tasks"],
)
app.conf.task_default_queue = _config.settings.celery.queue
