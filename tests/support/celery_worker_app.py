"""The Celery app a test worker runs: symbold's tasks plus recorders for the legacy hooks.

Recorded calls go to Redis lists on the test's own server (``SYMBOLD_TEST_SINK``), so a test
waits for them with BLPOP instead of sleeping.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery
from celery.signals import task_postrun

app = Celery(
    "symbold-tests", broker=os.environ["SYMBOLD_TEST_BROKER"], include=["daemon.celery_tasks"]
)
app.conf.task_default_queue = os.environ.get("SYMBOLD_TEST_QUEUE", "celery")
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True


def _push(name: str, value: Any) -> None:
    client = redis.Redis.from_url(os.environ["SYMBOLD_TEST_SINK"])
    try:
        client.rpush(name, json.dumps(value))
    finally:
        client.close()


@app.task(name="tests.record_change")  # type: ignore[untyped-decorator]
def record_change(**kwargs: Any) -> None:
    _push("sink:change", kwargs)


@app.task(name="tests.record_failure")  # type: ignore[untyped-decorator]
def record_failure(**kwargs: Any) -> None:
    _push("sink:failure", kwargs)


@task_postrun.connect  # type: ignore[untyped-decorator]
def _done(task: Any = None, retval: Any = None, state: Any = None, **_: Any) -> None:
    _push("sink:done", {"task": task.name if task else None, "state": state, "retval": retval})
