"""The rollout controller: steps rollouts forward, promotes them or rolls them back.

It runs in the primary server worker (next to the monitor) or alone, and every ``tick_s`` looks
at each running rollout:

- **canary**: when a step has lasted ``step_duration_s``, the analysis
  (:mod:`modelyard.rollout.analysis`) reads both versions' metrics over the step
  (:mod:`.signals`) and decides: *continue* (next weight, or promote after the 100 % step),
  *wait* (checks without enough data yet — after ``max_wait_steps`` step durations the rollout
  pauses for a person), or *roll back* (a check failed: all traffic back to the baseline at once).
  Realised accuracy needs labels, which may never come in time: while its check is inconclusive
  for want of labels, a passing estimated-accuracy check stands in for it.
- **blue-green**: once the candidate is loaded and warm here (and ``warmup_s`` has passed, so the
  other workers' routers have loaded it too), one switch sends all traffic to it; after a step
  duration with a passing analysis it is promoted, and a failing one switches back.
- **A/B**: a fixed split until the always-valid test on realised accuracy
  (:mod:`modelyard.rollout.stats`, looked at every ``ab_every_s``) finds a winner — promote
  the candidate or roll it back — or ``step_duration_s`` (the test's time limit) runs out;
  failing guard checks roll back early.
- **shadow**: nothing to step; the analysis is recorded every step duration for people to read.

Every decision is a ``rollout_events`` row and an audit entry (:mod:`modelyard.rollout.state`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from modelyard.errors import Conflict
from modelyard.lifecycle.signals import StepMetrics
from modelyard.rollout import analysis, stats
from modelyard.rollout.state import Rollout, RolloutStore

log = logging.getLogger("modelyard.rollout")

_WAIT = "wait"


class StepSignals(Protocol):
    """Where the controller reads a version's metrics over a span
    (:class:`~modelyard.lifecycle.signals.Signals` from the store; a fake in tests)."""

    def step_metrics(self, model: str, version: int, since: datetime, until: datetime,
                     champion: int | None = None) -> StepMetrics: ...


class RolloutController:
    """Drives the running rollouts of one store; ``is_ready(model, version)`` says whether a
    version is loaded and warm in this process (the primary worker's model manager)."""

    def __init__(
        self, store: RolloutStore, signals: StepSignals, *,
        is_ready: Callable[[str, int], bool] | None = None,
        now: Callable[[], datetime] | None = None,
        warmup_s: float = 2.0, max_wait_steps: float = 3.0, tick_s: float = 1.0,
        ab_every_s: float = 30.0,
    ) -> None:
        self.store = store
        self.signals = signals
        self.is_ready = is_ready or (lambda _model, _version: True)
        self.now = now or (lambda: datetime.now(UTC))
        self.warmup_s = warmup_s
        self.max_wait_steps = max_wait_steps
        self.tick_s = tick_s
        self.ab_every_s = ab_every_s
        self._waiting: dict[tuple[int, int], str] = {}  # (rollout, step) → last reason recorded
        self._tests: dict[int, stats.SequentialTest] = {}
        self._shadow_at: dict[int, datetime] = {}
        self._ab_at: dict[int, datetime] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="modelyard-rollouts",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.run_once()

    def run_once(self) -> list[Rollout]:
        """One look at every running rollout; returns those that changed. Never raises."""
        changed = []
        try:
            rollouts = self.store.find(active_only=True)
        except Exception:
            log.exception("rollouts: cannot read the rollouts; trying again next tick")
            return []
        for rollout in rollouts:
            if rollout.state != "running":
                continue
            try:
                after = self.step(rollout)
            except Conflict:
                continue  # someone else changed it first (a person at the CLI, another node)
            except Exception:
                log.exception("rollouts: the rollout of %s failed a round", rollout.model)
                continue
            if after is not None:
                changed.append(after)
        return changed

    def step(self, rollout: Rollout) -> Rollout | None:
        """Whatever ``rollout`` calls for now; the changed rollout, or None."""
        elapsed = (self.now() - _parse(rollout.step_started_at)).total_seconds()
        if rollout.strategy == "bluegreen" and rollout.weight == 0:
            if elapsed >= self.warmup_s and self.is_ready(rollout.model, rollout.candidate):
                log.info("rollouts: %s:%s is warm; switching all traffic to it", rollout.model,
                         rollout.candidate)
                return self.store.switch(rollout, {"warmed_s": round(elapsed, 3)})
            return None
        if rollout.strategy == "ab":
            return self._ab(rollout, elapsed)
        if rollout.strategy == "shadow":  # no step ends: analyse every step duration, record
            last = self._shadow_at.get(rollout.id, _parse(rollout.step_started_at))
            elapsed = (self.now() - last).total_seconds()
        if elapsed < rollout.step_duration_s:
            return None
        verdicts, metrics = self.analyse(rollout)
        decision = _decide(verdicts)
        detail = {"decision": decision, "verdicts": [_verdict(v) for v in verdicts],
                  "metrics": metrics}
        if rollout.strategy == "shadow":
            self._shadow_at[rollout.id] = self.now()
            self.store.record(rollout, "analysis", detail)
            return None
        if decision == "rollback":
            failed = [v.reason for v in verdicts if v.outcome == "fail"]
            log.warning("rollouts: rolling %s:%s back: %s", rollout.model, rollout.candidate,
                        "; ".join(failed))
            return self.store.rollback(rollout.model, "analysis failed: " + "; ".join(failed),
                                       detail)
        if decision == _WAIT:
            return self._wait(rollout, elapsed, verdicts, detail)
        if rollout.weight >= 100:
            return self.store.promote(rollout.model, "analysis passed at 100 %")
        return self.store.advance(rollout, detail)

    # -- analysis ------------------------------------------------------------------------

    def analyse(self, rollout: Rollout) -> tuple[list[analysis.Verdict], dict[str, Any]]:
        """The checks of ``rollout`` over its current step, and the metrics they read."""
        since = _parse(rollout.step_started_at)
        if rollout.strategy == "shadow":
            since = self._shadow_at.get(rollout.id, since)
        until = self.now()
        candidate = self.signals.step_metrics(rollout.model, rollout.candidate, since, until,
                                              champion=rollout.baseline)
        champion = self._champion(rollout, since, until)
        checks = _checks(rollout)
        verdicts = [analysis.evaluate(check, candidate.values, champion.values,
                                      _samples(candidate, check.metric)) for check in checks]
        return verdicts, {"candidate": candidate.to_dict(), "champion": champion.to_dict()}

    def _champion(self, rollout: Rollout, since: datetime, until: datetime) -> StepMetrics:
        """The champion's metrics over the step; when it served nothing in it (the candidate
        has all the traffic), over the whole rollout, else over a step before it started."""
        started = _parse(rollout.started_at)
        spans = [(since, until), (started, until),
                 (started - timedelta(seconds=rollout.step_duration_s), started)]
        metrics = StepMetrics()
        for begin, end in spans:
            metrics = self.signals.step_metrics(rollout.model, rollout.baseline, begin, end)
            if metrics.samples.get("error_rate"):
                break
        return metrics

    def _wait(self, rollout: Rollout, elapsed: float, verdicts: list[analysis.Verdict],
              detail: dict[str, Any]) -> Rollout | None:
        waiting = [v.reason for v in verdicts if v.outcome == "inconclusive"]
        if elapsed >= rollout.step_duration_s * self.max_wait_steps:
            reason = (f"inconclusive after {elapsed:.0f} s: " + "; ".join(waiting))
            log.warning("rollouts: pausing the rollout of %s: %s", rollout.model, reason)
            return self.store.pause(rollout.model, reason)
        key = (rollout.id, rollout.step)
        said = "; ".join(waiting)
        if self._waiting.get(key) != said:  # one event per change of reasons, not per tick
            self._waiting[key] = said
            self.store.record(rollout, "analysis", detail)
        return None

    def _ab(self, rollout: Rollout, elapsed: float) -> Rollout | None:
        since, until = _parse(rollout.started_at), self.now()
        last = self._ab_at.get(rollout.id)
        if (last is not None and (until - last).total_seconds() < self.ab_every_s
                and elapsed < rollout.step_duration_s):
            return None  # each look reads the whole test's metrics: one every ab_every_s
        self._ab_at[rollout.id] = until
        candidate = self.signals.step_metrics(rollout.model, rollout.candidate, since, until)
        champion = self.signals.step_metrics(rollout.model, rollout.baseline, since, until)
        guards = [analysis.evaluate(check, candidate.values, champion.values,
                                    _samples(candidate, check.metric))
                  for check in _checks(rollout) if check.metric in ("error_rate",
                                                                   "latency_p99_s")]
        failed = [v.reason for v in guards if v.outcome == "fail"]
        if failed:
            return self.store.rollback(rollout.model, "a guard check failed: " + "; ".join(
                failed), {"verdicts": [_verdict(v) for v in guards]})
        test = self._tests.setdefault(rollout.id, stats.SequentialTest())
        n_a = champion.samples.get("accuracy_realised", 0)
        n_b = candidate.samples.get("accuracy_realised", 0)
        a = int(champion.values.get("labels_correct", 0))
        b = int(candidate.values.get("labels_correct", 0))
        try:
            result = test.update(a, n_a, b, n_b)
        except Exception as error:  # counts that went down: labels of a purged log
            log.warning("rollouts: A/B test of %s restarted: %s", rollout.model, error)
            self._tests[rollout.id] = test = stats.SequentialTest()
            result = test.update(a, n_a, b, n_b)
        detail = {"test": {key: None if isinstance(value, float) and math.isnan(value)
                           else value for key, value in asdict(result).items()}}
        if result.decision == "b_better":
            return self.store.promote(rollout.model, "the A/B test found the candidate better")
        if result.decision == "a_better":
            return self.store.rollback(rollout.model, "the A/B test found the baseline better",
                                       detail)
        if elapsed >= rollout.step_duration_s:
            return self.store.abort(rollout.model, "no winner within the A/B test's time limit")
        return None


def _checks(rollout: Rollout) -> tuple[analysis.Check, ...]:
    configured = rollout.analysis.get("checks") if rollout.analysis else None
    return analysis.load_checks(rollout.analysis) if configured else analysis.default_checks()


def _samples(metrics: StepMetrics, metric: str) -> int:
    return int(metrics.samples.get(metric, 0))


def _decide(verdicts: list[analysis.Verdict]) -> str:
    """:func:`analysis.decide`, except that an estimated accuracy that passed stands in for a
    realised accuracy still waiting for labels."""
    estimated_ok = any(v.check == "accuracy_estimated" and v.outcome == "pass" for v in verdicts)
    kept = [v for v in verdicts if not (estimated_ok and v.outcome == "inconclusive"
                                        and v.check == "accuracy_realised")]
    return analysis.decide(kept)


def _verdict(verdict: analysis.Verdict) -> dict[str, Any]:
    return {"check": verdict.check, "outcome": verdict.outcome, "value": verdict.value,
            "threshold": verdict.threshold, "samples": verdict.samples,
            "reason": verdict.reason}


def _parse(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)

