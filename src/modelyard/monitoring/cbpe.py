"""Model performance without labels: Confidence-based Performance Estimation (NannyML).

:class:`CBPE` estimates a classifier's performance from its own probabilities (with labels,
:mod:`~modelyard.monitoring.performance` computes it). If P(y | x) is what it was on the
reference (covariate shift, no concept drift), a calibrated probability is the chance that the
row is of that class, and summing them over a window gives the expected confusion matrix, hence
the expected metrics.

1. **Calibrate** on the reference, labelled rows the model was not trained on: temperature
   scaling (Guo et al. 2017), Platt (1999) or isotonic (Zadrozny & Elkan 2002) maps.
   Multiclass maps are top-label (Gupta & Ramdas 2022): per class, one map for the rows the
   model predicts as that class and one for the others; one-vs-rest maps renormalised, as
   NannyML does, under-estimated accuracy by about a point on 4-class data even unshifted.
   ``"auto"`` keeps, among raw, temperature, Platt and isotonic, the lowest Brier score on
   rows each map was not fitted on (5-fold cross-fitting) that passes the check below.
2. **Check** on those held-out rows the accuracy the probabilities expect against the one
   observed, and Spiegelhalter's (1986) z. Beyond 3 standard errors — or when the reference
   is too small, holds one class, or gets the same probabilities for every row (then raw
   probabilities are used) — every estimate carries "probabilities cannot be calibrated: …".
3. **Estimate**: the prediction is the argmax (or the model's own ``y_pred``); expected true
   positives of class c are the calibrated P(c) summed over rows predicted c, expected class
   sizes P(c) summed over all rows. Accuracy, precision, recall and F1 are these ratios
   (binary: of ``classes[1]``; multiclass: macro averages). ROC AUC is the AUC of the raw
   scores with calibrated probabilities as soft labels (one-vs-rest, macro).

The band of an :class:`Estimate` is where the metric realised on the window falls with
probability ``confidence`` if P(y | x) did not change. It is the percentile interval of the
metric over 500 seeded draws of labels from the calibrated probabilities (for accuracy, the
Poisson-binomial count of correct rows, variance Σ p(1 - p)), widened by √(1 + rows /
reference rows): the reference's labels pin the calibration down about as well as a window of
the reference's size pins down a metric. Windows over 5,000 rows are drawn on a seeded
subsample and the spread scaled by √(5000 / rows). The band does not cover a calibration that
holds on the reference but not where a shift moves rows (a model whose scores miss how its
error depends on x; up to 2 points under strong shifts in our tests), nor concept drift, which
no label-free estimate can see.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata  # type: ignore[import-untyped, unused-ignore]
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from modelyard.errors import InvalidInput
from modelyard.monitoring._labels import (
    Floats,
    _classes,
    _column,
    _indices,
    _name,
    _probabilities,
)
from modelyard.monitoring._probability_maps import (
    apply_maps,
    brier,
    checked_maps,
    fit_maps,
    miscalibration,
)

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
CALIBRATIONS = ("auto", "isotonic", "platt", "temperature")
_CANDIDATES = ("temperature", "platt", "isotonic")
_FOLDS = 5
_MIN_ROWS = 50  # per reference; and _FOLDS rows of each class
_DRAWS = 500
_SIMULATED_ROWS = 5000  # larger windows: draws on a subsample, spread scaled by √(m/n)
_Z_LIMIT = 3.0
_FORMAT = 1


@dataclass(frozen=True)
class Estimate:
    """An estimated metric on a window of ``rows`` rows, with its band at ``confidence``.

    ``value``, ``lower`` and ``upper`` are None when the metric is undefined on the window (a
    warning says why); ``warnings`` also says when the probabilities could not be calibrated.
    """

    metric: str
    value: float | None
    lower: float | None
    upper: float | None
    rows: int
    confidence: float
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self) | {"warnings": list(self.warnings)}


# --- expected metrics from (expected or drawn) counts; arrays have a leading draw axis


def _nanmean(values: Floats) -> Floats:
    finite = ~np.isnan(values)
    count = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _confusion(
    metric: str, hits: Floats, sizes: Floats, predicted: Floats, rows: int, binary: bool
) -> Floats:
    """``hits``/``sizes``: (draws, classes) true positives and class sizes; ``predicted``:
    (classes,) rows predicted as each class."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "accuracy":
            result: Floats = hits.sum(axis=1) / rows
            return result
        if metric == "precision":
            per_class = hits / predicted
        elif metric == "recall":
            per_class = hits / sizes
        else:
            per_class = 2 * hits / (predicted + sizes)
    return per_class[:, 1] if binary else _nanmean(per_class)


def _expected_auc(raw: Floats, calibrated: Floats, columns: Sequence[int]) -> float:
    per_class = []
    for c in columns:
        p = calibrated[:, c]
        if p.sum() <= 0 or p.sum() >= p.size:
            continue
        score = np.concatenate([raw[:, c], raw[:, c]])
        labels = np.concatenate([np.ones(p.size), np.zeros(p.size)])
        weights = np.concatenate([p, 1 - p])
        per_class.append(roc_auc_score(labels, score, sample_weight=weights))
    return float(np.mean(per_class)) if per_class else math.nan


def _drawn_auc(raw: Floats, drawn: NDArray[np.intp], columns: Sequence[int]) -> Floats:
    """Mann-Whitney AUC of each draw's labels, per class, averaged."""
    rows = raw.shape[0]
    per_class = []
    for c in columns:
        positive = drawn == c
        count = positive.sum(axis=1).astype(np.float64)
        ranks = np.where(positive, rankdata(raw[:, c]), 0.0).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_class.append((ranks - count * (count + 1) / 2) / (count * (rows - count)))
    return _nanmean(np.column_stack(per_class))


class CBPE:
    """Confidence-based performance estimation of a classifier without labels (NannyML's CBPE).

    ``fit`` learns calibration maps on a labelled reference scored by the model; ``estimate``
    turns a window's probabilities into :class:`Estimate` s. The module docstring describes the
    method, the band and its limits.

    Parameters
    ----------
    metrics
        Any of :data:`METRICS`. Binary metrics are of ``classes[1]``; multiclass ones are macro
        averages (one-vs-rest for ROC AUC).
    calibration
        ``"auto"`` (raw, temperature, Platt or isotonic, whichever scores best on held-out
        reference rows), or one of ``"temperature"``, ``"platt"``, ``"isotonic"`` (that map,
        unless the raw probabilities score better).
    confidence
        The band's coverage.
    seed
        Seeds the cross-fitting folds and the band's draws.

    Examples
    --------
    A model whose probabilities are too confident: it says 0.95 where it is right 85 % of the
    time, which CBPE learns on the reference and corrects on a shifted window.

    >>> rng = np.random.default_rng(0)
    >>> truth = rng.uniform(0.05, 0.95, 4000)            # P(y = 1 | x)
    >>> said = np.where(truth > 0.5, 1 - (1 - truth) / 3, truth / 3)
    >>> labels = (rng.random(4000) < truth).astype(int)
    >>> cbpe = CBPE(metrics=("accuracy",)).fit(said, labels, classes=[0, 1])
    >>> cbpe.method_
    'isotonic'
    >>> window = rng.uniform(0.3, 0.7, 2000)              # a shift to harder rows
    >>> window_said = np.where(window > 0.5, 1 - (1 - window) / 3, window / 3)
    >>> accuracy = cbpe.estimate(window_said)["accuracy"]
    >>> round(accuracy.value, 2), round(accuracy.lower, 2), round(accuracy.upper, 2)
    (0.6, 0.57, 0.62)
    >>> round(float(np.mean(np.maximum(window, 1 - window))), 2)  # the true expected accuracy
    0.6
    """

    def __init__(
        self,
        metrics: Sequence[str] = ("accuracy", "f1", "precision", "recall", "roc_auc"),
        calibration: str = "auto",
        confidence: float = 0.95,
        seed: int = 0,
    ) -> None:
        self.metrics = tuple(metrics)
        self.calibration = calibration
        self.confidence = confidence
        self.seed = seed

    def __repr__(self) -> str:
        return (f"CBPE(metrics={self.metrics!r}, calibration={self.calibration!r}, "
                f"confidence={self.confidence!r}, seed={self.seed!r})")

    def _check_parameters(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise InvalidInput(f"metrics must be among {', '.join(METRICS)}, not {unknown}")
        if self.calibration not in CALIBRATIONS:
            raise InvalidInput(f"calibration must be one of {', '.join(CALIBRATIONS)}, "
                               f"not {self.calibration!r}")
        if not isinstance(self.confidence, float | int) or not 0 < self.confidence < 1:
            raise InvalidInput(f"confidence must be between 0 and 1, not {self.confidence!r}")

    def fit(self, reference_proba: Any, reference_labels: Any, classes: Any) -> Self:
        """Learn calibration maps from a labelled reference the model has not been trained on.

        ``reference_proba`` has one column per class in the order of ``classes`` (the model's
        ``classes_``); a binary model's 1-D probability of ``classes[1]`` is accepted.
        """
        self._check_parameters()
        self.classes_ = _classes(classes)
        truth = _indices(_column(reference_labels, "reference_labels"), self.classes_,
                         "reference_labels")
        proba = _probabilities(reference_proba, self.classes_.size, truth.size,
                               "reference_proba")
        self.reference_rows_ = int(truth.size)
        self.method_, self.maps_ = "none", list[dict[str, Any]]()
        problem = self._unusable(proba, truth)
        if problem is None:
            folds = StratifiedKFold(_FOLDS, shuffle=True, random_state=self.seed)
            splits = list(folds.split(proba, truth))
            held_out = {"none": proba}
            for kind in _CANDIDATES if self.calibration == "auto" else (self.calibration,):
                held_out[kind] = np.empty_like(proba)
                for fit_rows, test_rows in splits:
                    maps = fit_maps(kind, proba[fit_rows], truth[fit_rows])
                    held_out[kind][test_rows] = apply_maps(maps, proba[test_rows])
            # The lowest Brier score among the probabilities that pass the check, else the
            # least miscalibrated: Brier scores all of a row's probabilities, the check the
            # predicted class's, which accuracy rests on.
            predicted = np.argmax(proba, axis=1)
            checks = {kind: miscalibration(held, predicted, truth)
                      for kind, held in held_out.items()}
            self.method_ = min(held_out, key=lambda kind: (
                (0, brier(held_out[kind], truth)) if checks[kind][0] <= _Z_LIMIT
                else (1, checks[kind][0])))
            if self.method_ != "none":
                self.maps_ = fit_maps(self.method_, proba, truth)
            z, problem = checks[self.method_]
            problem = None if z <= _Z_LIMIT else problem
        self.warnings_: tuple[str, ...] = (
            () if problem is None else (f"probabilities cannot be calibrated: {problem}",))
        return self

    def _unusable(self, proba: Floats, truth: NDArray[np.intp]) -> str | None:
        counts = np.bincount(truth, minlength=self.classes_.size)
        if np.count_nonzero(counts) < 2:
            return f"the reference holds only class {_name(self.classes_, truth[0])}"
        if truth.size < _MIN_ROWS or counts.min() < _FOLDS:
            rare = _name(self.classes_, np.argmin(counts))
            return (f"the reference has {truth.size} rows and {counts.min()} of class {rare}; "
                    f"calibration needs {_MIN_ROWS} rows and {_FOLDS} of each class")
        if np.all(np.ptp(proba, axis=0) == 0):
            return "the model gives every reference row the same probabilities"
        return None

    def estimate(self, current_proba: Any, y_pred: Any = None) -> dict[str, Estimate]:
        """Estimate each metric on a window from the model's probabilities on it.

        ``y_pred`` are the model's predicted labels, if it does not predict the argmax (a tuned
        threshold, say).
        """
        if not hasattr(self, "maps_"):
            raise InvalidInput("this CBPE is not fitted: call fit(reference_proba, "
                               "reference_labels, classes) first")
        raw = _probabilities(current_proba, self.classes_.size, None, "current_proba")
        rows, width = raw.shape
        if y_pred is None:
            predicted = np.argmax(raw, axis=1)
        else:
            predicted = _indices(_column(y_pred, "y_pred"), self.classes_, "y_pred")
            if predicted.size != rows:
                raise InvalidInput(f"y_pred has {predicted.size} rows but current_proba {rows}")
        calibrated = apply_maps(self.maps_, raw)
        binary = width == 2
        columns = [1] if binary else list(range(width))
        onehot = predicted[:, None] == np.arange(width)
        hits = np.sum(np.where(onehot, calibrated, 0.0), axis=0)[None, :]
        sizes = calibrated.sum(axis=0)[None, :]
        n_predicted = onehot.sum(axis=0).astype(np.float64)
        draws = self._draws(raw, calibrated, predicted, columns)
        results = {}
        for metric in self.metrics:
            if metric == "roc_auc":
                value = _expected_auc(raw, calibrated, columns)
            else:
                value = float(_confusion(metric, hits, sizes, n_predicted, rows, binary)[0])
            results[metric] = self._estimate(metric, value, draws[metric], rows)
        return results

    def _draws(
        self, raw: Floats, calibrated: Floats, predicted: NDArray[np.intp], columns: list[int]
    ) -> dict[str, tuple[Floats, float]]:
        """Each metric over labels drawn from the calibrated probabilities, and the factor that
        scales their spread from the rows drawn to the window's rows."""
        rng = np.random.default_rng(self.seed)
        rows, width = raw.shape
        scale = 1.0
        if rows > _SIMULATED_ROWS:
            keep = np.sort(rng.choice(rows, _SIMULATED_ROWS, replace=False))
            raw, calibrated, predicted = raw[keep], calibrated[keep], predicted[keep]
            scale, rows = math.sqrt(_SIMULATED_ROWS / rows), _SIMULATED_ROWS
        uniform = rng.random((_DRAWS, rows))
        drawn = np.zeros((_DRAWS, rows), dtype=np.intp)
        for edge in np.cumsum(calibrated, axis=1)[:, :-1].T:
            drawn += uniform >= edge
        hits = np.column_stack([((drawn == c) & (predicted == c)).sum(axis=1)
                                for c in range(width)]).astype(np.float64)
        sizes = np.column_stack([(drawn == c).sum(axis=1) for c in range(width)])
        n_predicted = np.bincount(predicted, minlength=width).astype(np.float64)
        out = {}
        for metric in self.metrics:
            if metric == "roc_auc":
                out[metric] = (_drawn_auc(raw, drawn, columns), scale)
            else:
                drawn_metric = _confusion(metric, hits, sizes.astype(np.float64), n_predicted,
                                          rows, width == 2)
                out[metric] = (drawn_metric, scale)
        return out

    def _estimate(self, metric: str, value: float, draws: tuple[Floats, float],
                  rows: int) -> Estimate:
        warnings = list(self.warnings_)
        if math.isnan(value):
            warnings.append(f"{metric} is undefined on this window: " + {
                "precision": "no row is predicted as the positive class",
                "roc_auc": "the calibrated probabilities leave no class in doubt",
            }.get(metric, "no row is expected in the positive class"))
            return Estimate(metric, None, None, None, rows, self.confidence, tuple(warnings))
        values, scale = draws
        # The calibration was learnt from the reference's labels, which pin it down about as
        # well as a window of the reference's size pins the metric down.
        scale *= math.sqrt(1 + rows / self.reference_rows_)
        finite = values[np.isfinite(values)]
        lower = upper = value
        if finite.size:
            tail = (1 - self.confidence) / 2
            low, high = np.quantile(finite, [tail, 1 - tail])
            centre = finite.mean()
            lower = max(0.0, min(value, value + (low - centre) * scale))
            upper = min(1.0, max(value, value + (high - centre) * scale))
        return Estimate(metric, value, float(lower), float(upper), rows, self.confidence,
                        tuple(warnings))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the parameters and the fitted maps, for :meth:`from_dict`."""
        if not hasattr(self, "maps_"):
            raise InvalidInput("this CBPE is not fitted: fit it before serialising it")
        return {
            "format": _FORMAT, "metrics": list(self.metrics), "calibration": self.calibration,
            "confidence": self.confidence, "seed": self.seed, "classes": self.classes_.tolist(),
            "reference_rows": self.reference_rows_, "method": self.method_, "maps": self.maps_,
            "warnings": list(self.warnings_),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """A fitted CBPE from :meth:`to_dict`'s output."""
        try:
            if data["format"] > _FORMAT:
                raise InvalidInput(f"this CBPE has format {data['format']}, newer than "
                                   f"{_FORMAT}; upgrade modelyard")
            cbpe = cls(data["metrics"], data["calibration"], data["confidence"], data["seed"])
            cbpe._check_parameters()
            cbpe.classes_ = _classes(data["classes"])
            cbpe.reference_rows_ = int(data["reference_rows"])
            cbpe.method_ = str(data["method"])
            cbpe.maps_ = checked_maps([dict(m) for m in data["maps"]], cbpe.classes_.size)
            cbpe.warnings_ = tuple(str(w) for w in data["warnings"])
        except (KeyError, TypeError) as error:
            raise InvalidInput(f"not a serialised CBPE: missing or wrong {error}") from None
        return cbpe
