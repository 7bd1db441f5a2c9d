"""A standalone Celery app for ``celery -A daemon.celery_app worker`` (needs ``symbold[celery]``).

The broker is ``[celery] broker_url``, else the Redis URL resolved the usual way, so
``CELERY_BROKER_URL`` keeps working.
"""

from __future__ import annotations

from celery import Celery

from daemon.config.redis_target import resolve_redis_url
from daemon.config.settings import load_settings

_loaded = load_settings()
_url = resolve_redis_url(_loaded.settings.redis.url, _loaded.redis_url_origin, _loaded.environ)

app = Celery(
    "symbold",
    broker=_loaded.settings.celery.broker_url or _url.url,
    include=["daemon.celery_interop.tasks"],
)
app.conf.task_default_queue = _loaded.settings.celery.queue
