"""Rollouts in the store: start, step, pause, resume, promote, roll back — each one audited.

The store is the one place a rollout's state lives, so every worker and replica routes the same
way and a restarted server continues where it was. Each change is one transaction that updates
the ``rollouts`` row only if the rollout is still in the state the change expects (two
controllers, or a controller and a person at the CLI, cannot both win), appends a
``rollout_events`` row, and appends an audit entry.

States: ``running`` → (``paused`` ⇄ ``running``) → ``promoted`` | ``rolled_back`` | ``aborted``.
At most one rollout per model is active (running or paused); a partial unique index says so in
the database too.

Strategies and their weights (the candidate's share of traffic, in percent):

- ``canary``: the weight walks through ``steps`` (e.g. 5, 25, 50, 100); each step lasts
  ``step_duration_s`` and ends with an analysis that continues, waits or rolls back;
- ``bluegreen``: weight 0 while the candidate warms up on every replica, then one switch to
  100 (a single step), the baseline kept loaded for an instant switch back;
- ``shadow``: weight 0 — callers only ever get the baseline's answers — while the candidate
  answers a copy of the traffic off the hot path;
- ``ab``: a fixed split (``steps`` holds one weight, 50 by default), sticky per caller when a
  header is named, until the outcome test finds a winner or the time runs out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.events import Action
from modelyard.registry import Registry, audit
from modelyard.rollout import policy
from modelyard.store import Database
from modelyard.store.tables import rollout_events, rollouts

STRATEGIES = ("canary", "bluegreen", "shadow", "ab")
ACTIVE = ("running", "paused")
FINISHED = ("promoted", "rolled_back", "aborted")


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Rollout:
    """One rollout as stored; ``weight`` is the candidate's share of traffic in percent."""

    id: int
    model: str
    baseline: int
    candidate: int
    strategy: str
    state: str
    steps: tuple[float, ...]
    step: int
    weight: float
    step_duration_s: float
    analysis: dict[str, Any]
    sticky_header: str | None
    started_at: str
    step_started_at: str
    updated_at: str
    finished_at: str | None
    reason: str | None
    created_by: str

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def last_step(self) -> bool:
        return self.step >= len(self.steps) - 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = list(self.steps)
        return data


@dataclass(frozen=True)
class Event:
    id: int
    rollout_id: int
    at: str
    kind: str
    step: int
    weight: float
    detail: dict[str, Any]


def _rollout(row: Any) -> Rollout:
    return Rollout(
        id=row.id, model=row.model, baseline=row.baseline, candidate=row.candidate,
        strategy=row.strategy, state=row.state, steps=tuple(float(s) for s in row.steps),
        step=row.step, weight=float(row.weight), step_duration_s=float(row.step_duration_s),
        analysis=dict(row.analysis or {}), sticky_header=row.sticky_header,
        started_at=row.started_at, step_started_at=row.step_started_at,
        updated_at=row.updated_at, finished_at=row.finished_at, reason=row.reason,
        created_by=row.created_by,
    )


def initial_weight(strategy: str, steps: Sequence[float]) -> float:
    """The candidate's share when a rollout starts: the first canary step or the A/B split;
    0 while a blue-green candidate warms up and for a shadow."""
    return float(steps[0]) if strategy in ("canary", "ab") else 0.0


class RolloutStore:
    """Rollouts of one registry's models; ``now`` is injectable for tests."""

    def __init__(self, registry: Registry, now: Callable[[], datetime] | None = None) -> None:
        self.registry = registry
        self.database: Database = registry.db
        self.now = now or (lambda: datetime.now(UTC))

    # -- reading -------------------------------------------------------------------------

    def get(self, rollout_id: int) -> Rollout:
        with self.database.read() as conn:
            row = conn.execute(select(rollouts).where(rollouts.c.id == rollout_id)).first()
        if row is None:
            raise NotFound(f"there is no rollout {rollout_id}")
        return _rollout(row)

    def active(self, model: str) -> Rollout | None:
        with self.database.read() as conn:
            row = conn.execute(select(rollouts).where(
                rollouts.c.model == model, rollouts.c.state.in_(ACTIVE))).first()
        return None if row is None else _rollout(row)

    def require_active(self, model: str) -> Rollout:
        found = self.active(model)
        if found is None:
            raise NotFound(f"model {model!r} has no running or paused rollout")
        return found

    def latest(self, model: str) -> Rollout | None:
        """The active rollout, else the most recent finished one."""
        with self.database.read() as conn:
            row = conn.execute(select(rollouts).where(rollouts.c.model == model)
                               .order_by(rollouts.c.id.desc()).limit(1)).first()
        return None if row is None else _rollout(row)

    def find(self, model: str | None = None, active_only: bool = False) -> list[Rollout]:
        query = select(rollouts).order_by(rollouts.c.id.desc())
        if model is not None:
            query = query.where(rollouts.c.model == model)
        if active_only:
            query = query.where(rollouts.c.state.in_(ACTIVE))
        with self.database.read() as conn:
            return [_rollout(row) for row in conn.execute(query)]

    def events(self, rollout_id: int) -> list[Event]:
        query = (select(rollout_events).where(rollout_events.c.rollout_id == rollout_id)
                 .order_by(rollout_events.c.id))
        with self.database.read() as conn:
            return [Event(r.id, r.rollout_id, r.at, r.kind, r.step, float(r.weight),
                          dict(r.detail or {})) for r in conn.execute(query)]

    # -- changing ------------------------------------------------------------------------

    def start(
        self, model: str, candidate: int, *, strategy: str = "canary",
        steps: Sequence[float] = (5, 25, 50, 100), step_duration_s: float = 600.0,
        analysis: Mapping[str, Any] | None = None, sticky_header: str | None = None,
        baseline: int | None = None,
    ) -> Rollout:
        """Start rolling ``candidate`` out against ``baseline`` (default: the ``champion``
        alias, else the newest version other than the candidate)."""
        if strategy not in STRATEGIES:
            raise InvalidInput(f"unknown strategy {strategy!r}; choose one of "
                               f"{', '.join(STRATEGIES)}")
        if step_duration_s <= 0:
            raise InvalidInput(f"the step duration must be positive, not {step_duration_s!r}")
        steps = _steps_for(strategy, steps)
        info = self.registry.get_model(model)
        versions = {v.version for v in self.registry.list_versions(info.name)}
        if candidate not in versions:
            raise NotFound(f"model {info.name!r} has no version {candidate}")
        if baseline is None:
            baseline = info.aliases.get("champion")
            if baseline is None:
                others = sorted(versions - {candidate})
                if not others:
                    raise InvalidInput(f"model {info.name!r} has no other version to roll "
                                       f"{candidate} out against")
                baseline = others[-1]
        if baseline not in versions:
            raise NotFound(f"model {info.name!r} has no version {baseline}")
        if baseline == candidate:
            raise InvalidInput(f"version {candidate} of {info.name!r} is already the baseline "
                               "(its champion); register a new version to roll out")
        at = iso(self.now())
        weight = initial_weight(strategy, steps)
        values = dict(
            model=info.name, baseline=baseline, candidate=candidate, strategy=strategy,
            state="running", steps=list(steps), step=0, weight=weight,
            step_duration_s=float(step_duration_s), analysis=dict(analysis or {}),
            sticky_header=sticky_header, started_at=at, step_started_at=at, updated_at=at,
            finished_at=None, reason=None, created_by=self.registry.actor,
        )
        try:
            with self.database.write() as conn:
                inserted = conn.execute(insert(rollouts).values(**values))
                rollout_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
                self._event(conn, rollout_id, at, "started", 0, weight,
                            {"strategy": strategy, "steps": list(steps), "baseline": baseline,
                             "candidate": candidate})
                audit.append(conn, self.registry.actor, Action.ROLLOUT_START,
                             f"{info.name}:{candidate}", None,
                             {"rollout": rollout_id, "strategy": strategy, "baseline": baseline,
                              "steps": list(steps), "weight": weight})
        except IntegrityError:
            current = self.active(info.name)
            raise Conflict(
                f"model {info.name!r} already has a {current.state if current else 'running'} "
                f"rollout (of version {current.candidate if current else '?'}); promote, roll "
                "back or abort it first"
            ) from None
        return self.get(rollout_id)

    def advance(self, rollout: Rollout, detail: Mapping[str, Any] | None = None) -> Rollout:
        """Move a running rollout to its next step (its weight), as its analysis allowed."""
        if rollout.last_step:
            raise InvalidInput(f"the rollout of {rollout.model} is at its last step; promote it")
        step = rollout.step + 1
        weight = float(rollout.steps[step])
        return self._change(rollout, ("running",), "step", Action.ROLLOUT_STEP,
                            {"step": step, "weight": weight, "step_started_at": None},
                            detail)

    def switch(self, rollout: Rollout, detail: Mapping[str, Any] | None = None) -> Rollout:
        """Blue-green: all traffic to the (warmed) candidate in one change."""
        return self._change(rollout, ("running",), "switch", Action.ROLLOUT_STEP,
                            {"weight": 100.0, "step_started_at": None}, detail)

    def pause(self, model: str, reason: str = "") -> Rollout:
        rollout = self.require_active(model)
        return self._change(rollout, ("running",), "paused", Action.ROLLOUT_PAUSE,
                            {"state": "paused", "reason": reason or None}, {"reason": reason})

    def resume(self, model: str) -> Rollout:
        rollout = self.require_active(model)
        return self._change(rollout, ("paused",), "resumed", Action.ROLLOUT_RESUME,
                            {"state": "running", "reason": None, "step_started_at": None}, {})

    def promote(self, model: str, reason: str = "promoted by hand") -> Rollout:
        """All traffic to the candidate and the ``champion`` alias moved to it."""
        rollout = self.require_active(model)
        self.registry.set_alias(rollout.model, "champion", rollout.candidate)
        return self._finish(rollout, "promoted", 100.0, Action.ROLLOUT_PROMOTE, reason)

    def rollback(self, model: str, reason: str = "rolled back by hand",
                 detail: Mapping[str, Any] | None = None) -> Rollout:
        """All traffic back to the baseline, at once; the candidate stays registered."""
        rollout = self.require_active(model)
        return self._finish(rollout, "rolled_back", 0.0, Action.ROLLOUT_ROLLBACK, reason, detail)

    def abort(self, model: str, reason: str = "aborted by hand") -> Rollout:
        rollout = self.require_active(model)
        return self._finish(rollout, "aborted", 0.0, Action.ROLLOUT_ABORT, reason)

    def record(self, rollout: Rollout, kind: str, detail: Mapping[str, Any]) -> None:
        """An event that changes nothing (an analysis that waits, a shadow comparison)."""
        with self.database.write() as conn:
            self._event(conn, rollout.id, iso(self.now()), kind, rollout.step, rollout.weight,
                        dict(detail))

    # -- internals -----------------------------------------------------------------------

    def _finish(self, rollout: Rollout, state: str, weight: float, action: Action, reason: str,
                detail: Mapping[str, Any] | None = None) -> Rollout:
        at = iso(self.now())
        return self._change(rollout, ACTIVE, state, action,
                            {"state": state, "weight": weight, "finished_at": at,
                             "reason": reason}, {"reason": reason, **(detail or {})})

    def _change(self, rollout: Rollout, expected: Sequence[str], kind: str, action: Action,
                values: dict[str, Any], detail: Mapping[str, Any] | None) -> Rollout:
        at = iso(self.now())
        values = {**values, "updated_at": at}
        if "step_started_at" in values:
            values["step_started_at"] = at
        with self.database.write() as conn:
            done = conn.execute(
                update(rollouts)
                .where(rollouts.c.id == rollout.id, rollouts.c.state.in_(list(expected)))
                .values(**values)
            ).rowcount
            if not done:
                current = conn.execute(select(rollouts.c.state)
                                       .where(rollouts.c.id == rollout.id)).scalar()
                raise Conflict(f"the rollout of {rollout.model} is {current}, not "
                               f"{' or '.join(expected)}")
            step = int(values.get("step", rollout.step))
            weight = float(values.get("weight", rollout.weight))
            self._event(conn, rollout.id, at, kind, step, weight, dict(detail or {}))
            audit.append(conn, self.registry.actor, action,
                         f"{rollout.model}:{rollout.candidate}",
                         {"state": rollout.state, "step": rollout.step, "weight": rollout.weight},
                         {"rollout": rollout.id, "state": values.get("state", rollout.state),
                          "step": step, "weight": weight, **dict(detail or {})})
        return self.get(rollout.id)

    @staticmethod
    def _event(conn: Connection, rollout_id: int, at: str, kind: str, step: int, weight: float,
               detail: dict[str, Any]) -> None:
        conn.execute(insert(rollout_events).values(
            rollout_id=rollout_id, at=at, kind=kind, step=step, weight=weight, detail=detail))


def _steps_for(strategy: str, steps: Sequence[float]) -> tuple[float, ...]:
    if strategy == "bluegreen":
        return (0.0, 100.0)
    if strategy == "shadow":
        return (0.0,)
    if strategy == "ab":
        values = tuple(float(s) for s in steps)
        if len(values) != 1 or not 0 < values[0] < 100:
            raise InvalidInput("an A/B test takes one split: the candidate's share in (0, 100)")
        return values
    return policy.steps(list(steps))
