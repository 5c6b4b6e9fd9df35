"""Alert rules and the Grafana dashboard parse and only use series the services export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

from shared import metrics

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
COLLECTORS = (Path(__file__).resolve().parents[2] / "services" / "api" / "ops" / "collectors.py").read_text()
DRAMATIQ = (
    "dramatiq_messages_total",
    "dramatiq_message_errors_total",
    "dramatiq_message_retries_total",
    "dramatiq_message_rejects_total",
    "dramatiq_messages_inprogress",
    "dramatiq_delayed_messages_inprogress",
    "dramatiq_message_duration_milliseconds",
)
SERIES = re.compile(r"\b((?:biapp|dramatiq)_[a-z_]+)\b")


def known_series() -> set[str]:
    names: set[str] = set(DRAMATIQ)
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names |= {family.name for family in value.describe()}
    names |= set(re.findall(r'"(biapp_[a-z_]+)"', COLLECTORS))
    return names


def _base(name: str, known: set[str]) -> bool:
    return any(name == k or name in {f"{k}_{s}" for s in ("total", "bucket", "sum", "count")} for k in known)


def test_alert_rules_are_well_formed_and_cover_failures_lag_and_dead_letters():
    groups = yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {"BiappExecutionFailuresRising", "BiappSchedulerLagHigh", "BiappDeadLetterQueueNotEmpty"} <= names
    known = known_series()
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["for"]
        used = SERIES.findall(rule["expr"])
        assert used, rule["alert"]
        for name in used:
            assert _base(name, known), f"{rule['alert']} uses {name}, which nothing exports"
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_dashboard_panels_query_exported_series():
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    known = known_series()
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in SERIES.findall(expr)}
    for name in used:
        assert _base(name, known), f"the dashboard queries {name}, which nothing exports"
    for wanted in (
        "biapp_http_requests_total",
        "biapp_executions_total",
        "biapp_render_duration_seconds_bucket",
        "biapp_render_rows_bucket",
        "biapp_deliveries_total",
        "biapp_scheduler_lag_seconds_bucket",
        "biapp_queue_messages",
        "dramatiq_messages_inprogress",
    ):
        assert wanted in used, f"no panel shows {wanted}"


def test_every_alert_is_explained_in_the_operations_guide():
    guide = (MONITORING.parents[1] / "docs" / "operations.md").read_text()
    groups = yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        assert rule["alert"] in guide, f"docs/operations.md does not explain {rule['alert']}"
    for name in sorted(known_series()):
        assert name in guide, f"docs/operations.md does not explain the metric {name}"
