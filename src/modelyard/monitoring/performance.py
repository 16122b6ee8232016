"""Model performance from labels, with scikit-learn.

:func:`classification_metrics` and :func:`regression_metrics` compute the usual metrics; without
labels, :class:`~modelyard.monitoring.cbpe.CBPE` estimates a classifier's performance from its
own probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from modelyard.errors import InvalidInput
from modelyard.monitoring._labels import (
    Floats,
    _classes,
    _column,
    _indices,
    _name,
    _probabilities,
)

_AVERAGES = ("binary", "macro", "weighted", "micro")


class ClassificationMetrics(TypedDict):
    """Label-based classification metrics; ``notes`` says why a metric is None or qualified."""

    rows: int
    accuracy: float
    precision: float | None
    recall: float | None
    f1: float | None
    roc_auc: float | None
    log_loss: float | None
    notes: dict[str, str]


class RegressionMetrics(TypedDict):
    """Label-based regression metrics; ``notes`` says why ``r2`` is None."""

    rows: int
    mae: float
    rmse: float
    r2: float | None
    notes: dict[str, str]


def _found_classes(truth: NDArray[Any], predicted: NDArray[Any] | None, proba: Any) -> Any:
    """The sorted labels, as a scikit-learn model orders its ``classes_``."""
    try:
        found = np.unique(truth if predicted is None else np.concatenate([truth, predicted]))
    except TypeError:
        raise InvalidInput("labels of mixed types cannot be sorted; pass classes") from None
    width = np.shape(proba)[1] if np.ndim(proba) == 2 else found.size
    advice = "; pass classes (the model's classes_, in column order)"
    if found.size < 2:
        raise InvalidInput(f"the labels hold one class only ({_name(found, 0)}){advice}")
    if width != found.size:
        raise InvalidInput(f"proba has {width} columns but the labels hold {found.size} "
                           f"classes{advice}")
    return found


def _undefined(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def classification_metrics(
    y_true: Any,
    y_pred: Any = None,
    proba: Any = None,
    classes: Sequence[Any] | NDArray[Any] | None = None,
    average: str | None = None,
) -> ClassificationMetrics:
    """Accuracy, precision, recall, F1, ROC AUC and log loss of a classifier, with scikit-learn.

    Parameters
    ----------
    y_true
        The true labels.
    y_pred
        The predicted labels; the argmax of ``proba`` when omitted.
    proba
        Probabilities, one column per class in the order of ``classes`` (a binary model's 1-D
        probability of ``classes[1]`` is accepted). ROC AUC and log loss need them.
    classes
        The model's classes in column order (its ``classes_``); by default the sorted labels
        found in ``y_true`` and ``y_pred``.
    average
        How precision, recall, F1 and ROC AUC (one-vs-rest) combine classes: ``"binary"``
        (of ``classes[1]``; the default for two classes), ``"macro"`` (the default for more),
        ``"weighted"`` or ``"micro"``. A class whose metric is undefined (never predicted, for
        precision) is left out of the average, and ``notes`` says so if all are.

    Examples
    --------
    >>> metrics = classification_metrics(
    ...     ["no", "yes", "yes", "no"], proba=[[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1]])
    >>> metrics["accuracy"], metrics["precision"], metrics["recall"], metrics["roc_auc"]
    (0.75, 1.0, 0.5, 1.0)
    >>> classification_metrics([1, 1], [1, 0], classes=[0, 1])["notes"]["roc_auc"]
    'needs proba'
    """
    truth = _column(y_true, "y_true")
    if y_pred is None and proba is None:
        raise InvalidInput("classification metrics need y_pred, proba or both")
    predicted = None if y_pred is None else _column(y_pred, "y_pred")
    if predicted is not None and predicted.size != truth.size:
        raise InvalidInput(f"y_pred has {predicted.size} rows but y_true has {truth.size}")
    labels = _classes(_found_classes(truth, predicted, proba) if classes is None else classes)
    truth_i = _indices(truth, labels, "y_true")
    scores = None if proba is None else _probabilities(proba, labels.size, truth.size, "proba")
    if predicted is not None:
        predicted_i = _indices(predicted, labels, "y_pred")
    else:
        assert scores is not None
        predicted_i = np.argmax(scores, axis=1)
    average = average or ("binary" if labels.size == 2 else "macro")
    if average not in _AVERAGES or (average == "binary" and labels.size != 2):
        raise InvalidInput(f"average must be one of {', '.join(_AVERAGES[1:])} (or binary "
                           f"for two classes), not {average!r}")
    options: dict[str, Any] = {"average": average, "zero_division": np.nan}
    options |= {"pos_label": 1} if average == "binary" else {"labels": list(range(labels.size))}
    precision = _undefined(precision_score(truth_i, predicted_i, **options))
    recall = _undefined(recall_score(truth_i, predicted_i, **options))
    f1 = _undefined(f1_score(truth_i, predicted_i, **options))
    notes: dict[str, str] = {}
    if precision is None:
        notes["precision"] = "no row is predicted as " + _which(labels, average)
    if recall is None:
        notes["recall"] = "y_true has no row of " + _which(labels, average)
    if f1 is None:
        notes["f1"] = "neither y_true nor y_pred has a row of " + _which(labels, average)
    roc_auc = loss = None
    if scores is None:
        notes["roc_auc"] = notes["log_loss"] = "needs proba"
    else:
        loss = float(log_loss(truth_i, scores, labels=list(range(labels.size))))
        roc_auc = _roc_auc(truth_i, scores, labels, average, notes)
    return ClassificationMetrics(
        rows=int(truth.size), accuracy=float(accuracy_score(truth_i, predicted_i)),
        precision=precision, recall=recall, f1=f1, roc_auc=roc_auc, log_loss=loss, notes=notes,
    )


def _which(classes: NDArray[Any], average: str) -> str:
    return f"class {_name(classes, 1)}" if average == "binary" else "any class"


def _roc_auc(
    truth: NDArray[np.intp], scores: Floats, classes: NDArray[Any], average: str,
    notes: dict[str, str],
) -> float | None:
    present = np.unique(truth)
    if present.size < 2:
        notes["roc_auc"] = f"y_true holds only class {_name(classes, present[0])}"
        return None
    if average == "binary":
        return float(roc_auc_score(truth == 1, scores[:, 1]))
    if average == "micro":
        onehot = truth[:, None] == np.arange(classes.size)
        return float(roc_auc_score(onehot.ravel(), scores.ravel()))
    # One-vs-rest as scikit-learn's multi_class="ovr", over the classes y_true holds (sklearn
    # returns NaN when any class is absent, which a small live window often is).
    per_class = [roc_auc_score(truth == c, scores[:, c]) for c in present]
    weights = np.bincount(truth)[present] if average == "weighted" else None
    if present.size < classes.size:
        notes["roc_auc"] = f"averaged over the {present.size} of {classes.size} classes in y_true"
    return float(np.average(per_class, weights=weights))


def regression_metrics(y_true: Any, y_pred: Any) -> RegressionMetrics:
    """Mean absolute error, root mean squared error and R² of a regressor, with scikit-learn.

    R² is None when y_true has fewer than two rows or is constant (scikit-learn would report
    0 or 1 there, which reads as a real score).

    Examples
    --------
    >>> regression_metrics([3.0, -0.5, 2.0, 7.0], [2.5, 0.0, 2.0, 8.0])
    {'rows': 4, 'mae': 0.5, 'rmse': 0.6123724356957945, 'r2': 0.9486081370449679, 'notes': {}}
    """
    truth, predicted = (_column(v, name) for v, name in ((y_true, "y_true"), (y_pred, "y_pred")))
    for array, name in ((truth, "y_true"), (predicted, "y_pred")):
        if array.dtype.kind not in "iuf":
            raise InvalidInput(f"{name} must hold numbers, not {array.dtype}")
        if not np.isfinite(array).all():
            raise InvalidInput(f"{name} holds infinite values")
    if predicted.size != truth.size:
        raise InvalidInput(f"y_pred has {predicted.size} rows but y_true has {truth.size}")
    notes: dict[str, str] = {}
    r2 = None
    if truth.size < 2 or np.ptp(truth) == 0:
        notes["r2"] = "y_true must have at least two distinct values"
    else:
        r2 = float(r2_score(truth, predicted))
    return RegressionMetrics(
        rows=int(truth.size), mae=float(mean_absolute_error(truth, predicted)),
        rmse=float(root_mean_squared_error(truth, predicted)), r2=r2, notes=notes,
    )
