"""Triggers: a firing alert, an SLA breach or a schedule starts a retrain.

:class:`Triggers` looks, every ``lifecycle.poll_s`` seconds, at each model with retraining
settings and starts a run (:class:`~modelyard.lifecycle.retrain.Retrainer`) when

- **an alert** named in ``triggers.alerts`` fires on the model's champion version — drift
  (``DatasetDrift``), performance (``AccuracyDrop``) or, listed by the user, an SLA breach
  (``LatencyP99High``, ``ErrorRateHigh``). One firing starts at most one run: its key is the
  rule, the subject and the time it started firing, and the store refuses a key twice.
- **a schedule** (``triggers.schedule``, cron syntax in UTC) reaches a slot. Slots before the
  watcher started are not caught up; a slot missed while a run or rollout was under way is
  taken once it ends (the latest one only).

No trigger starts a run while the model has one active, has an active rollout, or ended a run
less than ``triggers.cooldown_s`` ago; nor before the labelled predictions suffice for the
gate's holdout (the trigger waits for the labels instead of spending itself on a run that
could only fail). Runs happen one at a time on the watcher's thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from croniter import croniter
from sqlalchemy import select

from modelyard.errors import Conflict, InvalidInput, ModelyardError
from modelyard.lifecycle.retrain import Retrainer, check_settings
from modelyard.lifecycle.runs import Trigger
from modelyard.registry import ModelRef
from modelyard.settings import RetrainSettings, Settings
from modelyard.store.tables import alert_states

log = logging.getLogger("modelyard.lifecycle")


def check_schedule(expression: str) -> str:
    """The expression when cron can read it, else :class:`InvalidInput` naming it.

    >>> check_schedule("0 3 * * 1")
    '0 3 * * 1'
    >>> check_schedule("every monday")
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: schedule 'every monday' is not a cron expression ...
    """
    if not croniter.is_valid(expression):
        raise InvalidInput(f"schedule {expression!r} is not a cron expression (five fields: "
                           "minute hour day-of-month month day-of-week, e.g. '0 3 * * 1')")
    return expression


def check_lifecycle(settings: Settings) -> None:
    """Every ``[lifecycle.models.NAME]`` table holds: its gate, its rollout and its schedule.
    Run before a server or monitor starts, so a typo is one clear line, not a worker's death.
    """
    for model, config in settings.lifecycle.models.items():
        try:
            check_settings(config)
            if config.triggers.schedule:
                check_schedule(config.triggers.schedule)
        except InvalidInput as error:
            raise InvalidInput(f"lifecycle.models.{model}: {error}") from None


def last_slot(expression: str, now: datetime) -> datetime:
    """The newest time at or before ``now`` the schedule names."""
    ahead = croniter(expression, now + timedelta(microseconds=1))
    return ahead.get_prev(datetime).astimezone(UTC)


class Triggers:
    """Watches alerts and schedules and starts retrains; see the module doc."""

    def __init__(self, retrainer: Retrainer, *, poll_s: float | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.retrainer = retrainer
        self.poll_s = poll_s or retrainer.settings.lifecycle.poll_s
        self.now = now or retrainer.now
        self.started_at = self.now()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting: dict[str, str | None] = {}
        check_lifecycle(retrainer.settings)

    def due(self) -> list[tuple[str, Trigger]]:
        """The runs to start now, one per model at most."""
        found = []
        for model, config in self.retrainer.settings.lifecycle.models.items():
            trigger = self._due(model, config)
            if trigger is not None:
                found.append((model, trigger))
        return found

    def _due(self, model: str, config: RetrainSettings) -> Trigger | None:
        runs, now = self.retrainer.runs, self.now()
        self._end_abandoned(model, config, now)
        if runs.active(model) is not None or self.retrainer.rollouts.active(model) is not None:
            return None
        ended = runs.last_finished_at(model)
        if ended is not None and (now - ended).total_seconds() < config.triggers.cooldown_s:
            return None
        try:
            champion = self.retrainer.registry.get_version(ModelRef.parse(model))
        except ModelyardError:
            return None  # not registered (yet): nothing to retrain
        if config.triggers.alerts:
            subject = f"{champion.name}:{champion.version}"
            query = select(alert_states).where(
                alert_states.c.subject == subject, alert_states.c.state == "firing",
                alert_states.c.rule.in_(config.triggers.alerts)).order_by(alert_states.c.rule)
            with self.retrainer.registry.db.read() as conn:
                firing = list(conn.execute(query))
            for alert in firing:
                key = f"alert:{alert.rule}:{subject}:{alert.firing_since}"
                if not runs.seen(model, key):
                    return Trigger("alert", f"alert {alert.rule} firing on {subject} since "
                                   f"{alert.firing_since}", key)
        if config.triggers.schedule:
            slot = last_slot(config.triggers.schedule, now)
            key = f"schedule:{slot.isoformat()}"
            if slot >= self.started_at and not runs.seen(model, key):
                return Trigger("schedule", f"schedule {config.triggers.schedule!r} reached "
                               f"{slot.isoformat()}", key)
        return None

    def _end_abandoned(self, model: str, config: RetrainSettings, now: datetime) -> None:
        """A run left ``running`` by a process that stopped (its stage has not moved for the
        training time limit and five minutes more) ends ``failed``, so it blocks no more."""
        run = self.retrainer.runs.active(model)
        if run is None or run.state != "running":
            return
        quiet = (now - datetime.fromisoformat(run.updated_at)).total_seconds()
        if quiet > config.timeout_s + 300:
            with contextlib.suppress(Conflict):  # it moved after all
                self.retrainer.runs.finish(
                    run, "failed", f"abandoned at stage {run.stage}: no progress for "
                    f"{quiet:.0f} s (the process running it stopped)", expected=("running",))

    def run_once(self) -> list[int]:
        """Start every due run, one after the other; returns the runs' ids.

        A due trigger whose model lacks the labelled rows its gate needs waits (its firing is
        not spent): labels arrive late, and a run without them could only fail.
        """
        started = []
        for model, trigger in self.due():
            short = self.retrainer.labels_short(model)
            if short is not None:
                if self._waiting.get(model) != trigger.key:
                    log.info("retrain of %s (%s) waits for labels: %s", model, trigger.reason,
                             short)
                    self._waiting[model] = trigger.key
                continue
            self._waiting.pop(model, None)
            try:
                run = self.retrainer.run(model, trigger)
            except (Conflict, InvalidInput) as error:  # another replica won, or bad settings
                log.info("retrain of %s not started: %s", model, error)
                continue
            log.info("retraining run %s of %s ended %s: %s", run.id, model, run.state,
                     run.message)
            started.append(run.id)
        return started

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="modelyard-triggers",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.run_once()
            except Exception:  # the watcher outlives a bad round (the store may be down)
                log.exception("checking retraining triggers failed")

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
