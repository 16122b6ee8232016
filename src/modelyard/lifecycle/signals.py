"""What a rollout's analysis reads: each version's metrics over a step, from the live data.

For one model version and a span (the current step), :func:`step_metrics` gathers, in the metric
names of :mod:`modelyard.rollout.analysis`:

- ``error_rate`` and ``latency_p99_s`` from the window profiles the workers flushed (requests,
  errors, the merged latency sketch); samples = requests;
- ``prediction_drift`` for the candidate: its ``prediction`` column against the champion's
  predictions over the same span (the champion's logged predictions give the calibration
  sample, :func:`~modelyard.monitoring.calibration.calibrate`); 1.0 when drifted; samples =
  the candidate's rows;
- ``quality_violations`` and ``accuracy_estimated`` from the monitor's window results;
- ``accuracy_realised`` from the labels received for the version's predictions in the span;
  samples = labelled rows.

A window counts for a step when it *starts* inside the step: windows are flushed when they
end, so a step shorter than a window sees nothing and its checks stay inconclusive.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from modelyard.api.reporting import PREDICTION
from modelyard.live.feedback import FeedbackStore
from modelyard.live.history import History
from modelyard.live.predlog import PredictionLog
from modelyard.live.windows import WindowProfile
from modelyard.live.windows import load as load_windows
from modelyard.monitoring._tables import label_of
from modelyard.monitoring.calibration import calibrate, column_drift
from modelyard.monitoring.columns import calibration_column, is_empty, summarised
from modelyard.monitoring.drift import default_method
from modelyard.monitoring.nulls import NullTables
from modelyard.store import Database

log = logging.getLogger("modelyard.rollout")


@dataclass
class StepMetrics:
    """One version's metric values over a span, and the samples each rests on."""

    values: dict[str, float] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "samples": dict(self.samples)}


def _merged(windows: list[WindowProfile]) -> WindowProfile | None:
    if not windows:
        return None
    first = windows[0]
    merged = WindowProfile(first.model, first.version, first.start, windows[-1].end)
    for window in windows:  # merge folds counts and sketches whatever the window's span
        merged.merge(window)
    return merged


class Signals:
    """Reads step metrics from the store; ``predictions`` and ``feedback`` may be None (then
    drift and realised accuracy stay unknown)."""

    def __init__(self, database: Database, predictions: PredictionLog | None = None,
                 feedback: FeedbackStore | None = None, tables: NullTables | None = None) -> None:
        self.database = database
        self.predictions = predictions
        self.feedback = feedback
        self.tables = tables
        self.history = History(database)

    def step_metrics(self, model: str, version: int, since: datetime, until: datetime,
                     champion: int | None = None) -> StepMetrics:
        """``version``'s metrics over [since, until); with ``champion``, its predictions are
        also compared with the champion's over the same span."""
        out = StepMetrics()
        windows = load_windows(self.database, model, version, since.timestamp(),
                               until.timestamp())
        merged = _merged(windows)
        if merged is not None and merged.requests:
            out.values["error_rate"] = merged.errors / merged.requests
            out.samples["error_rate"] = merged.requests
            if merged.latency is not None and merged.latency.n:
                out.values["latency_p99_s"] = float(merged.latency.quantiles([0.99])[0])
                out.samples["latency_p99_s"] = merged.requests
        self._monitor_results(out, model, version, since, until)
        if champion is not None and merged is not None:
            self._prediction_drift(out, merged, model, champion, since, until)
        self._realised(out, model, version, since, until)
        return out

    def _monitor_results(self, out: StepMetrics, model: str, version: int, since: datetime,
                         until: datetime) -> None:
        results = [r for r in self.history.results(model, since.isoformat(), version)
                   if r.get("window_start", "") < until.isoformat()]
        rows = sum(int(r.get("rows") or 0) for r in results)
        if results:
            out.values["quality_violations"] = float(sum(int(r.get("quality_violations") or 0)
                                                         for r in results))
            out.samples["quality_violations"] = rows
        estimated = [(float(r["performance"]["accuracy_estimated"]),
                      int(r["performance"].get("estimated_rows") or r.get("rows") or 0))
                     for r in results if (r.get("performance") or {}).get("accuracy_estimated")
                     is not None]
        weight = sum(n for _, n in estimated)
        if estimated and weight:
            out.values["accuracy_estimated"] = sum(a * n for a, n in estimated) / weight
            out.samples["accuracy_estimated"] = weight

    def _prediction_drift(self, out: StepMetrics, merged: WindowProfile, model: str,
                          champion: int, since: datetime, until: datetime) -> None:
        if self.predictions is None or merged.profile is None:
            return
        if PREDICTION not in merged.profile.schema:
            return
        theirs = self.predictions.records(model, champion, since, until)
        if PREDICTION not in theirs.columns or not len(theirs):
            return
        column = merged.profile[PREDICTION]
        kind = column.kind
        values = calibration_column(theirs[PREDICTION].to_numpy(), kind)
        reference = _sketch_of(values, kind, column.sketch)
        if reference is None:
            return
        threshold = calibrate(values, default_method(kind), max(1, merged.rows),
                              n_boot=200, tables=self.tables)
        verdict = column_drift(summarised(reference), summarised(column.sketch), threshold)
        out.values["prediction_drift"] = 1.0 if verdict.drift_detected else 0.0
        out.values["prediction_drift_score"] = verdict.score
        out.samples["prediction_drift"] = merged.rows

    def _realised(self, out: StepMetrics, model: str, version: int, since: datetime,
                  until: datetime) -> None:
        if self.feedback is None:
            return
        labelled = self.feedback.labels_for(model, version, since, until)
        if not len(labelled) or PREDICTION not in labelled.columns:
            out.samples["accuracy_realised"] = 0
            return
        labelled = labelled[labelled["label"].notna() & labelled[PREDICTION].notna()]
        if not len(labelled):
            out.samples["accuracy_realised"] = 0
            return
        truth = np.array([label_of(v) for v in labelled["label"]], dtype=object)
        predicted = np.array([label_of(v) for v in labelled[PREDICTION]], dtype=object)
        out.values["accuracy_realised"] = float(np.mean(truth == predicted))
        out.values["labels_correct"] = float(np.sum(truth == predicted))
        out.samples["accuracy_realised"] = len(labelled)


def _sketch_of(values: Any, kind: str, like: Any) -> Any:
    """The champion's predictions summarised as the candidate's column is (same sketch type);
    None when none of them has a value."""
    sketch = type(like)()
    sketch.update(values)
    return None if is_empty(sketch) else sketch
