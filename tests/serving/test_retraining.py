"""The whole loop on a real server (two workers, PostgreSQL): shifted traffic raises a drift
alert, the alert triggers a retrain on the logged predictions and their labels, the candidate
passes the gate, its canary promotes it — and the audit log of it all verifies."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import modelyard
from modelyard.client import Client
from modelyard.lifecycle.runs import RetrainRuns
from modelyard.live.alerts import list_alerts
from modelyard.registry import audit
from modelyard.rollout.state import RolloutStore
from modelyard.settings import Settings

from .conftest import LiveServer

FEATURES = ["x0", "x1", "x2", "x3"]
PICKUP_S = 3.0  # the contract is 2 s (routers reload aliases every 2 s); CI gets slack
TRAINER = textwrap.dedent('''
    from sklearn.linear_model import LogisticRegression


    def train(data, output_dir):
        X = data.drop(columns=["label", "source"])
        return LogisticRegression().fit(X, data["label"])
''')
CONFIG = '''
[monitoring]
window_s = 2

[lifecycle]
poll_s = 0.5

[lifecycle.models.churn]
entry_point = "trainer:train"
workdir = "{workdir}"
include_reference = false
timeout_s = 120

[lifecycle.models.churn.gate]
min_rows = 100

[lifecycle.models.churn.rollout]
strategy = "canary"
steps = "50,100"
step_duration = "2s"

[[lifecycle.models.churn.rollout.analysis.checks]]
name = "errors"
metric = "error_rate"
comparison = "<="
threshold = 0.02
relative = true
min_samples = 20
'''


def world(rng: np.random.Generator, rows: int, shifted: bool) -> tuple[np.ndarray, np.ndarray]:
    """Before: x ~ N(0, 1), label x0 + x1 > 0. After: every feature moved by one standard
    deviation, and the label follows x0 - x1 > 0."""
    X = rng.normal(1.0 if shifted else 0.0, 1.0, size=(rows, len(FEATURES)))
    y = (X[:, 0] - X[:, 1] if shifted else X[:, 0] + X[:, 1]) > 0
    return X, y.astype(int)


@pytest.mark.slow
@pytest.mark.postgres
def test_drift_triggers_a_retrain_that_passes_the_gate_and_is_promoted(
    tmp_path: Path, postgres_url: str,
) -> None:
    rng = np.random.default_rng(11)
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=postgres_url)
    X, y = world(rng, 1000, shifted=False)
    reference = pd.DataFrame(X, columns=FEATURES)
    modelyard.register(LogisticRegression().fit(reference, y), "churn", reference=reference,
                       labels=pd.Series(y, name="label"), alias="champion", settings=settings)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "trainer.py").write_text(TRAINER)
    config = tmp_path / "modelyard.toml"
    config.write_text(CONFIG.format(workdir=workdir))
    env = {"MODELYARD_DATABASE_URL": postgres_url, "MODELYARD_CONFIG": str(config)}
    registry = modelyard.open_registry(settings)
    runs, rollouts = RetrainRuns(registry), RolloutStore(registry)

    server = LiveServer(home, env, workers=2)
    answered: list[str] = []
    try:
        with Client(server.url) as client:
            def send(phase: str, rows: np.ndarray, labels: np.ndarray, start: int) -> None:
                for i, row in enumerate(rows):
                    client.predict("churn", row[None, :], request_id=f"{phase}-{start + i}")
                    answered.append(client.last_version or "")
                client.feedback([{"id": f"{phase}-{start + i}", "label": int(label)}
                                 for i, label in enumerate(labels)])

            X, y = world(rng, 300, shifted=False)
            send("normal", X, y, 0)
            time.sleep(5)  # two windows: the monitor judges the normal traffic
            assert [a for a in list_alerts(registry.db, "firing")
                    if a["rule"] == "DatasetDrift"] == []
            assert runs.find("churn") == []

            deadline = time.monotonic() + 240
            sent = 0
            while True:  # the shifted world, with its labels, until the loop closes
                assert time.monotonic() < deadline, (
                    f"the loop did not close in 240 s: runs {[r.to_dict() for r in runs.find()]}"
                    f", rollout {rollouts.latest('churn')}")
                X, y = world(rng, 50, shifted=True)
                send("shifted", X, y, sent)
                sent += 50
                done = rollouts.latest("churn")
                if done is not None and not done.active:
                    break
                time.sleep(0.2)
            promoted_at = time.monotonic()  # every worker routes to the promoted version in 2 s
            while time.monotonic() - promoted_at < PICKUP_S:
                X, y = world(rng, 20, shifted=True)
                send("after", X, y, int((time.monotonic() - promoted_at) * 1e6))
                if set(answered[-20:]) == {"2"}:
                    break
    finally:
        code, _, err = server.stop()
    assert code == 0, err

    [run] = runs.find("churn")
    assert run.trigger == "alert"
    assert "firing on churn:1" in run.reason  # drift, or the accuracy drop that came with it
    fired = {a["rule"] for a in list_alerts(registry.db) if a["subject"] == "churn:1"}
    assert {"DatasetDrift", "AccuracyDrop"} <= fired
    assert run.state == "rollout_started", run.message
    assert run.detail["gate"]["passed"] is True
    assert run.detail["training"]["status"] == "succeeded"
    promoted = rollouts.latest("churn")
    assert promoted is not None
    assert (promoted.id, promoted.state, promoted.candidate) == (run.rollout_id, "promoted", 2)
    assert registry.get_model("churn").aliases["champion"] == 2
    candidate = modelyard.load("churn:2", settings)
    assert candidate.manifest.provenance.parent == "churn:1"
    assert candidate.info.tags["retrain_run"] == str(run.id)
    assert set(answered[-20:]) == {"2"}  # within 2 s every worker answers with the new version

    with registry.db.read() as conn:
        actions = {entry.action for entry in audit.entries(conn, "churn")}
    assert {"retrain.trigger", "retrain.training", "version.register", "retrain.gate",
            "rollout.start", "rollout.step", "rollout.promote"} <= actions
    verify = subprocess.run(
        [str(Path(sys.executable).with_name("modelyard")), "--database-url", postgres_url,
         "audit", "verify"],
        env={k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
        capture_output=True, text=True, timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
