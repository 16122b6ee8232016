"""Turning a batch into the table a tabular model expects, and model facts into plain values."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import SignatureMismatch
from modelyard.runtimes.base import ModelInput


def as_frame(inputs: ModelInput) -> pd.DataFrame | np.ndarray:
    """A DataFrame or 2-D array as given; a mapping of column name to values becomes a DataFrame."""
    if isinstance(inputs, pd.DataFrame | np.ndarray):
        return inputs
    if isinstance(inputs, Mapping):
        return pd.DataFrame({name: np.asarray(values).ravel() for name, values in inputs.items()})
    raise SignatureMismatch(
        f"expected a DataFrame, a 2-D array or a mapping of column name to values, "
        f"got {type(inputs).__name__}"
    )


def check_width(array: np.ndarray | pd.DataFrame, n_features: int | None) -> None:
    """Reject anything but a rows x columns array with the expected number of columns."""
    if array.ndim != 2:
        raise SignatureMismatch(
            f"expected a 2-D array of rows x columns, got an array of shape {array.shape}"
        )
    if n_features is not None and array.shape[1] != n_features:
        raise SignatureMismatch(
            f"the input has {array.shape[1]} columns, but the model expects {n_features}"
        )


def as_table(
    inputs: ModelInput, feature_names: list[str] | None, n_features: int | None
) -> pd.DataFrame | np.ndarray:
    """The input a fitted estimator takes without complaint.

    A model fitted on named columns gets a DataFrame with exactly those columns in that order
    (an array is given those names); a model fitted on an array gets an array. This keeps
    scikit-learn from warning about feature names in either direction.
    """
    data = as_frame(inputs)
    if isinstance(data, np.ndarray):
        check_width(data, n_features)
        if feature_names is None:
            return data
        return pd.DataFrame(data, columns=feature_names).infer_objects()
    if feature_names is None:
        # Row-major like an array a caller would send, so both give bit-identical results.
        array = np.ascontiguousarray(data.to_numpy())
        check_width(array, n_features)
        return array
    missing = [name for name in feature_names if name not in data.columns]
    if missing:
        raise SignatureMismatch(
            f"the input lacks column(s) {', '.join(map(repr, missing))}; "
            f"the model was fitted on: {', '.join(feature_names)}"
        )
    return data if list(data.columns) == feature_names else data[feature_names]


def python_list(values: Iterable[Any]) -> list[Any]:
    """Numpy scalars as Python scalars (``np.int64(1)`` → ``1``), for JSON and YAML."""
    return [value.item() if isinstance(value, np.generic) else value for value in values]


def json_safe(value: Any) -> Any:
    """``value`` if JSON can hold it exactly, containers converted item by item, else its text."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    return str(value)
