"""Alert rules and states: pending → firing → resolved, one notification each, across restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelyard.api.workspace import open_database
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.live.alert_rules import (
    AlertRule,
    RuleStore,
    default_rules,
    load_rules,
    parse_duration,
)
from modelyard.live.alerts import AlertEvaluator, list_alerts
from modelyard.settings import StoreSettings
from modelyard.store import Database
from modelyard.store.tables import alert_notifications, alert_rules

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
LABELS = {"model": "churn", "version": "3"}


class FakeClock:
    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return (self.at - T0).total_seconds()


def database(url: str) -> Database:
    return open_database(url, StoreSettings())


def notifications(db: Database) -> list[tuple[str, str, str, str]]:
    table = alert_notifications
    query = select(table.c.rule, table.c.subject, table.c.status, table.c.notifier).order_by(
        table.c.id)
    with db.read() as conn:
        return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def evaluator(db: Database, *rules: AlertRule, clock: FakeClock | None = None,
              defaults: bool = False) -> AlertEvaluator:
    store = RuleStore(db, defaults=defaults)
    for rule in rules:
        store.add(rule)
    return AlertEvaluator(db, store, ["log", "webhook:test"], clock or FakeClock())


SLOW = AlertRule("LatencyP99High", "latency_p99_s", ">", 0.5, for_s=120, severity="critical",
                 labels={"team": "growth"})


# -- rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "message"), [
    ({"metric": "nope"}, "unknown metric 'nope'"),
    ({"op": "=>"}, "op must be one of > >= < <= == !="),
    ({"for": "5 minutes"}, "for must be a duration such as 30s, 5m or 1h, not '5 minutes'"),
    ({"for": "-5"}, "for must be a duration of zero or more"),
    ({"threshold": "high"}, "threshold must be a number, not 'high'"),
    ({"threshold": float("nan")}, "threshold must be a finite number"),
    ({"severity": "page"}, "severity must be one of info, warning, critical"),
    ({"name": "latency-high"}, "alert rule name 'latency-high' is not allowed"),
    ({"labels": {"model": "x"}}, "label 'model' is set by modelyard"),
    ({"labels": {"9x": "y"}}, "label name '9x' is not allowed"),
    ({"feature": "age"}, "feature applies only to drift_score, not latency_p99_s"),
    ({"model": "bad name"}, "model name 'bad name' is not allowed"),
    ({"colour": "red"}, "unknown field 'colour'"),
])
def test_a_bad_rule_is_one_clear_line(spec: dict[str, Any], message: str) -> None:
    base = {"name": "Slow", "metric": "latency_p99_s", "op": ">", "threshold": 0.5}
    with pytest.raises(InvalidInput) as caught:
        AlertRule.from_dict({**base, **spec})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_rule_round_trips_through_its_spec() -> None:
    rule = AlertRule("Drift", "drift_score", ">=", 0.3, for_s=90, severity="info",
                     labels={"team": "a"}, model="churn", feature="age", description="why")
    assert AlertRule.from_dict(rule.to_dict()) == rule
    assert rule.to_dict()["for"] == "1m30s"
    assert parse_duration("1h") == 3600.0


def test_defaults_cover_drift_accuracy_latency_and_errors() -> None:
    rules = {rule.metric: rule for rule in default_rules()}
    assert set(rules) == {"dataset_drift", "accuracy_drop", "latency_p99_s", "error_rate"}
    assert rules["accuracy_drop"].severity == "critical"
    assert rules["latency_p99_s"].for_s == 300


def test_rules_load_from_yaml_and_a_bad_file_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(
        "rules:\n"
        "  - name: ChurnDrift\n    metric: drift_share\n    op: '>'\n    threshold: 0.3\n"
        "    for: 10m\n    severity: critical\n    model: churn\n    labels: {team: growth}\n"
        "  - {name: LatencyP99High, disabled: true}\n"
    )
    found = load_rules(path)
    [rule] = found.rules
    assert (rule.name, rule.for_s, rule.model, rule.labels) == (
        "ChurnDrift", 600.0, "churn", {"team": "growth"})
    assert found.disabled == {"LatencyP99High"}

    for text, message in [
        ("rules: [\n", "are not valid YAML"),
        ("rules:\n  - {name: A, metric: drift, op: '>', threshold: 1}\n", "unknown metric"),
        ("rules:\n  - {name: A, metric: rows, op: '~', threshold: 1}\n", "op must be one of"),
        ("rules:\n  - {name: A, metric: rows, op: '<', threshold: 1, for: soon}\n",
         "for must be a duration"),
        ("rules:\n  - {name: A, metric: rows, op: '<'}\n", "missing threshold"),
        ("alerts: []\n", "unknown key 'alerts'"),
        ("rules:\n  - {name: A, metric: rows, op: '<', threshold: 1}\n"
         "  - {name: A, metric: rows, op: '>', threshold: 9}\n", "appears twice"),
    ]:
        path.write_text(text)
        with pytest.raises(InvalidInput) as caught:
            load_rules(path)
        assert message in str(caught.value), text
        assert str(path) in str(caught.value)
        assert "\n" not in str(caught.value)
    with pytest.raises(InvalidInput, match="cannot read alert rules"):
        load_rules(tmp_path / "missing.yaml")


def test_stored_rules_override_file_rules_override_defaults(
    database_url: str, tmp_path: Path
) -> None:
    db = database(database_url)
    path = tmp_path / "alerts.yaml"
    path.write_text("rules:\n  - {name: ErrorRateHigh, metric: error_rate, op: '>', "
                    "threshold: 0.2}\n  - {name: DatasetDrift, disabled: true}\n")
    store = RuleStore(db, path)
    sources = {entry.rule.name: entry.source for entry in store.entries()}
    assert sources == {"AccuracyDrop": "default", "LatencyP99High": "default",
                       "ErrorRateHigh": "file"}

    assert store.add(AlertRule("ErrorRateHigh", "error_rate", ">", 0.01)) == "file"
    assert {e.rule.name: e.rule.threshold for e in store.entries()}["ErrorRateHigh"] == 0.01
    with pytest.raises(Conflict, match="exists"):
        store.add(AlertRule("ErrorRateHigh", "error_rate", ">", 0.02))
    assert store.add(AlertRule("ErrorRateHigh", "error_rate", ">", 0.02), replace=True) == "store"
    assert "the file rule ErrorRateHigh applies again" in store.remove("ErrorRateHigh")
    assert store.remove("AccuracyDrop") == "disabled the default alert rule AccuracyDrop"
    assert "AccuracyDrop" not in {e.rule.name for e in store.entries()}
    with pytest.raises(NotFound):
        store.remove("AccuracyDrop")
    with pytest.raises(NotFound, match="no alert rule named 'Nope'"):
        store.remove("Nope")
    store.add(AlertRule("AccuracyDrop", "accuracy_drop", ">", 0.1))  # brings it back
    store.add(AlertRule("ChurnOnly", "rows", "<", 10, model="churn"))
    assert "ChurnOnly" in {r.name for r in store.rules("churn")}
    assert "ChurnOnly" not in {r.name for r in store.rules("other")}


# -- states ------------------------------------------------------------------------------------


def test_pending_then_firing_after_for_then_resolved_with_one_notification_each(
    database_url: str,
) -> None:
    db = database(database_url)
    clock = FakeClock()
    alerts = evaluator(db, SLOW, clock=clock)

    def window(p99: float) -> list[tuple[str | None, str | None]]:
        changes = alerts.evaluate("churn:3", LABELS, {"latency_p99_s": p99})
        clock.at += WINDOW
        return [(c.before, c.after) for c in changes]

    assert window(0.2) == []
    assert list_alerts(db) == []
    assert window(0.9) == [(None, "pending")]
    assert window(0.8) == []  # held 60 s of 120
    assert notifications(db) == []
    assert window(0.7) == [("pending", "firing")]
    for _ in range(10):
        assert window(0.95) == []
    [alert] = list_alerts(db, "firing")
    assert alert["value"] == 0.95
    assert alert["firing_since"] == "2026-11-24T12:03:00.000000Z"
    assert alert["labels"] == {"alertname": "LatencyP99High", "severity": "critical",
                               "team": "growth", "model": "churn", "version": "3"}
    assert notifications(db) == [("LatencyP99High", "churn:3", "firing", "log"),
                                 ("LatencyP99High", "churn:3", "firing", "webhook:test")]
    assert window(0.1) == [("firing", "resolved")]
    for _ in range(5):
        assert window(0.1) == []
    assert [n[2] for n in notifications(db)] == ["firing", "firing", "resolved", "resolved"]
    [alert] = list_alerts(db, "resolved")
    assert alert["resolved_at"] == "2026-11-24T12:14:00.000000Z"

    with db.read() as conn:
        payload = conn.execute(select(alert_notifications.c.payload).where(
            alert_notifications.c.status == "resolved")).scalars().first()
    assert payload["startsAt"] == "2026-11-24T12:03:00.000000Z"
    assert payload["endsAt"] == "2026-11-24T12:14:00.000000Z"
    assert payload["annotations"]["summary"].startswith("LatencyP99High on churn:3")


def test_states_survive_a_restart_without_a_second_notification(database_url: str) -> None:
    db = database(database_url)
    clock = FakeClock()
    first = evaluator(db, SLOW, clock=clock)
    for _ in range(3):
        first.evaluate("churn:3", LABELS, {"latency_p99_s": 0.9})
        clock.at += WINDOW
    assert [n[2] for n in notifications(db)] == ["firing", "firing"]

    again = Database(database_url)  # a new process: its own engine, nothing in memory
    try:
        second = AlertEvaluator(again, RuleStore(again, defaults=False),
                                ["log", "webhook:test"], clock)
        for _ in range(4):
            assert second.evaluate("churn:3", LABELS, {"latency_p99_s": 0.9}) == []
            clock.at += WINDOW
        [change] = second.evaluate("churn:3", LABELS, {"latency_p99_s": 0.1})
        assert (change.before, change.after) == ("firing", "resolved")
    finally:
        again.dispose()
    assert [n[2] for n in notifications(db)] == ["firing", "firing", "resolved", "resolved"]


def test_a_pending_alert_that_clears_leaves_no_trace(database_url: str) -> None:
    db = database(database_url)
    clock = FakeClock()
    alerts = evaluator(db, SLOW, clock=clock)
    alerts.evaluate("churn:3", LABELS, {"latency_p99_s": 0.9})
    clock.at += WINDOW
    [change] = alerts.evaluate("churn:3", LABELS, {"latency_p99_s": 0.1})
    assert (change.before, change.after) == ("pending", None)
    assert list_alerts(db) == []
    assert notifications(db) == []


def test_a_zero_for_fires_at_once_and_missing_data_changes_nothing(database_url: str) -> None:
    db = database(database_url)
    clock = FakeClock()
    alerts = evaluator(db, clock=clock, defaults=True)
    drifted = {"dataset_drift": 1.0, "error_rate": 0.0, "latency_p99_s": 0.01}
    changes = alerts.evaluate("churn:3", LABELS, drifted)
    assert [(c.rule, c.after) for c in changes] == [("DatasetDrift", "firing")]
    clock.at += WINDOW
    # no accuracy (no labels yet) and no drift metric in this window: nothing changes
    assert alerts.evaluate("churn:3", LABELS, {"error_rate": 0.0}) == []
    assert [a["rule"] for a in list_alerts(db, "firing")] == ["DatasetDrift"]
    clock.at += WINDOW
    [change] = alerts.evaluate("churn:3", LABELS, {**drifted, "dataset_drift": 0.0})
    assert (change.rule, change.after) == ("DatasetDrift", "resolved")
    assert [n[2] for n in notifications(db)] == ["firing", "firing", "resolved", "resolved"]


def test_a_per_feature_rule_names_the_drifted_features(database_url: str) -> None:
    db = database(database_url)
    rule = AlertRule("FeatureDrift", "drift_score", ">", 0.2)
    alerts = evaluator(db, rule, AlertRule("AgeDrift", "drift_score", ">", 0.2, feature="age"))
    scores = {"drift_score": {"age": 0.05, "income": 0.4, "tenure": 0.3}}
    changes = alerts.evaluate("churn:3", LABELS, scores)
    assert [(c.rule, c.after) for c in changes] == [("FeatureDrift", "firing")]
    with db.read() as conn:
        payload = conn.execute(select(alert_notifications.c.payload)).scalars().first()
    assert payload["value"] == 0.4
    assert "features: income, tenure" in payload["annotations"]["description"]


def test_rules_apply_to_their_model_and_a_removed_rule_resolves(database_url: str) -> None:
    db = database(database_url)
    clock = FakeClock()
    alerts = evaluator(db, AlertRule("FewRows", "rows", "<", 100, model="churn"), clock=clock)
    assert alerts.evaluate("fraud:1", {"model": "fraud", "version": "1"}, {"rows": 5}) == []
    [change] = alerts.evaluate("churn:3", LABELS, {"rows": 5})
    assert change.after == "firing"
    alerts.rules.remove("FewRows")
    clock.at += WINDOW
    [change] = alerts.evaluate("churn:3", LABELS, {"rows": 5})
    assert (change.before, change.after) == ("firing", None)
    assert [n[2] for n in notifications(db)] == ["firing", "firing", "resolved", "resolved"]
    assert list_alerts(db) == []


def test_a_window_judged_late_never_overrides_a_newer_one(database_url: str) -> None:
    db = database(database_url)
    alerts = evaluator(db, AlertRule("FewRows", "rows", "<", 100))
    alerts.evaluate("churn:3", LABELS, {"rows": 5}, at=T0 + 2 * WINDOW)
    assert alerts.evaluate("churn:3", LABELS, {"rows": 500}, at=T0 + WINDOW) == []
    assert [a["state"] for a in list_alerts(db)] == ["firing"]


def test_firing_payloads_list_what_fires_now(database_url: str) -> None:
    db = database(database_url)
    alerts = evaluator(db, AlertRule("FewRows", "rows", "<", 100, severity="info"))
    alerts.evaluate("churn:3", LABELS, {"rows": 5})
    alerts.evaluate("churn:4", {"model": "churn", "version": "4"}, {"rows": 500})
    [payload] = alerts.firing_payloads()
    assert (payload["status"], payload["subject"], payload["severity"]) == (
        "firing", "churn:3", "info")
    assert payload["endsAt"] is None
    with pytest.raises(InvalidInput, match="alert state must be one of"):
        list_alerts(db, "burning")


def test_a_stored_rule_this_version_cannot_read_is_skipped_not_fatal(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = database(database_url)
    spec = {"name": "Future", "metric": "fairness_gap", "op": ">", "threshold": 0.1}
    with db.write() as conn:
        conn.execute(alert_rules.insert().values(name="Future", spec=spec, created_at="x",
                                                 updated_at="x"))
    alerts = evaluator(db, SLOW)
    alerts.evaluate("churn:3", LABELS, {"latency_p99_s": 0.9})
    assert [a["rule"] for a in list_alerts(db)] == ["LatencyP99High"]
    assert "skipping the stored rule Future: alert rule 'Future': unknown metric" in caplog.text
