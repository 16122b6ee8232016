"""Checks of labels and probabilities shared by the label-based metrics and CBPE."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from modelyard.errors import InvalidInput

_SUM_TOLERANCE = 1e-3

Floats = NDArray[np.float64]


def _missing(value: Any) -> bool:
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, float) and math.isnan(value)


def _column(values: Any, name: str) -> NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise InvalidInput(f"{name} must be a non-empty 1-D column, not shape {array.shape}")
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise InvalidInput(f"{name} holds missing values (NaN)")
    if array.dtype.kind == "O" and any(map(_missing, array.tolist())):
        raise InvalidInput(f"{name} holds missing values (None, NaN or NA)")
    return array


def _classes(classes: Any) -> NDArray[Any]:
    array = _column(classes, "classes")
    if len(set(array.tolist())) != array.size or array.size < 2:
        raise InvalidInput(f"classes must be at least two distinct labels, not {array.tolist()}")
    return array


def _indices(labels: NDArray[Any], classes: NDArray[Any], name: str) -> NDArray[np.intp]:
    """Each label's position in ``classes``."""
    position = {label: i for i, label in enumerate(classes.tolist())}
    found = [position.get(label, -1) for label in labels.tolist()]
    index = np.asarray(found, dtype=np.intp)
    if (index < 0).any():
        unknown = sorted({repr(v) for v, i in zip(labels.tolist(), found, strict=True) if i < 0})
        raise InvalidInput(
            f"{name} holds labels that are not among the classes {classes.tolist()}: "
            + ", ".join(unknown[:5]) + (" …" if len(unknown) > 5 else "")
        )
    return index


def _probabilities(proba: Any, classes: int, rows: int | None, name: str) -> Floats:
    """An (n, classes) array of probabilities; a binary model's 1-D P(classes[1]) is accepted."""
    array = np.asarray(proba)
    if array.dtype.kind not in "iuf":
        raise InvalidInput(f"{name} must hold numbers, not {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim == 1 and classes == 2:
        array = np.column_stack([1 - array, array])
    if array.ndim != 2 or array.shape[1] != classes or array.shape[0] == 0:
        raise InvalidInput(
            f"{name} must have one column per class ({classes}) and at least one row, "
            f"not shape {array.shape}"
        )
    if rows is not None and array.shape[0] != rows:
        raise InvalidInput(f"{name} has {array.shape[0]} rows but the labels have {rows}")
    if not np.isfinite(array).all():
        raise InvalidInput(f"{name} holds NaN or infinite values")
    if array.min() < -_SUM_TOLERANCE or array.max() > 1 + _SUM_TOLERANCE:
        raise InvalidInput(f"{name} must lie in [0, 1]; found {array.min():g} to {array.max():g}")
    sums = array.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > _SUM_TOLERANCE:
        raise InvalidInput(f"{name} rows must sum to 1; row {worst} sums to {sums[worst]:.6g}")
    array = np.clip(array, 0.0, 1.0)
    result: Floats = array / array.sum(axis=1, keepdims=True)
    return result


def _name(classes: NDArray[Any], index: Any) -> str:
    """A class as users wrote it: 1 or 'yes', not np.int64(1)."""
    return repr(classes.tolist()[int(index)])
