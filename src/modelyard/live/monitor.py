"""The monitor: at each ended window, compare a model version's live profile with its reference.

For every (model, version) with stored window profiles, each window that has ended and has no
result yet is judged: drift per feature and of the predictions (thresholds calibrated to the
window's size on the version's reference, cached per size bucket), the quality rules learned
from the reference, and the service levels (p99 latency from the window's latency sketch, the
error rate). The result is stored in ``monitor_results`` — one row per version and window, the
time series that ``GET /api/v1/models/{m}/monitoring`` and ``modelyard monitor status`` read —
and handed to the alert evaluator as metric values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import and_, select
from sqlalchemy.dialects import postgresql, sqlite

from modelyard.api.predictor import Predictor, load
from modelyard.api.reporting import PREDICTION, PROBABILITY_PREFIX
from modelyard.errors import InvalidInput
from modelyard.live._clock import Clock, SystemClock
from modelyard.live.feedback import FeedbackStore
from modelyard.live.predlog import PredictionLog
from modelyard.live.windows import WindowProfile, iso, models_with_windows, window_start
from modelyard.live.windows import load as load_windows
from modelyard.monitoring._tables import CATEGORICAL, label_of
from modelyard.monitoring.calibration import (
    DriftResult,
    Threshold,
    calibrate,
    column_drift,
    dataset_drift,
)
from modelyard.monitoring.cbpe import CBPE
from modelyard.monitoring.columns import (
    calibration_column,
    finite_or_none,
    is_empty,
    summarised,
)
from modelyard.monitoring.drift import default_method
from modelyard.monitoring.nulls import NullTables
from modelyard.monitoring.performance import classification_metrics, regression_metrics
from modelyard.monitoring.profile import TableProfile, profile_table
from modelyard.monitoring.quality import QualityRules
from modelyard.monitoring.sketches import NumericSketch
from modelyard.settings import MonitoringSettings, Settings
from modelyard.store import Database
from modelyard.store.tables import monitor_results

log = logging.getLogger("modelyard.monitoring")

_CALIBRATION_ROWS = 100_000
_LOOKBACK_S = 7 * 24 * 3600.0
_MIN_BUCKET = 100


def size_bucket(rows: int) -> int:
    """The calibration size for a window of ``rows`` rows: the power of two at or below it.

    A threshold calibrated for fewer rows is a little larger than needed, so the false-alarm
    rate stays at or below alpha while a handful of sizes cover every window.

    >>> size_bucket(1000), size_bucket(1024), size_bucket(30)
    (512, 1024, 100)
    """
    return max(_MIN_BUCKET, 1 << (max(rows, 1).bit_length() - 1))


@dataclass
class _Reference:
    """What the monitor keeps per model version: its reference profile (features and model
    outputs), a sample of the reference for calibration, quality rules, and thresholds."""

    profile: TableProfile
    sample: pd.DataFrame
    features: list[str]
    outputs: list[str]
    rules: QualityRules
    task: str = "other"
    classes: list[Any] = field(default_factory=list)
    cbpe: CBPE | None = None
    baseline_accuracy: float | None = None
    thresholds: dict[tuple[str, int], Threshold] = field(default_factory=dict)


class Monitor:
    """Judges ended windows; see the module docstring.

    ``evaluate_alerts(subject, labels, values, at)`` is called with each window's metric
    values (see :func:`metric_values`) and its end; ``load_version`` loads a registered
    version (``api.load``).
    """

    def __init__(
        self, database: Database, settings: Settings, *, clock: Clock | None = None,
        evaluate_alerts: Callable[[str, dict[str, str], dict[str, Any], datetime], Any]
        | None = None,
        load_version: Callable[[str], Predictor] | None = None,
        feedback: FeedbackStore | None = None, predictions: PredictionLog | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.config: MonitoringSettings = settings.monitoring
        self.clock = clock or SystemClock()
        self.evaluate_alerts = evaluate_alerts
        self.load_version = load_version or (lambda ref: load(ref, settings))
        self.feedback = feedback
        self.predictions = predictions
        self._references: dict[tuple[str, int], _Reference | None] = {}
        self.tables = NullTables(settings.cache_dir / "nulls")

    def run_once(self) -> list[dict[str, Any]]:
        """Judge every ended window without a result yet; returns the new results."""
        now = self.clock.now().timestamp()
        since = now - _LOOKBACK_S
        results = []
        for model, version in models_with_windows(self.database, since):
            done = self._judged(model, version, since)
            ended = window_start(now, self.config.window_s)
            for window in load_windows(self.database, model, version, since, ended):
                if iso(window.start) in done:
                    continue
                try:
                    result = self.judge(window)
                except InvalidInput as error:
                    # the window's data cannot be judged, now or later: say so once, go on
                    log.warning("monitoring: %s:%s window %s not judged: %s", model, version,
                                iso(window.start), error)
                    result = {"model": model, "version": version,
                              "window_start": iso(window.start), "window_end": iso(window.end),
                              "rows": window.rows, "note": f"not judged: {error}"}
                if self.evaluate_alerts is not None:
                    # before storing: a failed evaluation leaves the window to the next round
                    self.evaluate_alerts(f"{model}:{version}",
                                         {"model": model, "version": str(version)},
                                         metric_values(result),
                                         datetime.fromtimestamp(window.end, UTC))
                self._store(result)
                results.append(result)
            self._refresh_labels(model, version, since)
        return results

    def _judged(self, model: str, version: int, since: float) -> set[str]:
        table = monitor_results
        query = select(table.c.window_start).where(and_(
            table.c.model == model, table.c.version == version,
            table.c.window_start >= iso(since)))
        with self.database.read() as conn:
            return {row.window_start for row in conn.execute(query)}

    # -- judging one window ----------------------------------------------------------------

    def judge(self, window: WindowProfile) -> dict[str, Any]:
        """The verdict on one window (replicas already merged)."""
        result: dict[str, Any] = {
            "model": window.model, "version": window.version,
            "window_start": iso(window.start), "window_end": iso(window.end),
            "rows": window.rows, "requests": window.requests, "errors": window.errors,
            "error_rate": window.errors / window.requests if window.requests else 0.0,
            "latency_p99_s": _p99(window.latency),
            "columns": [], "dataset_drift": False, "drift_share": 0.0,
            "prediction_drift": False, "quality": [], "quality_violations": 0,
        }
        reference = self._reference(window.model, window.version)
        if reference is None or window.profile is None or window.rows == 0:
            result["note"] = ("no reference data for this version" if reference is None
                              else "no rows in this window")
            return result
        columns = []
        for name in [*reference.features, *reference.outputs]:
            if name not in window.profile.schema or name not in reference.profile.schema:
                continue
            columns.append(self._column(reference, window, name))
        features = [c for c in columns if c["role"] == "feature" and c["method"]]
        if features:
            drifted, share = dataset_drift(
                [_as_result(c) for c in features], self.config.drift_share
            )
            result["dataset_drift"], result["drift_share"] = drifted, share
        result["prediction_drift"] = any(
            c["drift_detected"] for c in columns if c["role"] == "prediction"
        )
        result["columns"] = columns
        findings = [f for f in reference.rules.check(window.profile)
                    if f.column is None or f.column in reference.features]
        findings = [f for f in findings if f.rule != "row_volume"]
        result["quality"] = [f.to_dict() for f in findings]
        result["quality_violations"] = len(findings)
        performance = self._performance(reference, window)
        if performance:
            result["performance"] = performance
        return result

    # -- performance: realised from delayed labels, estimated without them -----------------

    def _performance(self, reference: _Reference, window: WindowProfile) -> dict[str, Any]:
        since = datetime.fromtimestamp(window.start, UTC)
        until = datetime.fromtimestamp(window.end, UTC)
        section: dict[str, Any] = {}
        columns = [f"{PROBABILITY_PREFIX}{label_of(c)}" for c in reference.classes]
        logged_proba = window.profile is not None and all(
            c in window.profile.schema for c in columns)
        if reference.cbpe is not None and self.predictions is not None and logged_proba:
            # (no request of the window asked for probabilities: nothing to read; else a
            # bounded sample of the window's records is enough for the estimate)
            rows = self.predictions.records(window.model, window.version, since, until,
                                            limit=_ESTIMATE_ROWS)
            if len(rows) and all(c in rows.columns for c in columns):
                proba = rows[columns].to_numpy(np.float64)
                # A request that asked for other outputs logged no probabilities.
                proba = proba[np.isfinite(proba).all(axis=1)]
                if len(proba):
                    estimate = reference.cbpe.estimate(proba)
                    accuracy = estimate.get("accuracy")
                    if accuracy is not None:
                        section["accuracy_estimated"] = accuracy.value
                        section["estimated"] = {k: v.to_dict() for k, v in estimate.items()}
                    section["estimated_rows"] = len(proba)
        section.update(self._realised(reference, window.model, window.version, since, until))
        baseline = reference.baseline_accuracy
        latest = section.get("accuracy_realised", section.get("accuracy_estimated"))
        if baseline is not None and latest is not None:
            section["accuracy_drop"] = baseline - latest
        return section

    def _realised(self, reference: _Reference, model: str, version: int, since: datetime,
                  until: datetime) -> dict[str, Any]:
        if self.feedback is None or reference.task not in ("classification", "regression"):
            return {}
        labelled = self.feedback.labels_for(model, version, since, until)
        if len(labelled) and PREDICTION in labelled.columns:
            # a request that asked for other outputs logged no prediction to judge
            labelled = labelled[labelled["label"].notna() & labelled[PREDICTION].notna()]
        if not len(labelled) or PREDICTION not in labelled.columns:
            return {"labels": 0}
        if reference.task == "regression":
            metrics: Mapping[str, Any] = regression_metrics(
                labelled["label"].to_numpy(np.float64),
                labelled[PREDICTION].to_numpy(np.float64))
            return {"labels": len(labelled), "realised": dict(metrics)}
        truth = np.array([label_of(v) for v in labelled["label"]], dtype=object)
        predicted = np.array([label_of(v) for v in labelled[PREDICTION]], dtype=object)
        classes = [label_of(c) for c in reference.classes] or None
        try:
            metrics = classification_metrics(truth, predicted, classes=classes)
        except InvalidInput as error:  # e.g. a label the model does not know
            return {"labels": len(labelled), "note": str(error)}
        return {"labels": len(labelled), "realised": dict(metrics),
                "accuracy_realised": metrics["accuracy"]}

    def _refresh_labels(self, model: str, version: int, since: float) -> None:
        """Labels arrive hours or days late: recompute the realised metrics of judged windows
        whose label count changed since they were stored."""
        if self.feedback is None:
            return
        reference = self._reference(model, version)
        if reference is None:
            return
        table = monitor_results
        query = select(table.c.window_start, table.c.window_end, table.c.result).where(and_(
            table.c.model == model, table.c.version == version,
            table.c.window_start >= iso(since)))
        with self.database.read() as conn:
            stored = list(conn.execute(query))
        labelled = self.feedback.labels_for(
            model, version, datetime.fromtimestamp(since, UTC), self.clock.now())
        if not len(labelled):
            return
        times = pd.to_datetime(labelled["ts"], utc=True)
        for row in stored:
            start = pd.Timestamp(row.window_start)
            end = pd.Timestamp(row.window_end)
            count = int(((times >= start) & (times < end)).sum())
            result = dict(row.result)
            known = (result.get("performance") or {}).get("labels", 0)
            if count == known:
                continue
            performance = dict(result.get("performance") or {})
            performance.update(self._realised(reference, model, version, start.to_pydatetime(),
                                              end.to_pydatetime()))
            baseline = reference.baseline_accuracy
            latest = performance.get("accuracy_realised", performance.get("accuracy_estimated"))
            if baseline is not None and latest is not None:
                performance["accuracy_drop"] = baseline - latest
            result["performance"] = performance
            self._store(result)

    def _column(self, reference: _Reference, window: WindowProfile, name: str) -> dict[str, Any]:
        assert window.profile is not None
        mine, theirs = reference.profile[name], window.profile[name]
        role = "feature" if name in reference.features else (
            "prediction" if name == PREDICTION else "probability")
        entry: dict[str, Any] = {"name": name, "kind": mine.kind, "role": role, "method": None,
                                 "score": None, "threshold": None, "drift_detected": False}
        if mine.kind != theirs.kind:
            entry["note"] = f"{mine.kind} in the reference, {theirs.kind} now"
            return entry
        if is_empty(theirs.sketch) or is_empty(mine.sketch):
            entry["note"] = "no values"
            return entry
        threshold = self._threshold(reference, name, mine.kind, window.rows)
        verdict = column_drift(summarised(mine.sketch), summarised(theirs.sketch), threshold)
        entry.update(method=verdict.method, score=finite_or_none(verdict.score),
                     threshold=finite_or_none(verdict.threshold),
                     drift_detected=verdict.drift_detected)
        return entry

    def _threshold(self, reference: _Reference, name: str, kind: str, rows: int) -> Threshold:
        bucket = min(size_bucket(rows), 65_536)
        key = (name, bucket)
        if key not in reference.thresholds:
            values = calibration_column(reference.sample[name].to_numpy(), kind)
            reference.thresholds[key] = calibrate(
                values, default_method(kind), bucket, alpha=self.config.alpha, n_boot=200,
                tables=self.tables,
            )
        return reference.thresholds[key]

    # -- the version's reference -----------------------------------------------------------

    def _reference(self, model: str, version: int) -> _Reference | None:
        key = (model, version)
        if key not in self._references:
            try:
                self._references[key] = self._load_reference(model, version)
            except Exception as error:
                log.warning("monitoring: no reference for %s:%s: %s", model, version, error)
                self._references[key] = None
        return self._references[key]

    def _load_reference(self, model: str, version: int) -> _Reference | None:
        predictor = self.load_version(f"{model}:{version}")
        info = predictor.manifest.reference
        if info is None:
            return None
        frame = predictor.reference()
        if len(frame) > _CALIBRATION_ROWS:
            frame = frame.sample(_CALIBRATION_ROWS, random_state=0).reset_index(drop=True)
        labels = info.labels_column
        features = [c for c in frame.columns if c != labels]
        outputs = reference_outputs(predictor, frame[features])
        scored = pd.concat([frame[features], outputs], axis=1)
        kinds = {PREDICTION: CATEGORICAL} if predictor.classes else {}
        profile = profile_table(scored, kinds=kinds)
        rules = QualityRules.from_reference(profile_table(frame[features]))
        task = predictor.task.value
        classes = list(predictor.classes or [])
        cbpe = None
        probabilities = [f"{PROBABILITY_PREFIX}{label_of(c)}" for c in classes]
        if task == "classification" and labels and all(c in outputs for c in probabilities):
            try:
                cbpe = CBPE(metrics=("accuracy",)).fit(
                    outputs[probabilities].to_numpy(np.float64),
                    np.array([label_of(v) for v in frame[labels]], dtype=object),
                    [label_of(c) for c in classes],
                )
            except InvalidInput as error:
                log.warning("monitoring: no accuracy estimate for %s:%s: %s", model, version,
                            error)
        baseline = predictor.manifest.provenance.metrics.get("accuracy")
        return _Reference(profile, scored, features, list(outputs.columns), rules, task,
                          classes, cbpe, baseline)

    # -- storing ---------------------------------------------------------------------------

    def _store(self, result: dict[str, Any]) -> None:
        row = {
            "model": result["model"], "version": result["version"],
            "window_start": result["window_start"], "window_end": result["window_end"],
            "rows": result["rows"], "result": result,
            "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        }
        with self.database.write() as conn:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            statement = insert(monitor_results)
            conn.execute(statement.on_conflict_do_update(
                index_elements=["model", "version", "window_start"],
                set_={"result": statement.excluded.result, "rows": statement.excluded.rows,
                      "created_at": statement.excluded.created_at},
            ), [row])


def reference_outputs(predictor: Predictor, features: pd.DataFrame) -> pd.DataFrame:
    """The version's outputs on its reference, named as live windows name them."""
    outputs = predictor.run(features)
    columns: dict[str, Any] = {}
    main = outputs.get("predict")
    if main is not None:
        columns[PREDICTION] = np.asarray(main).reshape(len(features), -1)[:, 0]
    proba = outputs.get("predict_proba")
    if proba is not None and predictor.classes:
        array = np.asarray(proba, dtype=np.float64)
        for i, label in enumerate(predictor.classes):
            columns[f"{PROBABILITY_PREFIX}{label_of(label)}"] = array[:, i]
    return pd.DataFrame(columns, index=features.index)


_ESTIMATE_ROWS = 20_000  # records read per window for the label-free estimate, at most


def metric_values(result: Mapping[str, Any]) -> dict[str, Any]:
    """A window result as the metric values alert rules read (the metric-name contract)."""
    values: dict[str, Any] = {
        "dataset_drift": 1.0 if result.get("dataset_drift") else 0.0,
        "drift_share": float(result.get("drift_share") or 0.0),
        "prediction_drift": 1.0 if result.get("prediction_drift") else 0.0,
        "quality_violations": float(result.get("quality_violations") or 0),
        "error_rate": float(result.get("error_rate") or 0.0),
        "rows": float(result.get("rows") or 0),
        "drift_score": {c["name"]: c["score"] for c in result.get("columns", [])
                        if c.get("role") == "feature" and c.get("score") is not None},
    }
    if result.get("latency_p99_s") is not None:
        values["latency_p99_s"] = float(result["latency_p99_s"])
    performance = result.get("performance") or {}
    for key in ("accuracy_realised", "accuracy_estimated", "accuracy_drop"):
        if performance.get(key) is not None:
            values[key] = float(performance[key])
    return values


def _p99(sketch: NumericSketch | None) -> float | None:
    if sketch is None or sketch.n == 0:
        return None
    return float(sketch.quantiles([0.99])[0])


def _as_result(column: Mapping[str, Any]) -> DriftResult:
    return DriftResult(column["method"], column["score"] or 0.0, column["threshold"] or 0.0,
                       column["drift_detected"])

