"""Rollouts for the admin API: a JSON spec in, plain dicts out, the store's errors untouched.

``POST /api/v1/models/{m}/rollout`` takes the spec the CLI's flags describe::

    {"candidate": 4, "strategy": "canary", "steps": [5, 25, 50, 100],
     "step_duration": "10m", "analysis": {"checks": [...]}, "sticky": "X-User-Id"}

Only ``candidate`` is required; ``steps`` may also be text ("5,25,50,100"), ``analysis`` the
path of a YAML file, and ``step_duration`` seconds or text with a unit. Unknown keys are
refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.rollout import analysis, policy
from modelyard.rollout.state import Rollout, RolloutStore

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
