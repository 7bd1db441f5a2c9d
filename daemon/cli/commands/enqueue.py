"""``symbold enqueue``: send one Celery task by name, as the daemon's hooks do."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from daemon import exitcodes

if TYPE_CHECKING:
    from daemon.config.loader import Config


NAME = "enqueue"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        NAME,
        parents=[common],
        help="send one Celery task by name (needs symbold[celery])",
        description="Send TASK with Celery's send_task to [celery] broker_url (else the "
        "resolved Redis URL) and queue, as the daemon's on_change/on_failure hooks do. Exit 0 "
        "sent, 64 bad --args/--kwargs, 69 broker unreachable, 78 Celery not installed "
        "(pip install 'symbold[celery]').",
        epilog="examples:\n"
        "  symbold enqueue symbold.refresh_symbols\n"
        "  symbold enqueue symbold.refresh_symbols --args '[\"usdm\"]'\n"
        '  symbold enqueue bot.on_symbols_changed --kwargs \'{"market": "spot"}\'\n',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", help="task name, e.g. symbold.refresh_symbols")
    p.add_argument("--args", default="[]", help="JSON array of positional arguments")
    p.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    p.set_defaults(handler=handle)


def handle(config: Config, args: argparse.Namespace) -> int:
    import msgspec

    from daemon.redaction import scrub_text

    try:
        task_args = msgspec.json.decode(args.args)
        task_kwargs = msgspec.json.decode(args.kwargs)
    except msgspec.DecodeError as err:
        print(f"symbold: --args/--kwargs is not JSON: {err}", file=sys.stderr)
        return exitcodes.USAGE
    if not isinstance(task_args, list) or not isinstance(task_kwargs, dict):
        print("symbold: --args must be a JSON array and --kwargs a JSON object", file=sys.stderr)
        return exitcodes.USAGE
    from daemon.celery_interop.enqueue import CeleryMissing, TaskSender

    celery = config.settings.celery
    sender = TaskSender(celery.broker_url or config.url.url, celery)
    try:
        task_id = sender.send_blocking(args.task, task_args, task_kwargs)
    except CeleryMissing as err:
        print(f"symbold: {err}", file=sys.stderr)
        return exitcodes.CONFIG
    except Exception as err:  # noqa: BLE001 - kombu raises many types for an unreachable broker
        print(f"symbold: broker unreachable: {scrub_text(str(err))}", file=sys.stderr)
        return exitcodes.UNAVAILABLE
    finally:
        sender.close()
    print(f"sent {args.task} as {task_id} to queue {celery.queue}")
    return exitcodes.OK
