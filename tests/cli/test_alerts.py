"""``modelyard alerts``: rules in force, adding and removing them, export, alert states."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.api.workspace import open_database
from modelyard.cli import app
from modelyard.live.alert_rules import RuleStore
from modelyard.live.alerts import AlertEvaluator
from modelyard.settings import Settings


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def alerts(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--home", str(home), "alerts", *args])
    return result.exit_code, result.stdout, result.stderr


def test_add_list_export_and_remove_rules(home: Path, tmp_path: Path) -> None:
    code, out, _ = alerts(home, "rules")
    assert code == 0
    for name in ("DatasetDrift", "AccuracyDrop", "LatencyP99High", "ErrorRateHigh"):
        assert name in out

    code, out, err = alerts(home, "add", "--name", "ChurnDrift", "--metric", "drift_share",
                            "--op", ">", "--threshold", "0.3", "--for", "10m", "--severity",
                            "critical", "--model", "churn", "--label", "team=growth")
    assert code == 0, err
    assert out.strip() == ("added alert rule ChurnDrift: drift_share > 0.3 for 10m, critical")
    code, out, _ = alerts(home, "add", "--name", "LatencyP99High", "--metric",
                          "latency_p99_s", "--op", "gt", "--threshold", "1")
    assert code == 0
    assert "(overrides the default rule)" in out

    code, out, _ = alerts(home, "rules", "--json")
    assert code == 0
    rules = {rule["name"]: rule for rule in json.loads(out)}
    assert rules["ChurnDrift"] == {
        "name": "ChurnDrift", "metric": "drift_share", "op": ">", "threshold": 0.3,
        "for": "10m", "severity": "critical", "labels": {"team": "growth"}, "model": "churn",
        "feature": None, "description": "", "source": "store"}
    assert (rules["LatencyP99High"]["threshold"], rules["LatencyP99High"]["source"]) == (
        1.0, "store")
    assert rules["DatasetDrift"]["source"] == "default"

    exported = tmp_path / "modelyard.rules.yml"
    code, out, err = alerts(home, "rules", "--export", "prometheus", "-o", str(exported))
    assert code == 0, err
    assert f"wrote 5 rules to {exported}" in out
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run scripts/services.sh")
    checked = subprocess.run([promtool, "check", "rules", str(exported)], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    code, out, _ = alerts(home, "rules", "--export", "prometheus")
    assert code == 0
    assert out == exported.read_text()

    code, out, _ = alerts(home, "remove", "LatencyP99High")
    assert code == 0
    assert out.strip() == ("removed alert rule LatencyP99High; "
                           "the default rule LatencyP99High applies again")
    code, out, _ = alerts(home, "remove", "DatasetDrift")
    assert out.strip() == "disabled the default alert rule DatasetDrift"
    code, out, _ = alerts(home, "rules", "--json")
    assert {rule["name"] for rule in json.loads(out)} == {
        "AccuracyDrop", "LatencyP99High", "ErrorRateHigh", "ChurnDrift"}


@pytest.mark.parametrize(("args", "message"), [
    (["--metric", "drift", "--op", ">", "--threshold", "1"], "unknown metric 'drift'"),
    (["--metric", "rows", "--op", "=>", "--threshold", "1"], "op must be one of"),
    (["--metric", "rows", "--op", "<", "--threshold", "1", "--for", "5 min"],
     "for must be a duration such as 30s, 5m or 1h, not '5 min'"),
    (["--metric", "rows", "--op", "<", "--threshold", "many"], "threshold must be a number"),
    (["--metric", "rows", "--op", "<", "--threshold", "1", "--label", "team"],
     "--label 'team' is not of the form key=value"),
])
def test_a_bad_rule_is_one_error_line(home: Path, args: list[str], message: str) -> None:
    code, out, err = alerts(home, "add", "--name", "Bad", *args)
    assert code == 1
    assert err.startswith("error: ")
    assert message in err
    assert err.count("\n") == 1
    code, out, _ = alerts(home, "rules", "--json")
    assert "Bad" not in {rule["name"] for rule in json.loads(out)}


def test_other_mistakes_are_one_error_line(home: Path) -> None:
    for args, message in [
        (["remove", "Nope"], "no alert rule named 'Nope'"),
        (["rules", "--export", "yaml"], "--export must be prometheus"),
        (["rules", "-o", "x.yml"], "--output goes with --export prometheus"),
        (["list", "--state", "burning"], "alert state must be one of firing, pending"),
    ]:
        code, _, err = alerts(home, *args)
        assert code == 1, args
        assert err.startswith("error: "), err
        assert message in err, err
        assert err.count("\n") == 1
    alerts(home, "add", "--name", "Few", "--metric", "rows", "--op", "<", "--threshold", "1")
    code, _, err = alerts(home, "add", "--name", "Few", "--metric", "rows", "--op", "<",
                          "--threshold", "2")
    assert (code, err.strip()) == (1, "error: alert rule 'Few' exists; remove it first")


def test_list_shows_alert_states(home: Path) -> None:
    code, out, _ = alerts(home, "list")
    assert (code, out.strip()) == (0, "no alerts")
    settings = Settings(home=home)
    database = open_database(settings.resolved_database_url, settings.store)
    evaluator = AlertEvaluator(database, RuleStore(database), ["log"])
    evaluator.evaluate("churn:3", {"model": "churn", "version": "3"},
                       {"dataset_drift": 1.0, "latency_p99_s": 0.9})

    code, out, _ = alerts(home, "list")
    assert code == 0
    assert "DatasetDrift" in out
    assert "firing" in out
    assert "LatencyP99High" in out
    assert "pending" in out
    code, out, _ = alerts(home, "list", "--state", "firing", "--json")
    [alert] = json.loads(out)
    assert (alert["rule"], alert["subject"], alert["state"], alert["value"]) == (
        "DatasetDrift", "churn:3", "firing", 1.0)
    assert alert["labels"]["severity"] == "warning"
    code, out, _ = alerts(home, "list", "--state", "resolved")
    assert out.strip() == "no resolved alerts"


def test_the_help_names_every_metric() -> None:
    from modelyard.cli.alerts import METRICS_HELP
    from modelyard.live.alert_rules import METRICS

    assert METRICS_HELP.split(", ") == list(METRICS)
