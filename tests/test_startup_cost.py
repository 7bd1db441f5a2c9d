"""Start-up cost of the CLI: what ``import daemon.cli`` and ``symbold status`` load.

The import set is the robust assertion (a heavy module pulled in eagerly fails it on any
machine); the timing is informative, with a wide margin for a loaded CI machine (the goal on an
idle 2-core machine is 150 ms for ``import daemon.cli``).
"""

from __future__ import annotations

import re

import pytest

from tests.support.daemon_proc import run_python

pytestmark = pytest.mark.timeout(60)

# Never needed to parse flags or print help.
HEAVY = ("aiohttp", "redis", "structlog", "prometheus_client", "celery", "msgspec", "uvloop")
# Never needed by `symbold status`: the HTTP server, metrics, the refresh machinery.
NOT_FOR_STATUS = (
    "aiohttp",
    "prometheus_client",
    "celery",
    "structlog",
    "daemon.ops.health",
    "daemon.refresh.cycle",
    "daemon.upstream.fetch",
    # The budget's clients load only where a market's budget counters exist (none here).
    "daemon.budget._async",
    "daemon.budget._sync",
    # Key names and the meta hash only: no record or filter types.
    "daemon.contract.record",
    "daemon.contract.filters",
)


def _importtime(code: str, env: dict[str, str] | None = None) -> dict[str, int]:
    """Run `code` under ``-X importtime``; cumulative microseconds per imported module."""
    result = run_python("-X", "importtime", "-c", code, env=env)
    cumulative: dict[str, int] = {}
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)$", line)
        if match:
            cumulative[match.group(3)] = int(match.group(1))
    assert cumulative, result.stderr
    return cumulative


def test_import_daemon_cli_is_light() -> None:
    times = _importtime("import daemon.cli")
    loaded = {name.split(".")[0] for name in times} | set(times)
    assert not [m for m in HEAVY if m in loaded]
    assert times["daemon.cli"] < 400_000, f"import daemon.cli took {times['daemon.cli']} us"


def test_status_loads_no_server_metrics_or_refresh_machinery(redis_url: str) -> None:
    code = (
        "import sys\n"
        "from daemon.cli import main\n"
        "code = main(['status', '--json'])\n"
        f"loaded = [m for m in {NOT_FOR_STATUS!r} if m in sys.modules]\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    result = run_python("-c", code, env={"REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr
    assert '"spot"' in result.stdout  # it did read Redis
    assert "LOADED []" in result.stderr, result.stderr
