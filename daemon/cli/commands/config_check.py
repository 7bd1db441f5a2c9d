"""``symbold config check``: validate the settings and print them, secrets redacted."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from daemon import exitcodes
from daemon.cli.parsing import Parser

if TYPE_CHECKING:
    from daemon.config.loader import Config


NAME = "config"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p_config = sub.add_parser(NAME, parents=[common], help="inspect settings")
    actions = p_config.add_subparsers(
        dest="config_command", required=True, metavar="ACTION", parser_class=Parser
    )
    p = actions.add_parser(
        "check",
        parents=[common],
        help="validate and print the effective settings",
        description="Load the settings exactly as `symbold run` would (defaults, the TOML "
        "file, the environment, flags, the credential or url_file) and print them as JSON "
        "with every secret redacted, with the Redis URL's source. Also checks that the "
        "extras an enabled feature needs are installed (celery). Exit 0 valid, 78 invalid "
        "(the message names the key).",
        epilog="examples:\n"
        "  symbold config check --config /etc/symbold/config.toml\n"
        "  SYMBOLD_CONFIG=/etc/symbold/config.toml symbold config check   as cron would\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=handle)


def handle(config: Config, args: argparse.Namespace) -> int:
    import msgspec

    from daemon.config.extras import require_extras
    from daemon.config.settings import redacted_tree
    from daemon.redaction import redact_one_url

    require_extras(config.settings)  # ConfigError -> exit 78, naming the extra
    url = config.url
    header = {
        "config_file": str(config.config_path) if config.config_path else None,
        "redis_url": url.redacted,
        "redis_url_source": url.source,
    }
    body = {"effective": header, "settings": redacted_tree(config.settings, redact_one_url)}
    print(msgspec.json.format(msgspec.json.encode(body), indent=2).decode())
    return exitcodes.OK
