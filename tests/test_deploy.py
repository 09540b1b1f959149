"""deploy/: the Prometheus alert rules (checked and unit-tested with promtool)
and the Grafana dashboard name only metrics that gq/metrics.py defines."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gq.metrics import REGISTRY

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "gq-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "gq-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "gq-dashboard.json"
METRIC_NAME = re.compile(r"\bgq_[a-z_]+")
SEVERITIES = {"critical", "high", "medium", "low"}   # the playbook's severity table

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (Debian: apt-get install prometheus; ci/promtool.sh "
    "does it in CI)")


def exposed_series() -> dict[str, str]:
    """Every series name gq/metrics.py exposes -> its metric family.
    prometheus_client appends _total to counters and _bucket/_count/_sum to
    histograms, and adds _created to both."""
    names = {}
    for family in REGISTRY.collect():
        suffixes = {"counter": ["_total", "_created"], "gauge": [""],
                    "histogram": ["_bucket", "_count", "_sum", "_created"]}[family.type]
        for suffix in suffixes:
            names[family.name + suffix] = family.name
    return names


def alert_blocks() -> dict[str, str]:
    """alert name -> its YAML text (the rules file is a flat list of alerts)."""
    text = RULES.read_text()
    parts = re.split(r"^      - alert: (\w+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


@needs_promtool
def test_promtool_check_rules():
    out = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_blocks())} rules found" in out.stdout


@needs_promtool
def test_promtool_unit_tests_fire_on_synthetic_series():
    out = subprocess.run(["promtool", "test", "rules", str(RULE_TESTS)], capture_output=True,
                         text=True, timeout=60, cwd=RULE_TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_rules_encode_the_playbook_table():
    alerts = alert_blocks()
    wanted = {"GQQueueNotDraining": "critical", "GQPersistenceErrors": "critical",
              "GQCircuitOpen": "critical", "GQHighFailureRate": "high",
              "GQBacklogOverWarning": "medium", "GQStuckJobs": "medium"}
    for name, severity in wanted.items():
        assert f"severity: {severity}\n" in alerts[name], name
    for name, block in alerts.items():
        severity = re.search(r"severity: (\w+)", block).group(1)
        assert severity in SEVERITIES, name
        for field in ("summary:", "description:", "runbook:", "response:"):
            assert field in block, f"{name} has no {field}"
        runbook = re.search(r"runbook: \"([^\"]+)\"", block).group(1)
        assert runbook.startswith("failure-playbook.md: "), name


def test_rules_name_only_defined_metrics():
    known = exposed_series()
    exprs = [re.search(r"expr: (.*?)\n        for:", block, re.S).group(1)
             for block in alert_blocks().values()]
    used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert used and used <= set(known), sorted(used - set(known))
    # the prose may also name a histogram by its family name
    mentioned = set(METRIC_NAME.findall(RULES.read_text()))
    assert mentioned <= set(known) | set(known.values()), \
        sorted(mentioned - set(known) - set(known.values()))


def dashboard_queries(dashboard: dict) -> list[str]:
    queries = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    queries.append(value)
                elif key == "query" and isinstance(value, (str, dict)):
                    queries.append(value if isinstance(value, str) else value.get("query", ""))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(dashboard)
    return queries


def test_dashboard_names_only_defined_metrics_and_shows_them_all():
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [q for q in dashboard_queries(dashboard) if q != "prometheus"]
    assert len(queries) > 20
    known = exposed_series()
    used = {name for q in queries for name in METRIC_NAME.findall(q)}
    assert used <= set(known), sorted(used - set(known))
    # every gq_* metric has a place on the dashboard
    assert {known[name] for name in used} == set(known.values())


def test_dashboard_layout_is_valid():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"])
            assert panel["datasource"]["uid"] == "${datasource}"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "instance", "type"}
