"""The last act of ``modelyard demo``: the drift alert triggers a retrain, the candidate passes
its gate and a canary promotes it; then a deliberately broken candidate is rolled back.

The demo server runs with :func:`lifecycle_config` (its ``MODELYARD_CONFIG``); this module only
sends traffic, watches the store and prints what the server's trigger, gate and rollout
controller decide.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.cli._common import console
from modelyard.client import Client, ServerError
from modelyard.settings import Settings

WAIT_S = 90.0  # for the retrain and its canary; for the broken canary's rollback

CHECKS = '''
[[lifecycle.models.{model}.rollout.analysis.checks]]
name = "errors"
metric = "error_rate"
comparison = "<="
threshold = 0.02
relative = true
min_samples = 20
'''

# Answers its first calls (the warm-up among them), then fails every other one.
BROKEN_MODEL = '''
import numpy as np
from modelyard.runtimes.python import PythonModel


class Broken(PythonModel):
    def setup(self, context):
        self.calls = 0

    def predict(self, inputs):
        self.calls += 1
        if self.calls > 3 and self.calls % 2 == 0:
            raise ValueError("the broken candidate failed")
        return {"predict": np.zeros(len(inputs), dtype=np.int64)}
'''


def lifecycle_config(model: str) -> str:
    """The demo server's retraining settings for ``model`` (TOML)."""
    return f'''
[lifecycle]
poll_s = 0.5

[lifecycle.models.{model}]
entry_point = "modelyard.cli._demo_training:train"
timeout_s = 120

[lifecycle.models.{model}.gate]
metrics = ["accuracy", "f1"]
min_rows = 50

[lifecycle.models.{model}.rollout]
strategy = "canary"
steps = "50,100"
step_duration = "3s"
{CHECKS.format(model=model)}
[lifecycle.models.{model}.triggers]
alerts = ["DatasetDrift"]
cooldown_s = 0
'''


def last_run(config: Settings, model: str) -> int:
    """The id of the model's newest retraining run (0 for none): the demo watches later ones."""
    from modelyard.api.workspace import open_registry
    from modelyard.lifecycle.runs import RetrainRuns

    found = RetrainRuns(open_registry(config)).find(model, limit=1)
    return found[0].id if found else 0


def retrain_loop(config: Settings, url: str, model: str, shifted: np.ndarray,
                 after: int) -> bool:
    """Watch the retrain the drift triggered (the first run after run ``after``) through to its
    canary's end while sending shifted traffic, then roll out a broken candidate and watch the
    controller roll it back. Returns whether the retrained version was promoted and the broken
    one rolled back with traffic back home."""
    from modelyard.api.workspace import open_registry
    from modelyard.lifecycle.runs import RetrainRuns
    from modelyard.rollout.state import RolloutStore

    registry = open_registry(config)
    runs, rollouts = RetrainRuns(registry), RolloutStore(registry)
    champion = registry.get_model(model).aliases["champion"]
    console.print(f"the drift alert is a retraining trigger of {model}: the server now joins "
                  "the logged predictions with their labels, trains, gates, rolls out",
                  markup=False)
    with Client(url) as client:
        traffic = _Traffic(client, model, shifted)
        seen: set[str] = set()
        deadline = time.monotonic() + WAIT_S
        promoted = False
        while time.monotonic() < deadline:
            traffic.send(20)
            found = runs.find(model, limit=1)
            run = found[0] if found and found[0].id > after else None
            if run is not None:
                _say_once(seen, f"run {run.id}", f"  retraining run {run.id}: {run.reason}")
                line = _run_line(run)  # (a stage's line once, whatever states it passes)
                _say_once(seen, f"run {run.id}: {line}", line)
                if run.state in ("failed", "rejected", "declined"):
                    break
            rollout = rollouts.latest(model)
            if run is not None and rollout is not None and rollout.id == run.rollout_id:
                _say_once(seen, f"rollout {rollout.id} {rollout.weight} {rollout.state}",
                          f"  canary of version {rollout.candidate}: {rollout.weight:g} % of "
                          f"traffic, {rollout.state}")
                if not rollout.active:
                    promoted = rollout.state == "promoted"
                    break
        new = registry.get_model(model).aliases["champion"]
        console.print(f"{model}@champion: version {champion} → {new}" if promoted else
                      f"the retrain did not end in a promotion within {WAIT_S:g} s", markup=False)
        if not promoted:
            return False
        return _broken_canary(config, traffic, model, new, rollouts)


def _broken_canary(config: Settings, traffic: _Traffic, model: str, champion: int,
                   rollouts: Any) -> bool:
    from modelyard.api.registration import register
    from modelyard.rollout import analysis

    code = config.home / "broken_model.py"
    code.write_text(BROKEN_MODEL)
    reference = _reference(config, model)
    version = register(code, model, reference=reference, settings=config,
                       description="a deliberately broken candidate (the demo)").version
    checks = analysis.load_checks({"checks": [
        {"name": "errors", "metric": "error_rate", "comparison": "<=", "threshold": 0.02,
         "relative": True, "min_samples": 20}]})
    rollouts.start(model, version, steps=[20, 100], step_duration_s=3.0,
                   analysis={"checks": [vars(check) for check in checks]})
    console.print(f"registered version {version}, which fails every other request, and started "
                  "its canary at 20 % of traffic", markup=False)
    traffic.failed = 0
    started, deadline = time.monotonic(), time.monotonic() + WAIT_S
    done = None
    while time.monotonic() < deadline:
        traffic.send(20)
        done = rollouts.latest(model)
        if done is not None and not done.active:
            break
    if done is None or done.state != "rolled_back":
        console.print(f"the broken canary was not rolled back within {WAIT_S:g} s",
                      markup=False)
        return False
    console.print(f"  rolled back automatically after {time.monotonic() - started:.1f} s: "
                  f"{done.reason} ({traffic.failed} requests failed on the way)", markup=False)
    back = time.monotonic()
    while time.monotonic() - back < 5:
        versions = traffic.send(10)
        if versions == {str(champion)}:
            console.print(f"  traffic back on version {champion} within "
                          f"{time.monotonic() - back:.1f} s", markup=False)
            return _audit(config)
    return False


def _audit(config: Settings) -> bool:
    from modelyard.api.workspace import open_registry
    from modelyard.registry import audit

    with open_registry(config).db.read() as conn:
        check = audit.verify(conn)
    console.print(f"audit log after the loop: {check.entries} entries (trigger, training, gate, "
                  f"rollout steps, promotion, rollback), chain "
                  f"{'intact' if check.ok else 'BROKEN'}", markup=False)
    return check.ok


class _Traffic:
    """Shifted rows sent one at a time; counts failures, answers which versions served."""

    def __init__(self, client: Client, model: str, rows: np.ndarray) -> None:
        self.client, self.model, self.rows = client, model, rows
        self.sent = self.failed = 0

    def send(self, requests: int) -> set[str]:
        versions = set()
        for _ in range(requests):
            row = self.rows[self.sent % len(self.rows)]
            self.sent += 1
            try:
                self.client.predict(self.model, row[None, :])
                versions.add(self.client.last_version or "")
            except ServerError:
                self.failed += 1
        return versions


def _reference(config: Settings, model: str) -> Any:
    from modelyard.api import load

    reference = load(f"{model}@champion", settings=config).reference()
    return reference.drop(columns=["malignant"], errors="ignore")


def _say_once(seen: set[str], key: str, line: str | None) -> None:
    if key not in seen and line:
        seen.add(key)
        console.print(line, markup=False)


def _run_line(run: Any) -> str | None:
    if run.stage == "training":
        data = run.detail.get("data", {})
        return (f"  training on {data.get('training_rows')} rows "
                f"({data.get('reference_rows')} from the reference); "
                f"{data.get('holdout_rows')} newest labelled rows held out for the gate")
    if run.stage == "gate" and run.candidate:
        return f"  registered version {run.candidate} (parent: version {run.champion})"
    if run.state == "rejected":
        return f"  gate rejected version {run.candidate}: {run.message}"
    if run.state == "failed":
        return f"  the retrain failed: {run.message}"
    if run.stage == "rollout":
        gate = run.detail.get("gate", {})
        return "  gate passed: " + "; ".join(gate.get("reasons", []))
    return None


def write_config(home: Path, model: str) -> Path:
    path = home / "demo-lifecycle.toml"
    path.write_text(lifecycle_config(model))
    return path
