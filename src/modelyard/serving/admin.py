"""The data plane's admin routes: delayed labels, monitoring results, rollouts, retraining.

Each hands a call to the live-monitoring or lifecycle object the composition root plugged in
(through the Protocols in :mod:`.observe` and :mod:`.routing`) and runs it on a worker
thread, since each reads or writes the store. :class:`DataPlane` offers them beside
inference, so that every adapter still calls one object.
"""

from __future__ import annotations

import asyncio
from typing import Any

from modelyard.errors import InvalidInput, NotFound, Unavailable
from modelyard.serving.manager import ModelManager
from modelyard.serving.observe import FeedbackSink, MonitoringHistory
from modelyard.serving.routing import RetrainAdmin, RolloutAdmin


class AdminRoutes:
    manager: ModelManager
    feedback_sink: FeedbackSink | None
    history: MonitoringHistory | None
    rollouts: RolloutAdmin | None
    retrains: RetrainAdmin | None

    # -- live monitoring -----------------------------------------------------------------

    async def feedback(self, items: Any) -> Any:
        """Delayed labels ``[{"id": request id, "label": ...}]`` for earlier predictions."""
        if self.feedback_sink is None:
            raise Unavailable("feedback needs live monitoring (monitoring.enabled = true)")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.feedback_sink.ingest, items)

    async def monitoring(self, name: str, since: str | None) -> list[dict[str, Any]]:
        """The monitor's window results for model ``name`` (every version), oldest first."""
        if self.history is None:
            raise Unavailable("monitoring results need live monitoring (monitoring.enabled)")
        history = self.history
        model = name.split("@", 1)[0]
        if not self.manager.versions(model):
            raise NotFound(f"no model named {model!r} is served")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, history.results, model, since)

    # -- rollouts (admin API) ------------------------------------------------------------

    async def rollout(self, name: str, action: str | None = None, body: Any = None) -> Any:
        """The model's rollout (``action`` None), a new one (``"start"`` with a spec), or
        promote / pause / resume / rollback / abort (``body`` may hold a ``reason``)."""
        admin = self.rollouts
        if admin is None:
            raise Unavailable("this server does not manage rollouts")
        loop = asyncio.get_running_loop()
        if action is None:
            return await loop.run_in_executor(None, admin.status, name)
        if action == "start":
            return await loop.run_in_executor(None, admin.start, name, body)
        reason = body.get("reason") if isinstance(body, dict) else None
        if reason is not None and not isinstance(reason, str):
            raise InvalidInput("reason must be text")
        return await loop.run_in_executor(None, admin.act, name, action, reason)

    # -- retraining (admin API) ---------------------------------------------------------

    async def retrain(self, name: str, action: str | None = None,
                      body: Any = None) -> tuple[int, Any]:
        """The model's runs (``action`` None), a new run (``"start"``: 202 and the begun run;
        200 and the plan for ``{"dry_run": true}``) or ``"approve"``; returns (status, body)."""
        admin = self.retrains
        if admin is None:
            raise Unavailable("this server does not manage retraining")
        loop = asyncio.get_running_loop()
        if action is None:
            return 200, await loop.run_in_executor(None, admin.runs, name)
        if action == "start":
            started, result = await loop.run_in_executor(None, admin.start, name, body)
            return (202 if started else 200), result
        if action == "approve":
            return 200, await loop.run_in_executor(None, admin.approve, name, body)
        raise NotFound(f"unknown retraining action {action!r}; POST .../retrain or "
                       ".../retrain/approve")

    # -- model repository extension ------------------------------------------------------
