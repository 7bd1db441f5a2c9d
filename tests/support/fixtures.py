"""Where the recorded Binance payloads live: ../shared/fixtures/binance beside the checkout
(CI lays shared/ there too), or $SYMBOLD_BINANCE_FIXTURES. Tests read them in place and skip
with a reason when they are absent; they are never copied into the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(
    os.environ.get("SYMBOLD_BINANCE_FIXTURES") or ROOT.parent / "shared" / "fixtures" / "binance"
)


def fixture_bytes(name: str) -> bytes:
    """The recorded payload `name`, or skip the test with a clear reason."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"recorded payload {path} is absent (../shared not laid beside the checkout)")
    return path.read_bytes()


# The small samples the package ships (written in Binance's format; `make demo` serves them).
SAMPLES = ROOT / "daemon" / "samples"


def sample_bytes(name: str) -> bytes:
    """The shipped sample `name` (always present)."""
    return (SAMPLES / name).read_bytes()
