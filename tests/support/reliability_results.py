"""Recording the reliability suite's results for the published table.

A test asks for the ``reliability`` fixture and describes the row it proves::

    def test_x(reliability):
        reliability.row("Redis restarted empty", "republished from memory, stale=1", group="Redis")
        ...
        reliability.recovery(seconds)          # measured recovery time
        reliability.detail(cycles=12)          # anything worth printing

The outcome (passed, failed, xfailed, ...) is filled in by a ``pytest_runtest_makereport``
hook. When ``SYMBOLD_RELIABILITY_RESULTS`` names a file, the session writes every row there as
JSON at the end (merged with what is already in it, so the soak and the suite can be run
separately); ``scripts/reliability_table.py`` turns that file into ``docs/reliability.md``.

The conftest files of ``tests/reliability`` and ``tests/soak`` import the fixture and hooks
from here; everything is idempotent, so both being loaded in one session is harmless.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

ENV = "SYMBOLD_RELIABILITY_RESULTS"


@dataclass
class Row:
    nodeid: str
    group: str = ""
    fault: str = ""
    expected: str = ""
    recovery_s: float | None = None
    recovery_bound_s: float | None = None
    data_lost: str = "none"
    outcome: str = "not run"
    duration_s: float = 0.0
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)


_ROWS: dict[str, Row] = {}
_SOAK: dict[str, Any] = {}


class Recorder:
    def __init__(self, nodeid: str) -> None:
        self._row = _ROWS.setdefault(nodeid, Row(nodeid=nodeid))

    def row(self, fault: str, expected: str, *, group: str) -> None:
        self._row.fault, self._row.expected, self._row.group = fault, expected, group

    def recovery(self, seconds: float, *, bound: float | None = None) -> None:
        self._row.recovery_s = round(seconds, 3)
        if bound is not None:
            self._row.recovery_bound_s = bound

    def detail(self, **values: Any) -> None:
        self._row.details.update(values)


def record_soak(summary: dict[str, Any]) -> None:
    _SOAK.clear()
    _SOAK.update(summary)


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Recorder:
    return Recorder(request.node.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    row = _ROWS.get(item.nodeid)
    if row is None:
        return
    if report.when == "call" or report.outcome != "passed":
        if hasattr(report, "wasxfail"):
            row.outcome = "xpassed" if report.passed else "xfailed"
            row.reason = str(report.wasxfail)
            if not report.passed:
                row.data_lost = "not proven (known bug)"
        else:
            row.outcome = report.outcome
        if report.when == "call":
            row.duration_s = round(report.duration, 2)
        if report.failed and report.when != "call":
            row.outcome = f"error in {report.when}"
    if report.outcome not in ("passed", "skipped") and not hasattr(report, "wasxfail"):
        row.data_lost = "unknown (test failed)"


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(ENV)
    if not path or (not _ROWS and not _SOAK):
        return
    target = Path(path)
    data: dict[str, Any] = {"rows": {}, "soak": None}
    if target.exists():
        with contextlib.suppress(ValueError):
            data = json.loads(target.read_text())
    data.setdefault("rows", {}).update({k: asdict(v) for k, v in _ROWS.items()})
    if _SOAK:
        data["soak"] = dict(_SOAK)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2) + "\n")  # rows in the order they ran
