"""Rollouts and retraining for the admin API: JSON in, plain dicts out, the store's errors
untouched.

``POST /api/v1/models/{m}/rollout`` takes the spec the CLI's flags describe::

    {"candidate": 4, "strategy": "canary", "steps": [5, 25, 50, 100],
     "step_duration": "10m", "analysis": {"checks": [...]}, "sticky": "X-User-Id"}

Only ``candidate`` is required; ``steps`` may also be text ("5,25,50,100"), ``analysis`` the
path of a YAML file, and ``step_duration`` seconds or text with a unit. Unknown keys are
refused by name.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInput
from modelyard.rollout import analysis, policy
from modelyard.rollout.state import Rollout, RolloutStore

if TYPE_CHECKING:
    from modelyard.lifecycle.retrain import Retrainer

_KEYS = ("candidate", "strategy", "steps", "step_duration", "analysis", "sticky", "baseline")
ACTIONS = ("promote", "pause", "resume", "rollback", "abort")


class RolloutAdmin:
    """Implements :class:`modelyard.serving.routing.RolloutAdmin` over a store."""

    def __init__(self, store: RolloutStore, events: int = 20) -> None:
        self.store = store
        self.events = events

    def status(self, model: str) -> dict[str, Any]:
        rollout = self.store.latest(model)
        if rollout is None:
            return {"model": model, "rollout": None}
        return {"model": model, "rollout": self._dict(rollout)}

    def start(self, model: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        rollout = self.start_rollout(model, spec)
        return {"model": rollout.model, "rollout": self._dict(rollout)}

    def start_rollout(self, model: str, spec: Mapping[str, Any]) -> Rollout:
        """Start from a spec as the API takes it (the CLI's flags make the same spec)."""
        if not isinstance(spec, Mapping):
            raise InvalidInput('the body must be a JSON object such as {"candidate": 4}')
        unknown = [key for key in spec if key not in _KEYS]
        if unknown:
            raise InvalidInput(f"unknown key {unknown[0]!r}; expected {', '.join(_KEYS)}")
        candidate = spec.get("candidate")
        if isinstance(candidate, bool) or not isinstance(candidate, int):
            raise InvalidInput(f"candidate must be a version number, not {candidate!r}")
        strategy = str(spec.get("strategy", "canary"))
        steps: Any = spec.get("steps", [50] if strategy == "ab" else [5, 25, 50, 100])
        if strategy == "canary":
            steps = list(policy.steps(steps))
        elif isinstance(steps, str):
            steps = [float(s) for s in steps.split(",") if s.strip()]
        checks = spec.get("analysis") or {}
        if checks:
            found = analysis.load_checks(checks)
            checks = {"checks": [vars(check) for check in found]}
        baseline = spec.get("baseline")
        if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, int)):
            raise InvalidInput(f"baseline must be a version number, not {baseline!r}")
        return self.store.start(
            model, candidate, strategy=strategy, steps=steps,
            step_duration_s=policy.parse_duration(spec.get("step_duration", "10m")),
            analysis=checks, sticky_header=spec.get("sticky"), baseline=baseline,
        )

    def act(self, model: str, action: str, reason: str | None) -> dict[str, Any]:
        if action not in ACTIONS:
            raise InvalidInput(f"unknown action {action!r}; expected {', '.join(ACTIONS)}")
        store = self.store
        done: Rollout
        if action == "promote":
            done = store.promote(model, reason or "promoted through the API")
        elif action == "pause":
            done = store.pause(model, reason or "")
        elif action == "resume":
            done = store.resume(model)
        elif action == "rollback":
            done = store.rollback(model, reason or "rolled back through the API")
        else:
            done = store.abort(model, reason or "aborted through the API")
        return {"model": done.model, "rollout": self._dict(done)}

    def _dict(self, rollout: Rollout) -> dict[str, Any]:
        events = self.store.events(rollout.id)[-self.events:]
        return {**rollout.to_dict(), "events": [vars(event) for event in events]}


_RETRAIN_KEYS = ("dry_run", "reason")
_APPROVE_KEYS = ("run", "decline", "reason")


class RetrainAdmin:
    """Implements :class:`modelyard.serving.routing.RetrainAdmin` over a
    :class:`~modelyard.lifecycle.retrain.Retrainer`: a started run is carried out on one
    background thread of this process (runs of one model never overlap: the store allows one
    active run per model)."""

    def __init__(self, retrainer: Retrainer, runs: int = 20) -> None:
        self.retrainer = retrainer
        self.limit = runs
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def runs(self, model: str) -> dict[str, Any]:
        self.retrainer.registry.get_model(model)  # an unknown model is a 404, not []
        found = self.retrainer.runs.find(model, limit=self.limit)
        return {"model": model, "runs": [run.to_dict() for run in found]}

    def start(self, model: str, body: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
        from modelyard.lifecycle.runs import Trigger

        spec = _checked(body, _RETRAIN_KEYS)
        if spec.get("dry_run"):
            return False, {"model": model, "plan": self.retrainer.plan(model)}
        reason = spec.get("reason") or f"started by {self.retrainer.registry.actor} through the API"
        run = self.retrainer.begin(model, Trigger("manual", str(reason)))
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="modelyard-retrain")
            self._pool.submit(self.retrainer.proceed, run)
        return True, {"model": model, "run": run.to_dict()}

    def approve(self, model: str, body: Mapping[str, Any]) -> dict[str, Any]:
        spec = _checked(body, _APPROVE_KEYS)
        run_id = spec.get("run")
        if run_id is not None and (isinstance(run_id, bool) or not isinstance(run_id, int)):
            raise InvalidInput(f"run must be a run number, not {run_id!r}")
        if spec.get("decline"):
            done = self.retrainer.decline(model, run_id, str(spec.get("reason") or ""))
        else:
            done = self.retrainer.approve(model, run_id)
        return {"model": model, "run": done.to_dict()}

    def close(self) -> None:
        """Stop taking runs; one under way finishes on its own thread (or is ended as
        abandoned by the next trigger watcher if the process stops first)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)


def _checked(body: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise InvalidInput("the body must be a JSON object")
    unknown = [key for key in body if key not in keys]
    if unknown:
        raise InvalidInput(f"unknown key {unknown[0]!r}; expected {', '.join(keys)}")
    return dict(body)
