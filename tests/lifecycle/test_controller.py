"""The controller's decisions, step by step, on a real store with the metrics it reads and the
clock injected: canary steps and promotion, rollback on a failed check, waiting then pausing,
blue-green's switch, an A/B winner, a shadow's recorded analysis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier

import modelyard
from modelyard.lifecycle.controller import RolloutController
from modelyard.lifecycle.signals import StepMetrics
from modelyard.rollout.state import RolloutStore
from modelyard.settings import Settings

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
CHECKS = {"checks": [
    {"name": "errors", "metric": "error_rate", "comparison": "<=", "threshold": 0.01,
     "relative": True, "min_samples": 100},
    {"name": "accuracy", "metric": "accuracy_realised", "comparison": ">=", "threshold": -0.02,
     "relative": True, "min_samples": 50},
]}


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


class FakeSignals:
    """Metrics per version as the test sets them; records what was asked."""

    def __init__(self) -> None:
        self.by_version: dict[int, StepMetrics] = {}
        self.asked: list[tuple[int, datetime, datetime]] = []

    def set(self, version: int, **values: tuple[float, int]) -> None:
        metrics = StepMetrics()
        for name, (value, samples) in values.items():
            metrics.values[name] = value
            metrics.samples[name] = samples
        self.by_version[version] = metrics

    def step_metrics(self, model: str, version: int, since: datetime, until: datetime,
                     champion: int | None = None) -> StepMetrics:
        self.asked.append((version, since, until))
        return self.by_version.get(version, StepMetrics())


@pytest.fixture
def parts(settings: Settings) -> tuple[RolloutStore, FakeSignals, Clock, RolloutController]:
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    for _ in range(2):
        modelyard.register(DummyClassifier().fit(X, [0, 1, 0, 1]), "churn", reference=X,
                           labels=[0, 1, 0, 1], settings=settings)
    registry = modelyard.open_registry(settings)
    registry.set_alias("churn", "champion", 1)
    clock, signals = Clock(), FakeSignals()
    store = RolloutStore(registry, now=clock)
    controller = RolloutController(store, signals, now=clock, warmup_s=2, max_wait_steps=3)
    return store, signals, clock, controller


def test_a_canary_steps_on_passing_checks_and_promotes_after_the_last(parts) -> None:  # type: ignore[no-untyped-def]
    store, signals, clock, controller = parts
    rollout = store.start("churn", 2, steps=[10, 100], step_duration_s=60, analysis=CHECKS)
    signals.set(1, error_rate=(0.010, 900), accuracy_realised=(0.90, 300))
    signals.set(2, error_rate=(0.012, 100), accuracy_realised=(0.91, 60))
    clock.at += timedelta(seconds=59)
    assert controller.run_once() == []  # the step is not over
    clock.at += timedelta(seconds=2)
    [stepped] = controller.run_once()
    assert (stepped.step, stepped.weight) == (1, 100.0)
    since = [asked for asked in signals.asked if asked[0] == 2][-1][1]
    assert since == T0  # the candidate's metrics over its step, not before
    clock.at += timedelta(seconds=61)
    [done] = controller.run_once()
    assert done.state == "promoted"
    assert store.registry.get_model("churn").aliases["champion"] == 2
    analysis = next(e for e in store.events(rollout.id) if e.kind == "step").detail
    assert analysis["decision"] == "continue"
    assert {v["check"]: v["outcome"] for v in analysis["verdicts"]} == {
        "errors": "pass", "accuracy": "pass"}


def test_a_failing_check_rolls_back_at_once_and_says_why(parts) -> None:  # type: ignore[no-untyped-def]
    store, signals, clock, controller = parts
    store.start("churn", 2, steps=[10, 100], step_duration_s=60, analysis=CHECKS)
    signals.set(1, error_rate=(0.01, 900), accuracy_realised=(0.90, 300))
    signals.set(2, error_rate=(0.08, 120), accuracy_realised=(0.91, 60))
    clock.at += timedelta(seconds=61)
    [back] = controller.run_once()
    assert (back.state, back.weight) == ("rolled_back", 0.0)
    assert "error_rate minus the champion's is 0.07" in (back.reason or "")
    assert store.registry.get_model("churn").aliases["champion"] == 1


def test_too_little_data_waits_then_pauses_for_a_person(parts) -> None:  # type: ignore[no-untyped-def]
    store, signals, clock, controller = parts
    rollout = store.start("churn", 2, steps=[10, 100], step_duration_s=60, analysis=CHECKS)
    signals.set(1, error_rate=(0.01, 900), accuracy_realised=(0.90, 300))
    signals.set(2, error_rate=(0.01, 40), accuracy_realised=(0.91, 10))  # too few samples
    for _ in range(2):  # 61 s and 122 s into the step: wait
        clock.at += timedelta(seconds=61)
        assert controller.run_once() == []
    waited = [e for e in store.events(rollout.id) if e.kind == "analysis"]
    assert len(waited) == 1  # one event while the reasons stay the same, not one per tick
    clock.at += timedelta(seconds=61)  # three step durations: a person should look
    [paused] = controller.run_once()
    assert paused.state == "paused"
    assert "only 40 of the 100 samples" in (paused.reason or "")


def test_an_estimated_accuracy_that_passes_stands_in_for_labels_not_yet_in(parts) -> None:  # type: ignore[no-untyped-def]
    store, signals, clock, controller = parts
    store.start("churn", 2, steps=[10, 100], step_duration_s=60)  # the default checks
    healthy = {"error_rate": (0.0, 500), "latency_p99_s": (0.010, 500),
               "prediction_drift": (0.0, 500), "accuracy_estimated": (0.9, 500)}
    signals.set(1, **healthy)
    signals.set(2, **healthy)  # no accuracy_realised: no label has arrived
    clock.at += timedelta(seconds=61)
    [stepped] = controller.run_once()
    assert stepped.weight == 100.0


def test_blue_green_switches_once_warm_and_a_shadow_only_records(parts) -> None:  # type: ignore[no-untyped-def]
    store, signals, clock, controller = parts
    warm = {"ready": False}
    controller.is_ready = lambda model, version: warm["ready"]
    green = store.start("churn", 2, strategy="bluegreen", step_duration_s=60)
    clock.at += timedelta(seconds=5)
    assert controller.run_once() == []  # not warm yet: the baseline keeps every request
    warm["ready"] = True
    [switched] = controller.run_once()
    assert switched.weight == 100.0
    store.abort("churn")

    shadow = store.start("churn", 2, strategy="shadow", step_duration_s=60)
    signals.set(1, error_rate=(0.0, 500))
    signals.set(2, error_rate=(0.5, 500))  # a failing shadow hurts nobody: only recorded
    clock.at += timedelta(seconds=61)
    assert controller.run_once() == []
    assert store.get(shadow.id).state == "running"
    recorded = [e.detail for e in store.events(shadow.id) if e.kind == "analysis"]
    assert recorded[0]["decision"] == "rollback"
    assert store.get(green.id).state == "aborted"


def test_an_ab_test_promotes_a_clear_winner_and_stops_at_its_time_limit(parts) -> None:  # type: ignore[no-untyped-def]
    store, signals, clock, controller = parts
    store.start("churn", 2, strategy="ab", steps=[50], step_duration_s=3600)
    signals.set(1, error_rate=(0.0, 4000), accuracy_realised=(0.70, 3000),
                labels_correct=(2100, 0))
    signals.set(2, error_rate=(0.0, 4000), accuracy_realised=(0.80, 3000),
                labels_correct=(2400, 0))
    clock.at += timedelta(seconds=30)
    [won] = controller.run_once()
    assert won.state == "promoted"

    store.start("churn", 1, strategy="ab", steps=[50], step_duration_s=600)  # 2 is champion now
    signals.set(1, error_rate=(0.0, 400), accuracy_realised=(0.80, 100), labels_correct=(80, 0))
    signals.set(2, error_rate=(0.0, 400), accuracy_realised=(0.80, 100), labels_correct=(80, 0))
    clock.at += timedelta(seconds=60)
    assert controller.run_once() == []  # no difference yet: keep testing
    reads = len(signals.asked)
    clock.at += timedelta(seconds=10)
    assert controller.run_once() == []
    assert len(signals.asked) == reads  # the next look waits for ab_every_s (30 s)
    clock.at += timedelta(seconds=600)
    [ended] = controller.run_once()
    assert (ended.state, ended.reason) == ("aborted",
                                           "no winner within the A/B test's time limit")
