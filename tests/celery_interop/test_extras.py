"""``[celery] enabled = true`` in an environment without Celery is a configuration error (78)
that names the extra to install, for ``config check`` and ``run``; other commands still work.

The interpreter really cannot import celery: a finder at the front of ``sys.meta_path``
refuses it, as when the package is not installed. Nothing in symbold is mocked.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from daemon import exitcodes
from tests.support.daemon_proc import run_python
from tests.support.redis_server import free_port

pytestmark = pytest.mark.timeout(60)

WITHOUT_CELERY = """\
import sys

class NoCelery:
    def find_spec(self, name, path=None, target=None):
        if name == "celery" or name.startswith("celery."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

if sys.argv[1] == "block":
    sys.meta_path.insert(0, NoCelery())
    try:
        import celery  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker did not block")
from daemon.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def symbold(block: bool, *args: str) -> subprocess.CompletedProcess[str]:
    return run_python(
        "-c",
        WITHOUT_CELERY,
        "block" if block else "allow",
        *args,
        env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
    )


@pytest.fixture
def celery_config(tmp_path: Path) -> Path:
    path = tmp_path / "celery.toml"
    path.write_text('[celery]\nenabled = true\non_change = "bot.symbols_changed"\n')
    return path


def test_config_check_fails_without_celery_and_names_the_extra(celery_config: Path) -> None:
    result = symbold(True, "config", "check", "--config", str(celery_config))
    assert result.returncode == exitcodes.CONFIG, result.stdout + result.stderr
    assert "celery.enabled" in result.stderr
    assert "pip install 'symbold[celery]'" in result.stderr
    assert result.stdout == ""  # no settings printed as if they were valid

    # The same file where Celery is installed (this venv) is valid.
    allowed = symbold(False, "config", "check", "--config", str(celery_config))
    assert allowed.returncode == exitcodes.OK, allowed.stderr


def test_run_refuses_to_start_without_celery(celery_config: Path) -> None:
    # Redis is unreachable: a daemon that started would keep running and time out here.
    result = symbold(True, "run", "--config", str(celery_config))
    assert result.returncode == exitcodes.CONFIG, result.stdout + result.stderr
    assert "pip install 'symbold[celery]'" in result.stderr


def test_disabled_celery_needs_no_extra(tmp_path: Path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text("[celery]\nenabled = false\n")
    result = symbold(True, "config", "check", "--config", str(path))
    assert result.returncode == exitcodes.OK, result.stderr
