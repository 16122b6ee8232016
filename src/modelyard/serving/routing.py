"""How a rollout reaches the data plane: a :class:`Router` picks the version of a bare model
name and names a version to mirror traffic to.

The data plane asks only for requests that name a model by its bare name (``churn``, not
``churn@champion`` or ``churn:3``); a router answers ``None`` for a model without an active
rollout, and the name resolves as it always did (the ``champion`` alias, else the newest
version). :mod:`modelyard.lifecycle.routing` implements it from the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from modelyard.serving.types import InferRequest, InferResponse


class Router(Protocol):
    def route(self, request: InferRequest) -> int | None:
        """The version that answers ``request``, or None to resolve its name as usual."""

    def wants_headers(self, model: str) -> bool:
        """Whether ``model``'s rollout picks versions by a request header (an adapter that
        must build the header list for it, as gRPC does from metadata, asks first)."""

    def mirror(self, model: str) -> int | None:
        """A version that should also see a copy of ``model``'s traffic (a shadow), if any."""

    def mirrored(self, request: InferRequest, served: InferResponse,
                 shadow: InferResponse | None, latency_s: float, error: str | None) -> None:
        """The shadow's answer to a mirrored request, beside the one the caller got."""


class RolloutAdmin(Protocol):
    """The admin API's view of rollouts (:mod:`modelyard.lifecycle.admin` implements it)."""

    def status(self, model: str) -> dict[str, Any]:
        """The model's active (else latest) rollout with its recent events."""

    def start(self, model: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Start a rollout from a JSON spec (candidate, strategy, steps, step_duration, …)."""

    def act(self, model: str, action: str, reason: str | None) -> dict[str, Any]:
        """promote, pause, resume, rollback or abort the model's active rollout."""


class RetrainAdmin(Protocol):
    """The admin API's view of retraining (:mod:`modelyard.lifecycle.admin` implements it)."""

    def runs(self, model: str) -> dict[str, Any]:
        """The model's recent retraining runs, newest first."""

    def start(self, model: str, body: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Start a run in the background (``True`` and the begun run), or, with
        ``{"dry_run": true}``, what a run would do (``False`` and the plan)."""

    def approve(self, model: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Start the rollout of a run awaiting approval, or decline it."""
