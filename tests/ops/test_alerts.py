"""The deployable alerting: Prometheus rules (checked and unit-tested by promtool) and the
Grafana dashboard, both held to the metric names the daemon really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from daemon.ops.metrics import Telemetry

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULES_TEST = REPO / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "symbold.json"

# Metrics the rules and dashboard may use although nothing exports them yet (none today).
NOT_YET_EXPORTED: set[str] = set()
# Metrics the alerts depend on: each must be exported (checked below, not just allowed).
ALERTED = {
    "symbold_budget_used",
    "symbold_budget_limit",
    "symbold_leader",
    "symbold_ban_until_timestamp_seconds",
}

METRIC = re.compile(r"\bsymbold_[a-z0-9_]+\b")


def exported_metrics() -> set[str]:
    """Sample names the daemon's registry exposes, derived from the code, not a copied list."""
    names: set[str] = set()
    for family in Telemetry().registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is missing: Debian's `prometheus` package ships it (scripts/ci-deps.sh)"
        )
    return found


@pytest.mark.timeout(60)
def test_promtool_check_rules() -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@pytest.mark.timeout(60)
def test_promtool_unit_tests_pass() -> None:
    out = subprocess.run(
        [promtool(), "test", "rules", str(RULES_TEST)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
        cwd=RULES_TEST.parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.timeout(10)
def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    rules = RULES.read_text()
    alerts = set(re.findall(r"^\s+- alert: (\w+)$", rules, re.M))
    tests = RULES_TEST.read_text()
    firing = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tests))
    quiet = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts: \[\]", tests))
    assert alerts
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"


@pytest.mark.timeout(10)
def test_rules_use_only_known_metrics() -> None:
    known = exported_metrics() | NOT_YET_EXPORTED
    exprs = re.findall(r"expr: (\|\n(?:\s{10}.*\n)+|.*)", RULES.read_text())
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used
    assert used - known == set()


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


@pytest.mark.timeout(10)
def test_dashboard_shape() -> None:
    doc = _dashboard()
    assert doc["uid"] == "symbold-overview"
    assert doc["title"]
    assert isinstance(doc["schemaVersion"], int)
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = doc["panels"]
    assert panels
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["title"], panel
        assert panel["type"] in {"timeseries", "stat", "state-timeline", "gauge", "table"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        assert grid["h"] > 0
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids)
        for target in panel["targets"]:
            assert target["expr"].strip()
            assert target["datasource"] == panel["datasource"]


@pytest.mark.timeout(10)
def test_dashboard_names_only_known_metrics_and_shows_every_exported_one() -> None:
    exported = exported_metrics()
    known = exported | NOT_YET_EXPORTED
    used = {
        name
        for panel in _dashboard()["panels"]
        for target in panel["targets"]
        for name in METRIC.findall(target["expr"])
    }
    assert used - known == set(), "a panel names a metric nobody exports"
    # Every exported symbold family shows somewhere (a histogram through its buckets); the
    # standard process_*/python_* families are there for ad-hoc queries.
    families = {
        re.sub(r"_(total|bucket|sum|count)$", "", n) for n in exported if n.startswith("symbold_")
    }
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert families - shown == set(), "an exported metric has no panel"
    assert used >= ALERTED


@pytest.mark.timeout(10)
def test_alerted_and_process_metrics_are_exported() -> None:
    exported = exported_metrics()
    assert exported >= ALERTED
    assert {"process_open_fds", "process_max_fds", "process_resident_memory_bytes"} <= exported
