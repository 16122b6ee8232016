"""Calibration maps for a classifier's predicted probabilities, as CBPE (:mod:`.cbpe`) fits,
applies and stores them: JSON-ready dicts, ``{"kind": "isotonic", "x": [...], "y": [...]}`` or
``{"kind": "platt", "a": ..., "b": ...}`` per class, or one ``{"kind": "temperature", "t":
...}`` — and how well a set of probabilities is calibrated (Brier score, miscalibration z)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar  # type: ignore[import-untyped, unused-ignore]
from scipy.special import expit, log_softmax, logit, softmax  # type: ignore[import-untyped, unused-ignore]
from sklearn.isotonic import IsotonicRegression

from modelyard.errors import InvalidInput
from modelyard.monitoring._labels import Floats


def _logits(proba: Floats) -> Floats:
    return np.log(np.clip(proba, 1e-12, 1.0))


def _fit_map(kind: str, score: Floats, target: NDArray[np.bool_]) -> dict[str, Any]:
    if kind == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score, target)
        return {"kind": kind, "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    # Platt scaling on the logit, with Platt's smoothed targets against overfitting, fitted by
    # damped Newton steps on (a, b) (no BLAS: tiny BLAS calls crawl on a busy machine).
    z = logit(np.clip(score, 1e-12, 1 - 1e-12))
    positives = int(target.sum())
    soft = np.where(target, (positives + 1) / (positives + 2), 1 / (target.size - positives + 2))

    def loss(a: float, b: float) -> float:
        s = a * z + b
        return float(np.sum(np.logaddexp(0, s) - soft * s))

    a, b, current = 1.0, 0.0, loss(1.0, 0.0)
    for _ in range(100):
        p = expit(a * z + b)
        residual, weight = p - soft, p * (1 - p) + 1e-12
        ga, gb = np.sum(residual * z), np.sum(residual)
        haa, hab, hbb = np.sum(weight * z * z), np.sum(weight * z), np.sum(weight)
        det = haa * hbb - hab * hab + 1e-12
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        step = 1.0
        while (new := loss(a - step * da, b - step * db)) > current and step > 1e-8:
            step /= 2
        a, b = a - step * da, b - step * db
        if current - new < 1e-10 * max(1.0, abs(current)):
            break
        current = new
    return {"kind": kind, "a": float(a), "b": float(b)}


def _apply_map(mapping: dict[str, Any], score: Floats) -> Floats:
    if mapping["kind"] == "isotonic":
        interpolated: Floats = np.interp(score, mapping["x"], mapping["y"])
        return interpolated
    result: Floats = expit(mapping["a"] * logit(np.clip(score, 1e-12, 1 - 1e-12)) + mapping["b"])
    return result


def fit_maps(kind: str, proba: Floats, truth: NDArray[np.intp]) -> list[dict[str, Any]]:
    """Binary: one map of P(classes[1]). Multiclass: per class c, a map for the rows the model
    predicts as c, then one for the other rows (two maps a class). Temperature: one map."""
    if kind == "temperature":
        # Temperature scaling (Guo et al. 2017): one parameter for all classes, so it holds up
        # on small references where one map per class overfits.
        logits, rows = _logits(proba), np.arange(truth.size)

        def loss(log_t: float) -> float:
            return -float(log_softmax(logits / math.exp(log_t), axis=1)[rows, truth].sum())

        return [{"kind": kind, "t": math.exp(minimize_scalar(loss, bounds=(-4, 4)).x)}]
    if proba.shape[1] == 2:
        return [_fit_map(kind, proba[:, 1], truth == 1)]
    top = np.argmax(proba, axis=1)
    maps = []
    for predicted in (True, False):
        for c in range(proba.shape[1]):
            rows = (top == c) == predicted
            # A class the model never predicts here gets the map of all its rows.
            rows = rows if rows.any() else np.ones_like(rows)
            maps.append(_fit_map(kind, proba[rows, c], truth[rows] == c))
    return maps


def apply_maps(maps: list[dict[str, Any]], proba: Floats) -> Floats:
    if not maps:
        return proba
    if maps[0]["kind"] == "temperature":
        scaled: Floats = softmax(_logits(proba) / maps[0]["t"], axis=1)
        return scaled
    if len(maps) == 1:
        positive = _apply_map(maps[0], proba[:, 1])
        return np.column_stack([1 - positive, positive])
    # Top-label calibration (Gupta & Ramdas 2022): the predicted class keeps its calibrated
    # probability, on which accuracy and precision rest; the other classes share the rest in
    # proportion to their own calibrated probabilities (or to the raw ones if all are 0).
    width = proba.shape[1]
    top = np.argmax(proba, axis=1)
    rows = np.arange(top.size)
    hit = np.column_stack([_apply_map(maps[c], proba[:, c]) for c in range(width)])[rows, top]
    rest = np.column_stack([_apply_map(maps[width + c], proba[:, c]) for c in range(width)])
    rest[rows, top] = 0.0
    raw = np.where(np.arange(width) == top[:, None], 0.0, proba)
    rest = np.where(rest.sum(axis=1, keepdims=True) > 0, rest, raw + 1e-12)
    rest[rows, top] = 0.0
    result: Floats = rest * ((1 - hit) / rest.sum(axis=1))[:, None]
    result[rows, top] = hit
    return result


def brier(proba: Floats, truth: NDArray[np.intp]) -> float:
    onehot = truth[:, None] == np.arange(proba.shape[1])
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def miscalibration(
    proba: Floats, predicted: NDArray[np.intp], truth: NDArray[np.intp]
) -> tuple[float, str]:
    """How far (in standard errors) and how the probabilities of the predicted classes
    disagree with held-out labels."""
    confidence = proba[np.arange(truth.size), predicted]
    correct = predicted == truth
    variance = confidence * (1 - confidence)
    large = (correct.sum() - confidence.sum()) / math.sqrt(max(variance.sum(), 1e-12))
    # Spiegelhalter (1986): the Brier score's deviation from its value under calibration.
    spread = math.sqrt(max(np.sum((1 - 2 * confidence) ** 2 * variance), 1e-12))
    spiegelhalter = np.sum((correct - confidence) * (1 - 2 * confidence)) / spread
    return max(abs(large), abs(spiegelhalter)), (
        f"on held-out reference rows they expect accuracy {confidence.mean():.3f} where "
        f"{correct.mean():.3f} was observed (z = {large:.1f}; Spiegelhalter z = "
        f"{spiegelhalter:.1f})"
    )


def checked_maps(maps: list[dict[str, Any]], classes: int) -> list[dict[str, Any]]:
    keys = {"isotonic": {"x", "y"}, "platt": {"a", "b"}, "temperature": {"t"}}
    kinds = {str(m.get("kind")) for m in maps}
    counts = {0, 1} if classes == 2 or kinds == {"temperature"} else {0, 2 * classes}
    if len(maps) not in counts or any(keys.get(str(m.get("kind")), {""}) - m.keys() for m in maps):
        raise InvalidInput(f"not a serialised CBPE: malformed calibration maps {sorted(kinds)}")
    return maps
