"""The retraining loop in one process: logged predictions and their labels → a training run of
a real entry point → a registered candidate with provenance → the gate → a rollout; and each way
it can stop, with its reason on the run and the audit log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from modelyard.api.predictor import load
from modelyard.api.workspace import open_registry
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.lifecycle.retrain import Retrainer
from modelyard.lifecycle.runs import Trigger
from modelyard.registry import audit
from modelyard.rollout.state import RolloutStore
from modelyard.settings import Settings

Configure = Callable[..., Settings]


def test_a_retrain_trains_registers_gates_and_starts_the_rollout(configure: Configure) -> None:
    settings = configure(params={"C": 0.5})
    lines: list[str] = []
    run = Retrainer(settings, progress=lines.append).run("churn")

    assert run.state == "rollout_started", run.message
    assert (run.champion, run.candidate, run.stage) == (1, 2, "rollout")
    data = run.detail["data"]
    assert (data["labelled_rows"], data["holdout_rows"], data["training_rows"]) == (600, 180, 420)
    training_set = pd.read_parquet(data["training_set"])
    assert list(training_set.columns) == ["x0", "x1", "label", "source"]
    assert run.detail["training"]["status"] == "succeeded"
    gate = run.detail["gate"]
    assert gate["passed"] is True
    assert gate["metrics"]["accuracy"]["candidate"] > 0.9 > 0.7 > gate["metrics"]["accuracy"][
        "champion"]

    candidate = load("churn:2", settings)
    provenance = candidate.manifest.provenance
    assert provenance.parent == "churn:1"
    assert provenance.data_uri == Path(data["training_set"]).resolve().as_uri()
    assert provenance.data_sha256 == data["training_set_sha256"]
    assert provenance.parameters["C"] == 0.5
    # its monitor's reference is the newest production data, the world the gate judged it on
    assert candidate.manifest.reference is not None
    assert candidate.manifest.reference.rows == 180
    held = pd.read_parquet(data["holdout"])
    assert candidate.reference()[["x0", "x1"]].equals(held[["x0", "x1"]])
    assert candidate.info.tags["retrain_run"] == str(run.id)

    rollout = RolloutStore(open_registry(settings)).active("churn")
    assert rollout is not None
    assert (rollout.candidate, rollout.baseline, rollout.strategy, rollout.weight) == (
        2, 1, "canary", 10.0)
    assert rollout.id == run.rollout_id
    assert any("gate: passed" in line for line in lines)

    with open_registry(settings).db.read() as conn:
        actions = [entry.action for entry in audit.entries(conn, "churn")]
        assert audit.verify(conn).ok
    for action in ("retrain.trigger", "retrain.training", "version.register", "retrain.gate",
                   "rollout.start"):
        assert action in actions


def test_a_gate_with_an_impossible_bar_stops_the_run_with_its_reason(configure: Configure) -> None:
    settings = configure(gate={"min_rows": 100, "min_improvement": 0.9})
    run = Retrainer(settings).run("churn")
    assert run.state == "rejected"
    assert "accuracy" in (run.message or "")
    assert "required +0.900" in (run.message or "")
    assert RolloutStore(open_registry(settings)).active("churn") is None
    assert load("churn@champion", settings).version == 1
    with open_registry(settings).db.read() as conn:
        assert audit.verify(conn).ok


def test_a_constant_candidate_is_rejected(configure: Configure) -> None:
    run = Retrainer(configure(entry_point="trainer:constant")).run("churn")
    assert run.state == "rejected"
    assert run.candidate == 2  # registered, judged, not rolled out


@pytest.mark.parametrize(("entry", "timeout_s", "expected"), [
    # (a crash gets a limit it cannot reach: a loaded host once took longer than 2 s to start
    # the training process and import the trainer, and the crash showed as a timeout)
    ("trainer:crash", 120, "the feature store is unreachable"),
    ("trainer:slow", 2, "time limit"),
])
def test_a_training_run_that_crashes_or_overruns_fails_and_changes_nothing(
        configure: Configure, entry: str, timeout_s: int, expected: str) -> None:
    settings = configure(entry_point=entry, timeout_s=timeout_s)
    run = Retrainer(settings).run("churn")
    assert run.state == "failed"
    assert expected in run.message
    assert run.candidate is None
    assert [v.version for v in open_registry(settings).list_versions("churn")] == [1]
    assert RolloutStore(open_registry(settings)).active("churn") is None
    stderr = Path(run.detail["training"]["stderr"])
    assert stderr.exists()


def test_too_few_labels_for_the_gate_stop_before_training(configure: Configure) -> None:
    settings = configure(gate={"min_rows": 500})
    run = Retrainer(settings).run("churn")
    assert run.state == "failed"
    assert "the gate needs 500" in run.message
    assert "training" not in run.detail


def test_approval_waits_then_approve_starts_the_rollout_and_decline_ends_it(
        configure: Configure) -> None:
    settings = configure(approval=True)
    retrainer = Retrainer(settings)
    run = retrainer.run("churn")
    assert run.state == "awaiting_approval"
    assert "modelyard approve churn" in (run.message or "")
    assert RolloutStore(open_registry(settings)).active("churn") is None
    with pytest.raises(Conflict, match="approve or decline it first"):
        retrainer.run("churn")

    approved = retrainer.approve("churn")
    assert approved.state == "rollout_started"
    assert RolloutStore(open_registry(settings)).active("churn") is not None
    with pytest.raises(NotFound, match="awaiting approval"):
        retrainer.approve("churn")
    with pytest.raises(Conflict, match="rollout"):  # the rollout is under way
        retrainer.run("churn")

    RolloutStore(open_registry(settings)).abort("churn")
    again = retrainer.run("churn")
    declined = retrainer.decline("churn", again.id, "not before the holidays")
    assert declined.state == "declined"
    assert "not before the holidays" in (declined.message or "")
    assert RolloutStore(open_registry(settings)).active("churn") is None


def test_a_dry_run_says_what_would_happen_and_changes_nothing(configure: Configure) -> None:
    settings = configure()
    retrainer = Retrainer(settings)
    plan = retrainer.plan("churn")
    assert plan["would_run"] is True
    assert plan["data"]["labelled_rows"] == 600
    assert plan["data"]["holdout_rows"] == 180
    assert plan["training"]["entry_point"] == "trainer:train"
    assert retrainer.runs.find("churn") == []
    assert [v.version for v in open_registry(settings).list_versions("churn")] == [1]


def test_settings_that_cannot_work_are_refused_by_name(configure: Configure) -> None:
    with pytest.raises(InvalidInput, match=r"\[lifecycle.models.fraud\]"):
        Retrainer(configure()).run("fraud")
    with pytest.raises(InvalidInput, match="unknown gate metric 'acc'"):
        Retrainer(configure(gate={"metrics": ["acc"]})).run("churn")
    with pytest.raises(InvalidInput, match="unknown rollout strategy"):
        Retrainer(configure(rollout={"strategy": "yolo"})).run("churn")
    check = {"name": "v", "metric": "vibes", "comparison": "<", "threshold": 1}
    with pytest.raises(InvalidInput, match="unknown metric"):
        Retrainer(configure(rollout={"analysis": {"checks": [check]}})).run("churn")
    assert Retrainer(configure()).runs.find("churn") == []


def test_a_trigger_key_starts_one_run(configure: Configure) -> None:
    retrainer = Retrainer(configure(gate={"min_rows": 500}))
    trigger = Trigger("alert", "alert DatasetDrift firing", "alert:DatasetDrift:churn:1:t0")
    assert retrainer.run("churn", trigger).state == "failed"
    with pytest.raises(Conflict, match="already started"):
        retrainer.run("churn", trigger)


def test_a_second_retrain_adds_the_original_reference_not_the_last_holdout(
        configure: Configure) -> None:
    settings = configure(include_reference=True)
    first = Retrainer(settings).run("churn")
    assert first.state == "rollout_started", first.message
    assert first.detail["data"]["reference_from"] == "churn:1"
    assert first.detail["data"]["reference_rows"] == 800
    RolloutStore(open_registry(settings)).promote("churn")  # churn:2 is the champion now
    retrainer = Retrainer(settings)
    plan = retrainer.plan("churn")
    assert (plan["champion"], plan["data"]["reference_from"]) == (2, "churn:1")
    second = retrainer.run("churn")
    # churn:2's reference is the first run's holdout, rows the log holds already: adding it
    # would put the new holdout into the training set; churn:1's training data is added instead
    assert second.detail["data"]["reference_from"] == "churn:1"
    assert second.detail["data"]["reference_rows"] == 800
    assert second.detail["data"]["training_rows"] == 420 + 800
