"""``symbold run``: the daemon in the foreground (what systemd runs)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.config.loader import Config


NAME = "run"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        NAME,
        parents=[common],
        help="run the daemon in the foreground",
        description="Refresh every enabled market on its own timer until SIGTERM/SIGINT. "
        "SIGHUP re-reads the configuration and refreshes now. Under systemd (Type=notify) it "
        "reports readiness, status and watchdog pings, and logs to stdout with journald "
        "priorities. Exit 0 after a clean stop, 1 forced stop, 78 bad configuration or Redis "
        "credentials (systemd does not restart on it).",
        epilog="examples:\n"
        "  symbold run --config /etc/symbold/config.toml   as systemd runs it\n"
        "  symbold run --log-format console --log-level debug\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=handle)


def handle(config: Config, args: argparse.Namespace) -> int:
    from daemon.config.extras import require_extras
    from daemon.logs import get_logger

    require_extras(config.settings)  # ConfigError -> exit 78 before anything starts
    from daemon.aio import run_async
    from daemon.service.lifecycle import Service

    get_logger().info(
        "config.loaded",
        config_file=str(config.config_path) if config.config_path else None,
        **{f"redis_{k}": v for k, v in config.url.describe().items()},
    )
    # A reload repeats the same layers: the file again, the environment and flags as they were.
    return run_async(Service.from_config(config, reload=config.reload).run())
