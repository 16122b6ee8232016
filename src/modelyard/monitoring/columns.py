"""Small shared steps of judging one column: what a drift method reads from a sketch, and a
reference sample column in the form calibration takes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from modelyard.monitoring._tables import CATEGORICAL, label_of
from modelyard.monitoring.sketches import CategoricalSketch, NumericSketch


def summarised(sketch: NumericSketch | CategoricalSketch) -> Any:
    """What the drift methods compare: the KLL sketch, or the category counts."""
    return sketch.kll if isinstance(sketch, NumericSketch) else sketch.counts()


def is_empty(sketch: NumericSketch | CategoricalSketch) -> bool:
    """No value to compare (all missing)."""
    return sketch.n == 0 if isinstance(sketch, NumericSketch) else not sketch.counts()


def finite_or_none(value: float) -> float | None:
    """A score for JSON: infinities and NaN become None.

    >>> finite_or_none(0.5), finite_or_none(float("inf"))
    (0.5, None)
    """
    return float(value) if math.isfinite(value) else None


def is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def calibration_column(values: Any, kind: str) -> np.ndarray:
    """A sample column as :func:`~modelyard.monitoring.calibration.calibrate` takes it: labels
    as profiles write them (``1.0`` reads ``1``) for categories, floats for numbers.

    >>> calibration_column([1.0, None, 2.0], "categorical").tolist()
    ['1', None, '2']
    """
    if kind == CATEGORICAL:
        return np.array([None if is_missing(v) else label_of(v) for v in values], dtype=object)
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)
