"""Rollouts in the store: one active per model, guarded transitions, every change audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier

import modelyard
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.registry import audit
from modelyard.rollout.state import RolloutStore
from modelyard.settings import Settings


@pytest.fixture
def store(settings: Settings) -> RolloutStore:
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    y = [0, 1, 0, 1]
    for _ in range(3):
        modelyard.register(DummyClassifier().fit(X, y), "churn", reference=X, labels=y,
                           settings=settings)
    registry = modelyard.open_registry(settings)
    registry.set_alias("churn", "champion", 1)
    clock = iter(datetime(2027, 1, 1, tzinfo=UTC) + timedelta(seconds=i) for i in range(1000))
    return RolloutStore(registry, now=lambda: next(clock))


def test_a_canary_walks_its_steps_and_promotion_moves_the_champion(store: RolloutStore) -> None:
    rollout = store.start("churn", 2, steps=[10, 50, 100], step_duration_s=60)
    assert (rollout.baseline, rollout.weight, rollout.state) == (1, 10.0, "running")
    rollout = store.advance(rollout, {"decision": "continue"})
    assert (rollout.step, rollout.weight) == (1, 50.0)
    assert rollout.step_started_at > rollout.started_at
    rollout = store.advance(rollout)
    with pytest.raises(InvalidInput, match="last step"):
        store.advance(rollout)
    done = store.promote("churn")
    assert (done.state, done.weight) == ("promoted", 100.0)
    assert done.finished_at is not None
    assert store.registry.get_model("churn").aliases["champion"] == 2
    assert [e.kind for e in store.events(done.id)] == ["started", "step", "step", "promoted"]
    with store.database.read() as conn:
        actions = [e.action for e in audit.entries(conn, "churn")]
    assert actions[:5] == ["rollout.promote", "alias.set", "rollout.step", "rollout.step",
                           "rollout.start"]


def test_one_active_rollout_per_model_and_transitions_are_guarded(store: RolloutStore) -> None:
    store.start("churn", 2)
    with pytest.raises(Conflict, match="already has a running rollout"):
        store.start("churn", 3)
    paused = store.pause("churn", "weekend")
    assert (paused.state, paused.reason) == ("paused", "weekend")
    with pytest.raises(Conflict, match="is paused, not running"):
        store.advance(paused)
    store.resume("churn")
    back = store.rollback("churn", "looked wrong")
    assert (back.state, back.weight, back.reason) == ("rolled_back", 0.0, "looked wrong")
    with pytest.raises(NotFound, match="no running or paused rollout"):
        store.promote("churn")
    again = store.start("churn", 3, strategy="bluegreen")  # a finished one does not block
    assert (again.weight, again.steps) == (0.0, (0.0, 100.0))
    switched = store.switch(again)
    assert switched.weight == 100.0
    assert store.abort("churn").state == "aborted"
    assert store.latest("churn").id == again.id  # type: ignore[union-attr]
    assert [r.state for r in store.find("churn")] == ["aborted", "rolled_back"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidate": 9}, "has no version 9"),
        ({"candidate": 1}, "already the baseline"),
        ({"candidate": 2, "strategy": "yolo"}, "unknown strategy 'yolo'"),
        ({"candidate": 2, "steps": [50, 25, 100]}, "steps must increase"),
        ({"candidate": 2, "steps": [10, 50]}, "last step must be 100"),
        ({"candidate": 2, "strategy": "ab", "steps": [100]}, "one split"),
        ({"candidate": 2, "step_duration_s": 0}, "must be positive"),
        ({"candidate": 2, "baseline": 7}, "has no version 7"),
    ],
)
def test_bad_starts_say_what_is_wrong(store: RolloutStore, kwargs: dict[str, object],
                                      message: str) -> None:
    with pytest.raises((InvalidInput, NotFound), match=message):
        store.start("churn", **kwargs)  # type: ignore[arg-type]
    assert store.active("churn") is None


def test_the_cli_starts_watches_and_rolls_back(settings: Settings, store: RolloutStore,
                                               tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modelyard.cli import app

    del store  # registered the versions
    runner = CliRunner()
    base = ["--home", str(settings.home), "--database-url", settings.resolved_database_url,
            "--artifacts-uri", settings.resolved_artifacts_uri, "rollout"]
    checks = tmp_path / "analysis.yaml"
    checks.write_text("checks:\n  - {name: errors, metric: error_rate, comparison: '<=', "
                      "threshold: 0.01, relative: true, min_samples: 50}\n")
    started = runner.invoke(app, [*base, "start", "churn", "--candidate", "2", "--steps",
                                  "5,25,100", "--step-duration", "10m", "--analysis",
                                  str(checks)])
    assert started.exit_code == 0, started.stderr
    assert "canary of version 2 against 1, running, candidate weight 5 %" in started.stdout
    status = runner.invoke(app, [*base, "status", "churn"])
    assert status.exit_code == 0, status.stderr
    assert "version 1 95 %, version 2 5 %" in status.stdout
    shown = runner.invoke(app, [*base, "status", "churn", "--json"])
    assert '"step_duration_s": 600.0' in shown.stdout
    assert '"metric": "error_rate"' in shown.stdout
    rolled = runner.invoke(app, [*base, "rollback", "churn", "--reason", "bad"])
    assert rolled.exit_code == 0
    assert "rolled_back" in rolled.stdout
    for args, message in (
        (["promote", "churn"], "no running or paused rollout"),
        (["start", "churn", "--candidate", "2", "--step-duration", "10"], "needs a unit"),
        (["start", "churn", "--candidate", "2", "--steps", "5,50"], "last step must be 100"),
        (["status", "nobody"], "never had a rollout"),
    ):
        failed = runner.invoke(app, [*base, *args])
        assert failed.exit_code == 1, (args, failed.stdout)
        assert message in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr
