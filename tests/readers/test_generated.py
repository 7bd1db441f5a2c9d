"""The blocking reader is generated from the asyncio one: the checked-in file must match."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_generated_sync_reader_is_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout


def test_generated_file_is_the_translation() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import unasync
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    source = (ROOT / "daemon" / "readers" / "_async.py").read_text(encoding="utf-8")
    generated = (ROOT / "daemon" / "readers" / "_sync.py").read_text(encoding="utf-8")
    expected = unasync.formatted(
        unasync.unasync_text(source, "daemon/readers/_async.py"), "daemon/readers/_sync.py"
    )
    assert expected == generated
    assert "await " not in generated
    assert "async def" not in generated
