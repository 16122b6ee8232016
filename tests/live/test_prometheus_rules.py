"""The exported Prometheus rule file passes ``promtool check rules`` and fires when it should."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from modelyard.errors import InvalidInput
from modelyard.live.alert_rules import AlertRule, default_rules
from modelyard.live.prometheus_rules import expression, render, to_prometheus

CUSTOM = [
    AlertRule("FeatureDrift", "drift_score", ">", 0.3, for_s=90, model="churn",
              labels={"team": "growth"}, description="a feature drifted: {{ not a template }}"),
    AlertRule("AgeDrift", "drift_score", ">=", 0.2, feature="age", severity="info"),
    AlertRule("NoTraffic", "rows", "<", 1, severity="info"),
    AlertRule("AnyQuiet", "drift_score", "==", 0),
]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: run scripts/services.sh (Debian's prometheus)")
    return found


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_promtool_accepts_the_defaults_and_custom_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(render([*default_rules(), *CUSTOM]))
    checked = run("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 8 rules found" in checked.stdout
    [group] = yaml.safe_load(path.read_text())["groups"]
    assert group["name"] == "modelyard"
    feature = next(r for r in group["rules"] if r["alert"] == "FeatureDrift")
    assert feature["for"] == "1m30s"
    assert feature["labels"] == {"severity": "warning", "team": "growth"}
    assert feature["expr"] == ('max by (model, version) '
                               '(modelyard_monitor_drift_score{model="churn"}) > 0.3')


def test_the_exported_rules_fire_on_the_series_modelyard_exports(tmp_path: Path) -> None:
    """``promtool test rules``: synthetic series shaped like ``/metrics``, the alerts expected."""
    (tmp_path / "rules.yml").write_text(render([*default_rules(), CUSTOM[0]]))
    at = 'model="churn",version="3"'
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": f'modelyard_monitor_value{{{at},metric="dataset_drift"}}',
                 "values": "0 0 1 1 1 1 1 1 1 1 1 1"},
                {"series": f'modelyard_monitor_value{{{at},metric="accuracy_drop"}}',
                 "values": "0.01x12"},
                {"series": f'modelyard_monitor_drift_score{{{at},feature="age"}}',
                 "values": "0.1x12"},
                {"series": f'modelyard_monitor_drift_score{{{at},feature="income"}}',
                 "values": "0.1 0.1 0.5x10"},
                # 100 requests a minute, 10 of them failing; 90 within 250 ms, 10 within 1 s
                {"series": f'modelyard_requests_total{{{at},protocol="rest",outcome="ok"}}',
                 "values": "0+90x12"},
                {"series": f'modelyard_requests_total{{{at},protocol="rest",outcome="error"}}',
                 "values": "0+10x12"},
                {"series": f'modelyard_request_duration_seconds_bucket{{{at},protocol="rest",'
                           'le="0.25"}', "values": "0+90x12"},
                {"series": f'modelyard_request_duration_seconds_bucket{{{at},protocol="rest",'
                           'le="1"}', "values": "0+100x12"},
                {"series": f'modelyard_request_duration_seconds_bucket{{{at},protocol="rest",'
                           'le="+Inf"}', "values": "0+100x12"},
            ],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "DatasetDrift", "exp_alerts": []},
                {"eval_time": "3m", "alertname": "DatasetDrift", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "model": "churn", "version": "3",
                                   "metric": "dataset_drift"},
                    "exp_annotations": {
                        "summary": "DatasetDrift on churn:3: dataset_drift is 1 "
                                   "(dataset_drift == 1)",
                        "description": "the share of drifted features reached the "
                                       "configured share"},
                }]},
                {"eval_time": "10m", "alertname": "AccuracyDrop", "exp_alerts": []},
                {"eval_time": "3m", "alertname": "ErrorRateHigh", "exp_alerts": []},
                {"eval_time": "10m", "alertname": "ErrorRateHigh", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "model": "churn", "version": "3"},
                    "exp_annotations": {
                        "summary": "ErrorRateHigh on churn:3: error_rate is 100m "
                                   "(error_rate > 0.05 for 5m)",
                        "description": "more than 5% of requests failed for 5 minutes"},
                }]},
                {"eval_time": "10m", "alertname": "LatencyP99High", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "model": "churn", "version": "3"},
                    "exp_annotations": {
                        "summary": "LatencyP99High on churn:3: latency_p99_s is 925m "
                                   "(latency_p99_s > 0.5 for 5m)",
                        "description": "p99 request latency above 500 ms for 5 minutes"},
                }]},
                {"eval_time": "2m", "alertname": "FeatureDrift", "exp_alerts": []},
                {"eval_time": "5m", "alertname": "FeatureDrift", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "team": "growth", "model": "churn",
                                   "version": "3"},
                    "exp_annotations": {
                        "summary": "FeatureDrift on churn:3: drift_score is 500m "
                                   "(drift_score > 0.3 for 1m30s)",
                        "description": "a feature drifted: {{ not a template }}"},
                }]},
            ],
        }],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    tested = run("test", "rules", tmp_path / "tests.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_expressions_quote_label_values_and_pick_the_right_aggregate() -> None:
    assert expression(AlertRule("A", "drift_score", "<", 0.1)) == (
        "min by (model, version) (modelyard_monitor_drift_score) < 0.1")
    assert expression(AlertRule("A", "drift_score", "!=", 0.0, model="m.1")) == (
        'count by (model, version) (modelyard_monitor_drift_score{model="m.1"} != 0.0) > 0')
    assert expression(AlertRule("A", "drift_score", ">", 1, feature='say "hi"')) == (
        'modelyard_monitor_drift_score{feature="say \\"hi\\""} > 1.0')
    error_rate = expression(AlertRule("A", "error_rate", ">", 0.1, model="churn"),
                            rate_window="10m")
    assert 'rate(modelyard_requests_total{outcome!="ok",model="churn"}[10m])' in error_rate
    assert to_prometheus([])["groups"] == [{"name": "modelyard", "rules": []}]


def test_a_rule_prometheus_would_reject_never_gets_exported() -> None:
    with pytest.raises(InvalidInput, match="a Prometheus alert name"):
        AlertRule("p99 latency", "latency_p99_s", ">", 0.5)
    with pytest.raises(InvalidInput, match="label name '__name__' is not allowed"):
        AlertRule("Slow", "latency_p99_s", ">", 0.5, labels={"__name__": "x"})
