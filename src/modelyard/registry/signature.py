"""Signatures: inferred from data at registration, enforced on every prediction.

A columnar signature names one input per table column; incoming data is checked column by
column and cast to the registered datatype, so a model never sees a column it was not trained
on, a string where it expects a number, or its columns in another order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import SignatureMismatch
from modelyard.types import Signature, TensorSpec, datatype_of, numpy_dtype

_NUMERIC_KINDS = "biuf"


def columns_signature(frame: pd.DataFrame) -> list[TensorSpec]:
    """One ``[-1]``-shaped input per column, typed by the column's dtype.

    >>> [s.describe() for s in columns_signature(pd.DataFrame({"a": [1.5], "b": ["x"]}))]
    ['a: FP64[-1]', 'b: BYTES[-1]']
    """
    specs = []
    for column in frame.columns:
        if not isinstance(column, str):
            raise SignatureMismatch(
                f"column names must be strings to form a signature; got {column!r}"
            )
        specs.append(TensorSpec(name=column, datatype=datatype_of(frame[column].dtype), shape=[-1]))
    return specs


def output_specs(outputs: Mapping[str, np.ndarray]) -> list[TensorSpec]:
    """Output specs from one batch of predictions; the batch dimension is variable."""
    return [
        TensorSpec(name=name, datatype=datatype_of(value.dtype), shape=[-1, *value.shape[1:]])
        for name, value in outputs.items()
    ]


def to_frame(data: Any, signature: Signature) -> pd.DataFrame:
    """``data`` as a DataFrame with exactly the signature's columns, in order, cast to their
    datatypes; raises :class:`SignatureMismatch` naming the first column that does not fit."""
    if not signature.columnar:
        raise SignatureMismatch("this model takes tensors, not a table; pass a dict of arrays")
    names = signature.input_names
    frame = _as_frame(data, names)
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise SignatureMismatch(
            f"input is missing column(s) {', '.join(map(repr, missing))}; "
            f"the model takes {len(names)}: {', '.join(names)}"
        )
    if len(frame) == 0:
        raise SignatureMismatch("input has no rows")
    if list(frame.columns) == names and all(
        _already(dtype, spec) for dtype, spec in zip(frame.dtypes, signature.inputs, strict=True)
    ):
        return frame  # already right: the model sees the caller's own memory layout
    return pd.DataFrame(
        {spec.name: _cast(frame[spec.name], spec) for spec in signature.inputs}, index=frame.index
    )


def to_tensors(data: Any, signature: Signature) -> dict[str, np.ndarray]:
    """``data`` as named arrays matching a tensor signature's dtypes and fixed dimensions."""
    if not isinstance(data, Mapping):
        if len(signature.inputs) != 1:
            raise SignatureMismatch(
                f"this model takes {len(signature.inputs)} inputs "
                f"({', '.join(signature.input_names)}); pass a dict of arrays"
            )
        data = {signature.inputs[0].name: data}
    tensors = {}
    for spec in signature.inputs:
        if spec.name not in data:
            raise SignatureMismatch(f"input {spec.name!r} is missing")
        array = np.asarray(data[spec.name])
        if array.ndim != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
        ):
            raise SignatureMismatch(
                f"input {spec.name!r} has shape {list(array.shape)}, the model takes {spec.shape}"
            )
        tensors[spec.name] = cast_array(array, spec)
    return tensors


def placeholder(sig: Signature) -> pd.DataFrame | dict[str, np.ndarray]:
    """One row of zeros (empty strings for text) shaped like the signature, so that a model
    registered without data (an ONNX graph, an MLflow signature) is still run once."""
    if sig.columnar:
        return pd.DataFrame(
            {s.name: np.zeros(1, dtype=numpy_dtype(s.datatype)) if s.datatype != "BYTES"
             else np.array([""], dtype=object) for s in sig.inputs}
        )
    return {
        s.name: np.zeros([1 if d < 0 else d for d in s.shape], dtype=numpy_dtype(s.datatype))
        for s in sig.inputs
    }


def _as_frame(data: Any, names: list[str]) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        return pd.DataFrame({key: np.asarray(value) for key, value in data.items()})
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        return pd.DataFrame.from_records(data)
    array = np.asarray(data)
    if array.ndim == 1 and len(names) == 1:
        array = array.reshape(-1, 1)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise SignatureMismatch(
            f"input has {array.ndim} dimensions; pass a table of rows × {len(names)} columns"
        )
    if array.shape[1] != len(names):
        raise SignatureMismatch(
            f"input has {array.shape[1]} columns, the model takes {len(names)}: "
            f"{', '.join(names)}"
        )
    return pd.DataFrame(array, columns=names)


def _already(dtype: Any, spec: TensorSpec) -> bool:
    if spec.datatype == "BYTES":
        return bool(dtype == np.dtype(object))
    return bool(dtype == numpy_dtype(spec.datatype))


def _cast(column: pd.Series, spec: TensorSpec) -> np.ndarray | pd.Series:
    if spec.datatype == "BYTES":
        if column.dtype.kind in _NUMERIC_KINDS:
            raise SignatureMismatch(
                f"column {spec.name!r} holds numbers ({column.dtype}), the model takes text"
            )
        return column.astype(object)
    return cast_array(column.to_numpy(), spec)


def cast_array(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """``values`` as ``spec``'s datatype, refusing text, fractions or missing values where the
    model takes integers (a silent ``astype`` would turn them into garbage)."""
    target = numpy_dtype(spec.datatype)
    if target.kind == "O":
        return values.astype(object)
    if values.dtype.kind not in _NUMERIC_KINDS:
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            sample = next((v for v in values.ravel() if not _is_number(v)), values.ravel()[0])
            raise SignatureMismatch(
                f"{_label(spec)} should be {spec.datatype} but holds {sample!r}"
            ) from None
    if target.kind in "iub" and values.dtype.kind == "f":
        if np.isnan(values).any():
            raise SignatureMismatch(
                f"{_label(spec)} has missing values but the model takes {spec.datatype}"
            )
        if not np.array_equal(values, np.round(values)):
            raise SignatureMismatch(
                f"{_label(spec)} holds fractions but the model takes {spec.datatype}"
            )
    return values.astype(target, copy=False)


def _label(spec: TensorSpec) -> str:
    return f"column {spec.name!r}" if spec.shape == [-1] else f"input {spec.name!r}"


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
