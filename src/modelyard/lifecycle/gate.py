"""The evaluation gate: does a retrained candidate beat the champion on recent labelled data?

Both models predict the same holdout (recent labelled rows neither was trained on); the
metrics come from :mod:`modelyard.monitoring.performance`. The gate passes when

- the holdout has at least ``min_rows`` labelled rows,
- the **primary** metric (the first of ``metrics``) improves by at least ``min_improvement``,
- no other metric gets worse by more than ``max_regression``.

Differences are absolute and measured in the metric's better direction, so ``+0.02`` means
"better by 0.02" for accuracy (higher is better) and for RMSE (lower is better) alike. A
metric the candidate leaves undefined (F1 when it never predicts the positive class) fails;
one the champion leaves undefined cannot be beaten, so it passes. A model that raises on the
holdout fails the gate with the error as the reason.

>>> config = load_gate({"metrics": ["accuracy", "f1"], "min_improvement": 0.01})
>>> config.metrics, config.max_regression, config.min_rows
(('accuracy', 'f1'), 0.01, 200)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import InvalidInput, first_line
from modelyard.monitoring.performance import classification_metrics, regression_metrics
from modelyard.types import Task

Predict = Callable[[pd.DataFrame], Any]

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "r2")
HIGHER_IS_BETTER = {"accuracy": True, "precision": True, "recall": True, "f1": True,
                    "roc_auc": True, "log_loss": False, "mae": False, "rmse": False, "r2": True}
NEEDS_PROBA = ("roc_auc", "log_loss")
DEFAULT_METRICS = {Task.CLASSIFICATION: ("accuracy", "f1"), Task.REGRESSION: ("rmse", "mae")}
_TOLERANCE = 1e-12  # float noise: an equal model does improve by "+0.000"


@dataclass(frozen=True)
class GateConfig:
    """What a candidate must achieve; see the module doc.

    ``metrics`` empty means the task's defaults: accuracy and F1 for classification, RMSE and
    MAE for regression.

    >>> GateConfig(metrics=("rmse",), max_regression=0.0).metrics
    ('rmse',)
    >>> GateConfig(metrics=("acuracy",))
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: unknown gate metric 'acuracy'; known: accuracy, ...
    """

    metrics: tuple[str, ...] = ()
    min_improvement: float = 0.0
    max_regression: float = 0.01
    min_rows: int = 200

    def __post_init__(self) -> None:
        if isinstance(self.metrics, str) or not isinstance(self.metrics, Sequence) or not all(
                isinstance(m, str) for m in self.metrics):
            raise InvalidInput("gate metrics must be a list of metric names")
        object.__setattr__(self, "metrics", tuple(self.metrics))
        for name in self.metrics:
            if name not in HIGHER_IS_BETTER:
                raise InvalidInput(f"unknown gate metric {name!r}; known: "
                                   f"{', '.join(HIGHER_IS_BETTER)}")
        if len(set(self.metrics)) != len(self.metrics):
            raise InvalidInput("gate metrics name a metric twice")
        tasks = {_task_of(name) for name in self.metrics}
        if len(tasks) > 1:
            raise InvalidInput("gate metrics mix classification and regression metrics: "
                               f"{', '.join(self.metrics)}")
        if not _number(self.min_improvement):
            raise InvalidInput(f"min_improvement must be a number, not {self.min_improvement!r}")
        if not _number(self.max_regression) or self.max_regression < 0:
            raise InvalidInput("max_regression must be a number of 0 or more, not "
                               f"{self.max_regression!r}")
        if isinstance(self.min_rows, bool) or not isinstance(self.min_rows, int) or (
                self.min_rows < 1):
            raise InvalidInput(f"min_rows must be a whole number of 1 or more, not "
                               f"{self.min_rows!r}")
        object.__setattr__(self, "min_improvement", float(self.min_improvement))
        object.__setattr__(self, "max_regression", float(self.max_regression))

    def metrics_for(self, task: Task) -> tuple[str, ...]:
        """The metrics compared for ``task``: the configured ones, else its defaults."""
        if task not in DEFAULT_METRICS:
            raise InvalidInput(f"the gate compares classification or regression models, not "
                               f"task {task.value!r}")
        chosen = self.metrics or DEFAULT_METRICS[task]
        wrong = [name for name in chosen if _task_of(name) is not task]
        if wrong:
            raise InvalidInput(f"gate metric(s) {', '.join(wrong)} do not apply to "
                               f"{task.value}; use {', '.join(_known(task))}")
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": list(self.metrics), "min_improvement": self.min_improvement,
                "max_regression": self.max_regression, "min_rows": self.min_rows}


def load_gate(mapping: Mapping[str, Any] | None) -> GateConfig:
    """A :class:`GateConfig` from settings or a config file's ``gate`` table.

    >>> load_gate({"metrics": "rmse", "max_regression": 0}).metrics
    ('rmse',)
    >>> load_gate({"min_rowz": 10})
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: unknown gate setting 'min_rowz'; known: metrics, ...
    """
    if mapping is None:
        return GateConfig()
    if not isinstance(mapping, Mapping):
        raise InvalidInput(f"the gate settings must be a table of names to values, not "
                           f"{type(mapping).__name__}")
    known = ("metrics", "min_improvement", "max_regression", "min_rows")
    for key in mapping:
        if key not in known:
            raise InvalidInput(f"unknown gate setting {key!r}; known: {', '.join(known)}")
    values = dict(mapping)
    metrics = values.pop("metrics", ())
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not isinstance(metrics, Sequence):
        raise InvalidInput("gate metrics must be a list of metric names")
    return GateConfig(metrics=tuple(metrics), **values)


@dataclass(frozen=True)
class MetricComparison:
    """One metric of the candidate and the champion; ``delta`` is candidate - champion and
    ``improvement`` the same difference in the metric's better direction."""

    name: str
    candidate: float | None
    champion: float | None
    higher_is_better: bool
    primary: bool
    ok: bool
    reason: str

    @property
    def delta(self) -> float | None:
        if self.candidate is None or self.champion is None:
            return None
        return self.candidate - self.champion

    @property
    def improvement(self) -> float | None:
        delta = self.delta
        return None if delta is None else (delta if self.higher_is_better else -delta)

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "champion": self.champion, "delta": self.delta,
                "improvement": self.improvement, "higher_is_better": self.higher_is_better,
                "primary": self.primary, "ok": self.ok}


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: ``passed``, the rows judged, each metric compared, and why."""

    passed: bool
    rows: int
    task: Task
    config: GateConfig
    metrics: dict[str, MetricComparison] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the audit log."""
        return {"passed": self.passed, "rows": self.rows, "task": self.task.value,
                "config": self.config.to_dict(),
                "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
                "reasons": list(self.reasons)}


def evaluate_gate(
    candidate_predict: Predict,
    champion_predict: Predict,
    holdout: pd.DataFrame,
    labels_column: str,
    config: GateConfig,
    task: Task | str,
    *,
    candidate_proba: Predict | None = None,
    champion_proba: Predict | None = None,
    classes: Sequence[Any] | None = None,
    features: Sequence[str] | None = None,
) -> GateResult:
    """Compare the candidate with the champion on ``holdout``.

    Parameters
    ----------
    candidate_predict, champion_predict
        Take a DataFrame of features, return one prediction per row (labels for classifiers).
    holdout
        Recent labelled rows: the features and ``labels_column``; rows without a label are
        left out.
    labels_column
        The column holding the true labels.
    config
        What the candidate must achieve.
    task
        ``"classification"`` or ``"regression"``.
    candidate_proba, champion_proba
        Class probabilities (one column per class in ``classes`` order); needed for
        ``roc_auc`` and ``log_loss``.
    classes
        The models' classes in their probability columns' order (default: the sorted labels).
    features
        The columns the models take (default: every column but ``labels_column``).

    Raises
    ------
    InvalidInput
        A configuration that does not fit the task, a missing labels column or feature, a
        probability metric without probability functions.

    Examples
    --------
    >>> holdout = pd.DataFrame({"x": [0, 1, 2, 3], "y": [0, 1, 1, 0]})
    >>> result = evaluate_gate(lambda X: [0, 1, 1, 0], lambda X: [0, 1, 1, 1], holdout, "y",
    ...                        GateConfig(metrics=("accuracy",), min_rows=4), "classification")
    >>> result.passed, result.reasons
    (True, ['accuracy 1.000 vs champion 0.750: +0.250 ≥ required +0.000'])
    """
    the_task = _as_task(task)
    names = config.metrics_for(the_task)
    if labels_column not in holdout.columns:
        raise InvalidInput(f"the holdout has no labels column {labels_column!r}; its columns: "
                           f"{', '.join(map(str, holdout.columns))}")
    probabilities = [name for name in names if name in NEEDS_PROBA]
    if probabilities and (candidate_proba is None or champion_proba is None):
        raise InvalidInput(f"gate metric(s) {', '.join(probabilities)} need class "
                           "probabilities: pass candidate_proba and champion_proba")
    labelled = holdout[holdout[labels_column].notna()]
    rows = len(labelled)
    if rows < config.min_rows:
        return GateResult(False, rows, the_task, config, reasons=[
            f"only {rows} labelled rows; the gate needs {config.min_rows}"])
    columns = list(features) if features is not None else [
        c for c in labelled.columns if c != labels_column]
    missing = [c for c in columns if c not in labelled.columns]
    if missing:
        raise InvalidInput(f"the holdout lacks feature column(s) {', '.join(map(repr, missing))}")
    X, y = labelled[columns], labelled[labels_column].to_numpy()

    scores: dict[str, dict[str, float | None]] = {}
    for role, predict, proba in (("candidate", candidate_predict, candidate_proba),
                                 ("champion", champion_predict, champion_proba)):
        try:
            predicted = np.asarray(predict(X))
            probabilities_of = np.asarray(proba(X)) if proba is not None else None
        except Exception as error:  # the model's own failure: the gate says so and fails
            message = first_line(str(error)) or type(error).__name__
            return GateResult(False, rows, the_task, config, reasons=[
                f"the {role} failed on the holdout: {message}"])
        if predicted.ndim == 0 or len(predicted) != rows:
            size = 1 if predicted.ndim == 0 else len(predicted)
            return GateResult(False, rows, the_task, config, reasons=[
                f"the {role} gave {size} predictions for {rows} rows"])
        scores[role] = _scores(the_task, y, predicted, probabilities_of, classes)

    compared = {
        name: _compare(name, scores["candidate"].get(name), scores["champion"].get(name),
                       primary=index == 0, config=config)
        for index, name in enumerate(names)
    }
    return GateResult(all(m.ok for m in compared.values()), rows, the_task, config, compared,
                      [m.reason for m in compared.values()])


def _scores(task: Task, y: Any, predicted: Any, proba: Any,
            classes: Sequence[Any] | None) -> dict[str, float | None]:
    if task is Task.REGRESSION:
        return dict(_numbers(regression_metrics(y, predicted)))
    return dict(_numbers(classification_metrics(y, predicted, proba, classes)))


def _numbers(metrics: Mapping[str, Any]) -> Mapping[str, float | None]:
    return {name: (None if value is None else float(value)) for name, value in metrics.items()
            if name in HIGHER_IS_BETTER}


def _compare(name: str, candidate: float | None, champion: float | None, *, primary: bool,
             config: GateConfig) -> MetricComparison:
    higher = HIGHER_IS_BETTER[name]
    direction = "" if higher else " (lower is better)"
    if candidate is None or not math.isfinite(candidate):
        return MetricComparison(name, candidate, champion, higher, primary, False,
                                f"{name} is undefined for the candidate")
    if champion is None or not math.isfinite(champion):
        return MetricComparison(name, candidate, champion, higher, primary, True,
                                f"{name} {candidate:.3f}{direction}: the champion's is "
                                "undefined, so it cannot be beaten")
    gain = (candidate - champion) if higher else (champion - candidate)
    head = f"{name} {candidate:.3f} vs champion {champion:.3f}{direction}: {gain:+.3f}"
    if primary:
        ok = gain >= config.min_improvement - _TOLERANCE
        reason = (f"{head} ≥ required {config.min_improvement:+.3f}" if ok
                  else f"{head} < required {config.min_improvement:+.3f}")
    else:
        ok = gain >= -config.max_regression - _TOLERANCE
        reason = (f"{head} (a regression of at most {config.max_regression:.3f} is allowed)"
                  if ok else f"{head}: worse by more than the allowed "
                             f"{config.max_regression:.3f}")
    return MetricComparison(name, candidate, champion, higher, primary, ok, reason)


def _as_task(task: Task | str) -> Task:
    try:
        return Task(task)
    except ValueError:
        raise InvalidInput(f"task {task!r} is unknown; the gate takes classification or "
                           "regression") from None


def _task_of(metric: str) -> Task:
    return Task.REGRESSION if metric in REGRESSION_METRICS else Task.CLASSIFICATION


def _known(task: Task) -> tuple[str, ...]:
    return REGRESSION_METRICS if task is Task.REGRESSION else CLASSIFICATION_METRICS


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
        value)
