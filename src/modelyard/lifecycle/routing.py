"""Each server worker's view of the rollouts: a routing table refreshed from the store.

:class:`RolloutRouter` implements :class:`modelyard.serving.routing.Router`. A daemon thread
reads the active rollouts every ``interval_s`` (0.5 s: a change made on any replica — a step, a
pause, a rollback — reaches every worker within a second) and swaps in a new table; the hot path
only reads a dict. Before a candidate takes traffic on this worker its version is loaded and
warmed up here, in the refresher thread: until its slot is ready, requests keep going to the
baseline. The same thread reloads a model whose aliases or versions changed in the registry
(a promotion moves ``champion``; a new version is registered), every ``registry_every_s``.

Shadow comparisons (:meth:`mirrored`) are counted in memory and added to the store's rollout
events by the refresher, one row per rollout and flush.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelyard.rollout import policy
from modelyard.rollout.state import Rollout, RolloutStore
from modelyard.serving.manager import READY, ModelManager
from modelyard.serving.types import InferRequest, InferResponse

log = logging.getLogger("modelyard.rollout")


@dataclass(frozen=True)
class _Route:
    rollout: Rollout
    split: policy.Split
    ready: bool  # the candidate's slot is loaded and warm on this worker
    sticky: str | None  # "header:<lower-case name>" or "parameter:<name>"


@dataclass
class ShadowTally:
    """What the shadow answered, against what callers got, since the last flush."""

    requests: int = 0
    compared: int = 0
    agreed: int = 0
    errors: int = 0
    latency_s: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        latencies = np.asarray(self.latency_s or [0.0])
        return {
            "requests": self.requests, "compared": self.compared, "agreed": self.agreed,
            "agreement": self.agreed / self.compared if self.compared else None,
            "errors": self.errors,
            "latency_p50_s": float(np.percentile(latencies, 50)) if self.latency_s else None,
            "latency_p99_s": float(np.percentile(latencies, 99)) if self.latency_s else None,
        }


def sticky_spec(value: str | None) -> str | None:
    """``X-User-Id`` → ``header:x-user-id``; ``parameter:user`` kept; None stays None."""
    if not value:
        return None
    if value.startswith(("header:", "parameter:")):
        kind, _, name = value.partition(":")
        return f"{kind}:{name.lower() if kind == 'header' else name}"
    return f"header:{value.lower()}"


def _key(request: InferRequest, sticky: str) -> str | None:
    kind, _, name = sticky.partition(":")
    if kind == "parameter":
        found = request.parameters.get(name)
        return None if found is None else str(found)
    wanted = name.encode("latin-1")
    for key, value in request.headers or ():
        if key == wanted:
            return value.decode("latin-1")
    return None


class RolloutRouter:
    """Routes bare model names by the active rollouts; see the module docstring."""

    def __init__(
        self, store: RolloutStore, manager: ModelManager, *, interval_s: float = 0.5,
        registry_every_s: float = 2.0, shadow_every_s: float = 10.0, retry_load_s: float = 10.0,
        draw: Callable[[], float] = random.random,
        on_refresh: Callable[[list[Rollout]], None] | None = None,
    ) -> None:
        self.store = store
        self.on_refresh = on_refresh  # hears the active rollouts after each refresh (metrics)
        self.manager = manager
        self.interval_s = interval_s
        self.registry_every_s = registry_every_s
        self.shadow_every_s = shadow_every_s
        self.retry_load_s = retry_load_s
        self.draw = draw
        self._shadow_flushed = time.monotonic()
        self._table: dict[str, _Route] = {}
        self._tallies: dict[int, ShadowTally] = {}
        self._tally_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._registry_checked = -1e18
        self._load_tried: dict[str, float] = {}

    # -- the hot path (event loop) ---------------------------------------------------------

    def route(self, request: InferRequest) -> int | None:
        found = self._table.get(request.model)
        if found is None:
            return None
        if not found.ready:
            return found.split.baseline
        key = _key(request, found.sticky) if found.sticky else None
        return policy.choose(found.split, key, salt=f"rollout-{found.rollout.id}",
                             draw=None if key is not None else self.draw())

    def wants_headers(self, model: str) -> bool:
        found = self._table.get(model)
        return found is not None and (found.sticky or "").startswith("header:")

    def mirror(self, model: str) -> int | None:
        found = self._table.get(model)
        if found is None or found.rollout.strategy != "shadow" or not found.ready:
            return None
        return found.rollout.candidate

    def mirrored(self, request: InferRequest, served: InferResponse,
                 shadow: InferResponse | None, latency_s: float, error: str | None) -> None:
        found = self._table.get(request.model)
        if found is None:
            return
        with self._tally_lock:
            tally = self._tallies.setdefault(found.rollout.id, ShadowTally())
            tally.requests += 1
            if shadow is None:
                tally.errors += 1
                return
            if len(tally.latency_s) < 100_000:
                tally.latency_s.append(latency_s)
            mine = {t.name: t for t in served.outputs}
            theirs = {t.name: t for t in shadow.outputs}
            common = [name for name in mine if name in theirs]
            if common:
                name = "predict" if "predict" in common else common[0]
                a, b = np.asarray(mine[name].data), np.asarray(theirs[name].data)
                if a.shape == b.shape:
                    tally.compared += 1
                    tally.agreed += int(np.array_equal(a, b))

    # -- the refresher (daemon thread) -----------------------------------------------------

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="modelyard-router", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush_shadow()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.refresh()
            except Exception:
                log.exception("rollouts: refreshing the routing table failed; keeping the old one")

    def refresh(self) -> None:
        """Read the active rollouts, warm what they need, swap the table; reload models whose
        registry entry changed (at most every ``registry_every_s``)."""
        now = time.monotonic()
        if now - self._registry_checked >= self.registry_every_s:
            self._registry_checked = now
            self._reload_changed()
        table: dict[str, _Route] = {}
        active = self.store.find(active_only=True)
        for rollout in active:
            ready = self._warm(rollout)
            weight = rollout.weight if rollout.strategy != "shadow" else 0.0
            split = policy.Split(rollout.baseline, rollout.candidate, weight)
            table[rollout.model] = _Route(rollout, split, ready, sticky_spec(rollout.sticky_header))
        self._table = table
        if self.on_refresh is not None:
            self.on_refresh(active)
        if now - self._shadow_flushed >= self.shadow_every_s:
            self._shadow_flushed = now
            self.flush_shadow()

    def _warm(self, rollout: Rollout) -> bool:
        """Whether both versions are ready here; loads (and so warms) them if they are not."""
        def ready() -> bool:
            states = {s.version: s.state for s in self.manager.versions(rollout.model)}
            return (states.get(rollout.candidate) == READY
                    and states.get(rollout.baseline) == READY)

        if ready():
            return True
        # a version that fails to load is tried again at most every retry_load_s, not on
        # every refresh (loading reads and warms every version of the model)
        now = time.monotonic()
        if now - self._load_tried.get(rollout.model, -1e18) < self.retry_load_s:
            return False
        self._load_tried[rollout.model] = now
        try:
            self.manager.load_model(rollout.model)
        except Exception as error:
            log.warning("rollouts: cannot load %s for its rollout: %s", rollout.model, error)
            return False
        return ready()

    def _reload_changed(self) -> None:
        try:
            infos = self.store.registry.list_models()
        except Exception as error:
            log.warning("rollouts: cannot read the registry: %s", error)
            return
        for info in infos:
            slots = self.manager.versions(info.name)
            loaded = max((s.version for s in slots), default=None)
            if slots and info.aliases == self.manager.aliases(info.name) \
                    and info.latest_version == loaded:
                continue
            try:
                self.manager.load_model(info.name)
                log.info("models: reloaded %s (aliases %s, newest version %s)", info.name,
                         info.aliases, info.latest_version)
            except Exception as error:
                log.warning("models: cannot reload %s: %s", info.name, error)

    def flush_shadow(self) -> None:
        with self._tally_lock:
            tallies, self._tallies = self._tallies, {}
        for rollout_id, tally in tallies.items():
            try:
                self.store.record(self.store.get(rollout_id), "shadow", tally.to_dict())
            except Exception as error:
                log.warning("rollouts: cannot store shadow comparisons of rollout %s: %s",
                            rollout_id, error)
