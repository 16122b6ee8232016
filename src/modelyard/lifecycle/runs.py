"""Retraining runs in the store: each stage a transaction, each decision an audit entry.

A run moves through stages ``data`` → ``training`` → ``registering`` → ``gate`` →
``approval`` → ``rollout`` and ends in one state:

- ``rollout_started``: the candidate passed the gate and its rollout began (the rollout then
  promotes or rolls back on its own, see :mod:`modelyard.rollout.state`);
- ``rejected``: the gate said no (its reasons are the message);
- ``declined``: a person refused the candidate at ``modelyard approve --decline``;
- ``failed``: no candidate could be judged (too few labelled rows, a training entry point that
  crashed or ran past its time limit, a model that would not register, a rollout that could
  not start).

Until then it is ``running``, or ``awaiting_approval`` when the gate passed and the model's
settings ask for a person's word. At most one run per model is active (a partial unique
index); a trigger's key (``alert:DatasetDrift:churn:3:<firing since>``,
``schedule:<slot>``) is unique per model, so a firing that many workers see starts one run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard.errors import Conflict, NotFound
from modelyard.events import Action
from modelyard.registry import Registry, audit
from modelyard.store import Database
from modelyard.store.tables import retrain_runs

ACTIVE = ("running", "awaiting_approval")
FINISHED = ("rollout_started", "rejected", "declined", "failed")
TRIGGERS = ("manual", "alert", "schedule")


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Trigger:
    """Why a run starts: ``kind`` (manual, alert, schedule), a ``key`` unique per firing (None
    for manual runs) and a sentence for people."""

    kind: str
    reason: str
    key: str | None = None


@dataclass(frozen=True)
class RetrainRun:
    id: int
    model: str
    state: str
    stage: str
    trigger: str
    trigger_key: str | None
    reason: str
    champion: int | None
    candidate: int | None
    rollout_id: int | None
    detail: dict[str, Any]
    message: str | None
    started_at: str
    updated_at: str
    finished_at: str | None
    created_by: str

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _run(row: Any) -> RetrainRun:
    data = dict(row._asdict())
    data["detail"] = dict(data["detail"] or {})
    return RetrainRun(**data)


class RetrainRuns:
    """The runs of one registry's models; ``now`` is injectable for tests."""

    def __init__(self, registry: Registry, now: Callable[[], datetime] | None = None) -> None:
        self.registry = registry
        self.database: Database = registry.db
        self.now = now or (lambda: datetime.now(UTC))

    # -- reading -------------------------------------------------------------------------

    def get(self, run_id: int) -> RetrainRun:
        with self.database.read() as conn:
            row = conn.execute(select(retrain_runs).where(retrain_runs.c.id == run_id)).first()
        if row is None:
            raise NotFound(f"there is no retraining run {run_id}")
        return _run(row)

    def active(self, model: str) -> RetrainRun | None:
        with self.database.read() as conn:
            row = conn.execute(select(retrain_runs).where(
                retrain_runs.c.model == model, retrain_runs.c.state.in_(ACTIVE))).first()
        return None if row is None else _run(row)

    def find(self, model: str | None = None, limit: int = 20) -> list[RetrainRun]:
        """The newest runs first."""
        query = select(retrain_runs).order_by(retrain_runs.c.id.desc()).limit(limit)
        if model is not None:
            query = query.where(retrain_runs.c.model == model)
        with self.database.read() as conn:
            return [_run(row) for row in conn.execute(query)]

    def last_finished_at(self, model: str) -> datetime | None:
        """When the model's newest run ended (triggers cool down after it)."""
        query = (select(retrain_runs.c.finished_at).where(
            retrain_runs.c.model == model, retrain_runs.c.finished_at.is_not(None))
            .order_by(retrain_runs.c.id.desc()).limit(1))
        with self.database.read() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else datetime.fromisoformat(found)

    def seen(self, model: str, key: str) -> bool:
        with self.database.read() as conn:
            return conn.execute(select(retrain_runs.c.id).where(
                retrain_runs.c.model == model, retrain_runs.c.trigger_key == key)).first() \
                is not None

    # -- changing ------------------------------------------------------------------------

    def start(self, model: str, trigger: Trigger, champion: int | None) -> RetrainRun:
        """A new ``running`` run; :class:`Conflict` when the model has an active run or this
        trigger's key already started one."""
        at = iso(self.now())
        values: dict[str, Any] = dict(
            model=model, state="running", stage="data", trigger=trigger.kind,
            trigger_key=trigger.key, reason=trigger.reason, champion=champion, candidate=None,
            rollout_id=None, detail={}, message=None, started_at=at, updated_at=at,
            finished_at=None, created_by=self.registry.actor,
        )
        try:
            with self.database.write() as conn:
                inserted = conn.execute(insert(retrain_runs).values(**values))
                run_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
                audit.append(conn, self.registry.actor, Action.RETRAIN_TRIGGER, model, None,
                             {"run": run_id, "trigger": trigger.kind, "reason": trigger.reason,
                              "champion": champion})
        except IntegrityError:
            current = self.active(model)
            if current is not None:
                raise Conflict(
                    f"model {model!r} already has retraining run {current.id} "
                    f"({current.state.replace('_', ' ')}, {current.stage}); "
                    + ("approve or decline it first" if current.state == "awaiting_approval"
                       else "wait for it to end")) from None
            raise Conflict(f"this trigger already started a retrain of {model!r}") from None
        return self.get(run_id)

    def stage(self, run: RetrainRun, stage: str, action: Action | None = None,
              detail: Mapping[str, Any] | None = None, **values: Any) -> RetrainRun:
        """Move a running run to ``stage``; ``detail`` is merged into the run's detail under
        its keys and, with ``action``, recorded on the audit log."""
        return self._change(run, ("running",), {"stage": stage, **values}, action, detail)

    def await_approval(self, run: RetrainRun, message: str) -> RetrainRun:
        return self._change(run, ("running",), {"stage": "approval",
                                                "state": "awaiting_approval",
                                                "message": message}, None, None)

    def finish(self, run: RetrainRun, state: str, message: str,
               action: Action | None = None, detail: Mapping[str, Any] | None = None,
               expected: tuple[str, ...] = ACTIVE, **values: Any) -> RetrainRun:
        if state not in FINISHED:
            raise ValueError(f"not a final state: {state}")
        return self._change(run, expected, {"state": state, "message": message,
                                            "finished_at": iso(self.now()), **values},
                            action, detail)

    def _change(self, run: RetrainRun, expected: tuple[str, ...], values: dict[str, Any],
                action: Action | None, detail: Mapping[str, Any] | None) -> RetrainRun:
        at = iso(self.now())
        with self.database.write() as conn:
            current = _current(conn, run.id)
            merged = {**current.detail, **dict(detail or {})}
            done = conn.execute(
                update(retrain_runs)
                .where(retrain_runs.c.id == run.id, retrain_runs.c.state.in_(list(expected)))
                .values(**values, detail=merged, updated_at=at)
            ).rowcount
            if not done:
                raise Conflict(f"retraining run {run.id} of {run.model} is "
                               f"{current.state.replace('_', ' ')}, not "
                               f"{' or '.join(s.replace('_', ' ') for s in expected)}")
            if action is not None:
                audit.append(conn, self.registry.actor, action, run.model,
                             {"state": current.state, "stage": current.stage},
                             {"run": run.id, "state": values.get("state", current.state),
                              "stage": values.get("stage", current.stage),
                              **{k: v for k, v in values.items()
                                 if k in ("candidate", "rollout_id", "message")},
                              **dict(detail or {})})
        return self.get(run.id)


def _current(conn: Connection, run_id: int) -> RetrainRun:
    row = conn.execute(select(retrain_runs).where(retrain_runs.c.id == run_id)).first()
    if row is None:
        raise NotFound(f"there is no retraining run {run_id}")
    return _run(row)
