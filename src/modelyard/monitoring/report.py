"""A drift report: one reference table and one current table, read once each.

:func:`build_report` profiles both sides in chunks (bounded memory at any size), keeps a uniform
sample of each, and then, per column, calibrates its method's threshold to the current window's
size on the reference sample (:mod:`~modelyard.monitoring.calibration`) and scores the two
profiles. It adds data-quality findings and train-serve skew (:mod:`~modelyard.monitoring.quality`),
multivariate drift on the samples (:mod:`~modelyard.monitoring.multivariate`), and performance
when labels, predictions or probabilities are present (:mod:`~modelyard.monitoring.performance`).

:meth:`Report.to_dict` is the JSON contract of DESIGN.md §3: ``columns`` (``name``, ``kind``,
``method``, ``score``, ``threshold``, ``drift_detected``, ``quality``), ``dataset_drift``,
``drift_share``; more keys may be added, these never change meaning.

Cost bounds, and what they cost in sensitivity:

- thresholds are calibrated on a uniform sample of at most ``calibration_rows`` reference rows
  for windows of at most ``calibration_window`` rows. A smaller reference and a smaller window
  both widen the null distribution, so the false-alarm rate stays at or below ``alpha``; above
  ~25k rows a k = 200 sketch's own rank error dominates the score's noise, so a larger window
  would lower the threshold little (KS 0.020 at 25k rows, 0.019 at 100k);
- multivariate drift uses at most ``multivariate_rows`` rows of each side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import InvalidInput
from modelyard.monitoring import _histograms, cbpe, multivariate, performance
from modelyard.monitoring._sampling import Progress, Scan, Score, scan
from modelyard.monitoring._tables import CATEGORICAL, NUMERICAL, label_of
from modelyard.monitoring.calibration import DriftResult, calibrate, column_drift, dataset_drift
from modelyard.monitoring.columns import (
    calibration_column,
    finite_or_none,
    is_empty,
    summarised,
)
from modelyard.monitoring.drift import METHODS, default_method
from modelyard.monitoring.nulls import NullTables
from modelyard.monitoring.profile import TableProfile
from modelyard.monitoring.quality import Finding, QualityRules
from modelyard.monitoring.sketches import CategoricalSketch, NumericSketch
from modelyard.monitoring.skew import skew

REPORT_FORMAT = 1
FEATURE, TARGET, PREDICTION, PROBABILITY = "feature", "target", "prediction", "probability"


@dataclass(frozen=True)
class Roles:
    """Which columns are not features: the label, the model's prediction, its probabilities
    (class label → column), and the task when it cannot be told from them."""

    target: str | None = None
    prediction: str | None = None
    probabilities: Mapping[str, str] = field(default_factory=dict)
    task: str | None = None  # "classification" | "regression"

    def of(self, name: str) -> str:
        if name == self.target:
            return TARGET
        if name == self.prediction:
            return PREDICTION
        if name in self.probabilities.values():
            return PROBABILITY
        return FEATURE


@dataclass(frozen=True)
class ReportOptions:
    """How a report compares the two tables (see the module docstring for the cost bounds).

    ``method`` applies one drift method to every column it fits; ``methods`` names one per
    column; otherwise the default per kind. ``alpha`` is the false-alarm rate per column,
    ``drift_share`` the share of drifted features that is dataset drift, ``min_effect`` a score
    below which a significant shift is not drift. ``quality`` overrides the learned quality
    rules (the YAML of :func:`modelyard.monitoring.quality.load_overrides`). ``tables`` keeps
    the numerical null tables (:class:`~modelyard.monitoring.nulls.NullTables`; by default the
    process's, in memory).
    """

    method: str | None = None
    methods: Mapping[str, str] = field(default_factory=dict)
    alpha: float = 0.01
    drift_share: float = 0.5
    min_effect: float = 0.0
    n_boot: int = 200
    seed: int = 0
    calibration_rows: int = 100_000
    calibration_window: int = 25_000
    multivariate: bool = True
    multivariate_rows: int = 20_000
    quality: Mapping[str, Any] | None = None
    ignore: Sequence[str] = ()
    chunk_rows: int = 250_000
    k: int = 200
    tables: NullTables | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ColumnReport:
    """One column's drift verdict, quality findings and histograms."""

    name: str
    kind: str
    role: str
    method: str | None
    score: float | None
    threshold: float | None
    drift_detected: bool
    quality: tuple[Finding, ...]
    reference: dict[str, Any]
    current: dict[str, Any]
    histogram: dict[str, Any]
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "role": self.role, "method": self.method,
            "score": self.score, "threshold": self.threshold,
            "drift_detected": self.drift_detected,
            "quality": [finding.to_dict() for finding in self.quality],
            "note": self.note, "reference": self.reference, "current": self.current,
            "histogram": self.histogram,
        }


@dataclass(frozen=True)
class Report:
    """The outcome of :func:`build_report`; :meth:`to_dict` is the JSON contract."""

    columns: tuple[ColumnReport, ...]
    dataset_drift: bool
    drift_share: float
    sides: dict[str, dict[str, Any]]
    options: dict[str, Any]
    quality: tuple[Finding, ...]
    multivariate: tuple[dict[str, Any], ...]
    performance: dict[str, Any] | None
    created_at: str

    @property
    def drifted(self) -> list[str]:
        return [column.name for column in self.columns if column.drift_detected]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "created_at": self.created_at,
            "reference": self.sides["reference"],
            "current": self.sides["current"],
            "options": self.options,
            "columns": [column.to_dict() for column in self.columns],
            "dataset_drift": self.dataset_drift,
            "drift_share": self.drift_share,
            "drifted_columns": self.drifted,
            "quality": [finding.to_dict() for finding in self.quality],
            "multivariate": list(self.multivariate),
            **({"performance": self.performance} if self.performance is not None else {}),
        }


def build_report(
    reference: Any,
    current: Any,
    *,
    roles: Roles | None = None,
    options: ReportOptions | None = None,
    score: Score | None = None,
    progress: Progress | None = None,
) -> Report:
    """Compare ``current`` with ``reference``: drift per column, quality, multivariate drift,
    performance.

    Parameters
    ----------
    reference, current
        DataFrames, Arrow tables, 2-D arrays, or paths of Parquet or CSV files. ``current``
        may also be a :class:`TableProfile` (e.g. merged live windows): drift, quality and skew
        are compared on it; the checks that need rows (multivariate, performance) say so.
    roles
        The label, prediction and probability columns; every other column is a feature.
    options
        :class:`ReportOptions`.
    score
        Adds a model's outputs (the ``roles``' prediction and probability columns) to a chunk
        of rows; called once per chunk of each side.
    progress
        Called as ``progress(step, done, total)`` while reading and comparing.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> before = pd.DataFrame({"x": rng.normal(size=4000), "plan": rng.choice(["a", "b"], 4000)})
    >>> after = pd.DataFrame({"x": rng.normal(1, 1, 1000), "plan": rng.choice(["a", "b"], 1000)})
    >>> report = build_report(before, after, options=ReportOptions(multivariate=False))
    >>> report.drifted, report.drift_share
    (['x'], 0.5)
    """
    roles = roles or Roles()
    options = options or ReportOptions()
    _check_options(options)
    rng = np.random.default_rng(options.seed)
    keep = [name for name in (roles.target, roles.prediction, *roles.probabilities.values())
            if name]
    sample_rows = max(options.calibration_rows, options.multivariate_rows)
    # A classifier's labels and predictions are categories, whatever their dtype (0/1 ints).
    classification = roles.task == "classification" or (roles.task is None
                                                        and bool(roles.probabilities))
    labels = {name: CATEGORICAL for name in (roles.target, roles.prediction)
              if name and classification}
    ref = scan(reference, step="reading reference", chunk_rows=options.chunk_rows,
               sample_rows=sample_rows, rng=rng, kinds=labels, keep=keep, score=score,
               progress=progress, k=options.k)
    cur = scan(current, step="reading current", chunk_rows=options.chunk_rows,
               sample_rows=options.multivariate_rows, rng=rng, kinds=ref.profile.schema,
               keep=keep, score=score, progress=progress, k=options.k)
    rules = QualityRules.from_reference(ref.profile)
    if options.quality:
        rules = rules.with_overrides(options.quality)
    findings = rules.check(cur.profile) + skew(ref.profile, cur.profile)
    by_column: dict[str | None, list[Finding]] = {}
    for finding in findings:
        by_column.setdefault(finding.column, []).append(finding)

    names = _compared(ref.profile, cur.profile, options.ignore)
    columns = []
    for done, name in enumerate(names, 1):
        columns.append(_column(name, ref, cur, roles, options, by_column.get(name, [])))
        if progress is not None:
            progress("comparing columns", done, len(names))
    features = [column for column in columns if column.role == FEATURE and column.method]
    drifted, share = (
        dataset_drift(_verdicts(features), options.drift_share) if features else (False, 0.0)
    )
    compared = set(names)
    table_findings = tuple(
        finding for finding in findings if finding.column is None or finding.column not in compared
    )
    feature_names = [column.name for column in features]
    return Report(
        columns=tuple(columns),
        dataset_drift=drifted,
        drift_share=share,
        sides={
            "reference": {"source": ref.what, "rows": ref.profile.rows},
            "current": {"source": cur.what, "rows": cur.profile.rows},
        },
        options=_options_dict(options, cur.profile.rows),
        quality=table_findings,
        multivariate=_multivariate(ref, cur, feature_names, options, progress),
        performance=_performance(ref, cur, roles),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _check_options(options: ReportOptions) -> None:
    for name in [options.method, *options.methods.values()]:
        if name is not None and name not in METHODS:
            raise InvalidInput(
                f"unknown drift method {name!r}; choose from {', '.join(sorted(METHODS))}"
            )
    if not 0 < options.alpha < 1:
        raise InvalidInput(f"alpha must be between 0 and 1, not {options.alpha!r}")
    for label, value in (("calibration_rows", options.calibration_rows),
                         ("calibration_window", options.calibration_window),
                         ("multivariate_rows", options.multivariate_rows)):
        if value < 100:
            raise InvalidInput(f"{label} must be at least 100, not {value!r}")


def _compared(reference: TableProfile, current: TableProfile, ignore: Sequence[str]) -> list[str]:
    theirs = set(current.schema)
    common = [name for name in reference.schema if name in theirs and name not in set(ignore)]
    if not common:
        raise InvalidInput(
            "the reference and current tables share no column: the reference has "
            f"{_names(reference.schema)}; the current has {_names(current.schema)}"
        )
    return common


def _names(schema: Mapping[str, str]) -> str:
    names = list(schema)
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def _verdicts(columns: Sequence[ColumnReport]) -> list[DriftResult]:
    return [DriftResult(c.method or "", c.score or 0.0, c.threshold or 0.0, c.drift_detected)
            for c in columns]


def _method_for(name: str, kind: str, options: ReportOptions) -> str:
    chosen = options.methods.get(name) or options.method
    if chosen and kind in METHODS[chosen].kinds:
        return chosen
    if name in options.methods:
        raise InvalidInput(
            f"the drift method {chosen!r} does not compare {kind} columns ({name!r})"
        )
    return default_method(kind)


def _column(
    name: str, ref: Scan, cur: Scan, roles: Roles, options: ReportOptions,
    quality: list[Finding],
) -> ColumnReport:
    mine, theirs = ref.profile[name], cur.profile[name]
    kind = mine.kind
    base: dict[str, Any] = {
        "name": name, "kind": kind, "role": roles.of(name), "quality": tuple(quality),
        "reference": _summary(mine.sketch), "current": _summary(theirs.sketch),
        "histogram": _histogram(mine.sketch, theirs.sketch),
    }
    skipped = _why_not(mine.sketch, theirs.sketch)
    if skipped:
        return ColumnReport(method=None, score=None, threshold=None, drift_detected=False,
                            note=skipped, **base)
    method = _method_for(name, kind, options)
    values = calibration_column(ref.sample[name].to_numpy(), kind)
    threshold = calibrate(
        values, method, min(cur.profile.rows, options.calibration_window), alpha=options.alpha,
        n_boot=options.n_boot, seed=options.seed, k=options.k, min_effect=options.min_effect,
        tables=options.tables,
    )
    result = column_drift(summarised(mine.sketch), summarised(theirs.sketch), threshold)
    return ColumnReport(method=result.method, score=finite_or_none(result.score),
                        threshold=finite_or_none(result.threshold),
                        drift_detected=result.drift_detected, **base)


def _why_not(reference: Any, current: Any) -> str | None:
    for side, sketch in (("reference", reference), ("current", current)):
        if is_empty(sketch):
            return f"no values in the {side}: drift not computed"
    return None


def _summary(sketch: NumericSketch | CategoricalSketch) -> dict[str, Any]:
    if isinstance(sketch, NumericSketch):
        s = sketch.result()
        return {
            "count": s.count, "missing": s.missing, "pos_inf": s.pos_inf, "neg_inf": s.neg_inf,
            "min": s.min, "max": s.max, "mean": s.mean, "std": s.std,
            "quantiles": {str(rank): value for rank, value in s.quantiles.items()},
        }
    c = sketch.result()
    top = dict(sorted(c.counts.items(), key=lambda item: -item[1])[:_histograms.TOP_LABELS])
    return {"count": c.count, "missing": c.missing, "distinct": c.distinct, "top": top}


def _histogram(reference: Any, current: Any) -> dict[str, Any]:
    if isinstance(reference, NumericSketch) and isinstance(current, NumericSketch):
        return _histograms.numeric(reference, current)
    return _histograms.categorical(reference, current)


def _options_dict(options: ReportOptions, current_rows: int) -> dict[str, Any]:
    return {
        "alpha": options.alpha, "drift_share": options.drift_share,
        "min_effect": options.min_effect, "n_boot": options.n_boot, "seed": options.seed,
        "calibration_rows": options.calibration_rows,
        "calibration_window": min(current_rows, options.calibration_window),
        "method": options.method, "methods": dict(options.methods), "k": options.k,
    }


def _multivariate(
    ref: Scan, cur: Scan, features: list[str], options: ReportOptions,
    progress: Progress | None,
) -> tuple[dict[str, Any], ...]:
    if not options.multivariate or len(features) < 2:
        return ()
    if ref.sample.empty or cur.sample.empty:
        note = "needs rows, and one side is a stored profile"
        return tuple({"method": name, "drift_detected": False, "note": note}
                     for name in ("domain_classifier", "pca_reconstruction"))
    limit = options.multivariate_rows
    reference = ref.sample[features].iloc[:limit]
    current = cur.sample[features].iloc[:limit]
    checks: list[tuple[str, Callable[[], multivariate.MultivariateResult]]] = [
        ("domain_classifier", lambda: multivariate.domain_classifier(
            reference, current, alpha=options.alpha, seed=options.seed)),
        ("pca_reconstruction", lambda: multivariate.pca_reconstruction(
            reference, current, alpha=options.alpha, seed=options.seed)),
    ]
    results = []
    for done, (name, check) in enumerate(checks, 1):
        try:
            results.append(check().to_dict())
        except InvalidInput as error:
            results.append({"method": name, "drift_detected": False, "note": str(error)})
        if progress is not None:
            progress("multivariate drift", done, len(checks))
    return tuple(results)


def _performance(ref: Scan, cur: Scan, roles: Roles) -> dict[str, Any] | None:
    """Realised metrics where the current side has labels; CBPE where it has probabilities
    and the reference has labels and probabilities."""
    target, prediction = roles.target, roles.prediction
    classes = list(roles.probabilities)
    proba_columns = list(roles.probabilities.values())
    has_proba = bool(proba_columns) and all(c in cur.kept for c in proba_columns)
    task = roles.task or ("classification" if classes else _guess_task(ref, target, prediction))
    section: dict[str, Any] = {"task": task}
    y_true = cur.kept.get(target) if target else None
    y_pred = cur.kept.get(prediction) if prediction else None
    proba = np.column_stack([cur.kept[c] for c in proba_columns]) if has_proba else None
    if y_true is not None and (y_pred is not None or proba is not None):
        if task == "regression":
            assert y_pred is not None
            section["realised"] = performance.regression_metrics(y_true, y_pred)
        else:
            section["realised"] = performance.classification_metrics(
                _labels(y_true), None if y_pred is None else _labels(y_pred), proba,
                classes=classes or None,
            )
    ref_ready = target in ref.kept if target else False
    if task == "classification" and proba is not None and ref_ready and all(
        c in ref.kept for c in proba_columns
    ):
        assert target is not None
        estimator = cbpe.CBPE().fit(
            np.column_stack([ref.kept[c] for c in proba_columns]), _labels(ref.kept[target]),
            classes,
        )
        section["estimated"] = {
            name: estimate.to_dict() for name, estimate in estimator.estimate(proba).items()
        }
    return section if len(section) > 1 else None


def _labels(values: np.ndarray) -> np.ndarray:
    return np.array([label_of(v) for v in values], dtype=object)


def _guess_task(ref: Scan, target: str | None, prediction: str | None) -> str:
    column = target or prediction
    if column is None or column not in ref.profile.schema:
        return "classification"
    if ref.profile.schema[column] != NUMERICAL:
        return "classification"
    values = pd.to_numeric(ref.sample[column], errors="coerce").dropna().to_numpy(np.float64)
    whole = bool(np.all(np.mod(values, 1) == 0))
    return "classification" if whole and np.unique(values).size <= 20 else "regression"
