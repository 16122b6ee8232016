"""Triggers: a firing alert on the champion or a schedule slot starts one retrain; nothing starts
one twice, during a rollout, or inside the cool-down; a run its process abandoned is ended."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sklearn.linear_model import LogisticRegression

import modelyard
from modelyard.api.predictor import load
from modelyard.api.workspace import open_registry
from modelyard.errors import InvalidInput
from modelyard.lifecycle.retrain import Retrainer
from modelyard.lifecycle.runs import Trigger
from modelyard.lifecycle.triggers import Triggers, last_slot
from modelyard.live.alert_rules import RuleStore
from modelyard.live.alerts import AlertEvaluator
from modelyard.rollout.state import RolloutStore
from modelyard.settings import Settings

Configure = Callable[..., Settings]


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def watcher(settings: Settings, clock: Clock) -> Triggers:
    return Triggers(Retrainer(settings, now=clock), now=clock)


def fire(settings: Settings, rule_value: dict[str, float], at: datetime,
         subject: str = "churn:1") -> None:
    """Judge one window of ``subject`` with the default alert rules."""
    db = open_registry(settings).db
    AlertEvaluator(db, RuleStore(db), []).evaluate(
        subject, {"model": "churn", "version": subject.split(":")[1]}, rule_value, at)


def test_a_firing_drift_alert_starts_one_run(configure: Configure) -> None:
    settings = configure(entry_point="trainer:crash", triggers={"cooldown_s": 0})
    clock = Clock(datetime.now(UTC))
    triggers = watcher(settings, clock)
    assert triggers.run_once() == []  # nothing fires yet

    fire(settings, {"dataset_drift": 1}, clock.at)
    started = triggers.run_once()
    assert len(started) == 1
    run = triggers.retrainer.runs.get(started[0])
    assert run.trigger == "alert"
    assert "DatasetDrift" in run.reason
    assert triggers.run_once() == []  # the same firing never starts a second run

    clock.at += timedelta(minutes=5)
    fire(settings, {"dataset_drift": 0}, clock.at)  # resolved …
    clock.at += timedelta(minutes=5)
    fire(settings, {"dataset_drift": 1}, clock.at)  # … and firing again: a new firing
    assert len(triggers.run_once()) == 1


def test_a_trigger_waits_for_the_labels_its_gate_needs(configure: Configure) -> None:
    clock = Clock(datetime.now(UTC))
    short = watcher(configure(entry_point="trainer:crash", gate={"min_rows": 5000}), clock)
    fire(short.retrainer.settings, {"dataset_drift": 1}, clock.at)
    assert short.run_once() == []  # 180 held-out rows of 600 labelled: the gate needs 5000
    assert short.retrainer.runs.find("churn") == []
    enough = watcher(configure(entry_point="trainer:crash", gate={"min_rows": 150}), clock)
    assert len(enough.run_once()) == 1  # the same firing, not spent while it waited


def test_only_the_listed_alerts_on_the_champion_trigger(configure: Configure) -> None:
    settings = configure(entry_point="trainer:crash", triggers={"alerts": ["ErrorRateHigh"]})
    clock = Clock(datetime.now(UTC))
    triggers = watcher(settings, clock)
    fire(settings, {"dataset_drift": 1}, clock.at)  # not listed
    fire(settings, {"error_rate": 0.5}, clock.at, subject="churn:7")  # not the champion
    assert triggers.run_once() == []


def test_the_cool_down_holds_triggers_after_a_run(configure: Configure) -> None:
    settings = configure(entry_point="trainer:crash", triggers={"cooldown_s": 600})
    clock = Clock(datetime.now(UTC))
    triggers = watcher(settings, clock)
    triggers.retrainer.run("churn")  # by hand; its training crashes
    fire(settings, {"dataset_drift": 1}, clock.at)
    assert triggers.run_once() == []
    clock.at += timedelta(seconds=601)
    assert len(triggers.run_once()) == 1


def test_a_schedule_starts_a_run_at_each_slot_after_the_watcher_started(
        configure: Configure) -> None:
    settings = configure(entry_point="trainer:crash",
                         triggers={"alerts": [], "schedule": "*/10 * * * *", "cooldown_s": 0})
    now = datetime.now(UTC)
    base = now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0)
    clock = Clock(base + timedelta(minutes=3))  # after the logged traffic, like real time
    triggers = watcher(settings, clock)
    assert triggers.run_once() == []  # the slot at base was before the start: not caught up
    clock.at = base + timedelta(minutes=9, seconds=59)
    assert triggers.run_once() == []
    clock.at = base + timedelta(minutes=10, seconds=20)
    started = triggers.run_once()
    assert len(started) == 1
    run = triggers.retrainer.runs.get(started[0])
    slot = base + timedelta(minutes=10)
    assert (run.trigger, run.trigger_key) == ("schedule", f"schedule:{slot.isoformat()}")
    clock.at = base + timedelta(minutes=15)
    assert triggers.run_once() == []
    clock.at = base + timedelta(minutes=31)  # the slot at +20 was missed: +30 runs
    assert len(triggers.run_once()) == 1


def test_no_trigger_starts_a_run_during_a_rollout(configure: Configure) -> None:
    settings = configure(entry_point="trainer:crash", triggers={"cooldown_s": 0})
    reference = load("churn", settings).reference()
    X = reference.drop(columns=["label"])
    modelyard.register(LogisticRegression(C=0.1).fit(X, reference["label"]), "churn",
                       reference=X, settings=settings)
    RolloutStore(open_registry(settings)).start("churn", 2)
    clock = Clock(datetime.now(UTC))
    triggers = watcher(settings, clock)
    fire(settings, {"dataset_drift": 1}, clock.at)
    assert triggers.run_once() == []
    RolloutStore(open_registry(settings)).abort("churn")
    assert len(triggers.run_once()) == 1


def test_a_run_its_process_abandoned_is_ended_and_no_longer_blocks(configure: Configure) -> None:
    settings = configure(entry_point="trainer:crash", timeout_s=60, triggers={"cooldown_s": 0})
    clock = Clock(datetime.now(UTC))
    triggers = watcher(settings, clock)
    runs = triggers.retrainer.runs
    stuck = runs.start("churn", Trigger("manual", "a process that died"), 1)
    fire(settings, {"dataset_drift": 1}, clock.at)
    assert triggers.run_once() == []  # still inside its time limit
    clock.at += timedelta(seconds=60 + 301)
    assert len(triggers.run_once()) == 1
    ended = runs.get(stuck.id)
    assert ended.state == "failed"
    assert "abandoned" in (ended.message or "")


def test_a_schedule_cron_cannot_read_is_refused_by_name(configure: Configure) -> None:
    settings = configure(triggers={"schedule": "every monday"})
    with pytest.raises(InvalidInput, match=r"lifecycle.models.churn: schedule 'every monday' "):
        Triggers(Retrainer(settings))
    assert last_slot("0 3 * * 1", datetime(2026, 11, 24, 12, tzinfo=UTC)) == datetime(
        2026, 11, 23, 3, tzinfo=UTC)  # Monday 03:00 before Tuesday noon
