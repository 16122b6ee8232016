"""A prediction-log record: one answered request, its storable row, and rows back as a table."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd

from modelyard.live.journal import to_json
from modelyard.monitoring._tables import label_of

Row = dict[str, Any]
MAX_ID = 128  # characters of a request id the log keeps


def iso(at: datetime) -> str:
    """A time as the store's timestamp text (ISO-8601 UTC, microseconds)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(slots=True)
class PredictionRecord:
    """One answered request, as the prediction log takes it (no copies, no conversion).

    ``inputs`` is a mapping of column or tensor name to values, a 2-D array with
    ``columns`` in order, or a DataFrame; ``outputs`` maps output name to values. ``at`` is
    wall-clock epoch seconds (default: when it is submitted); ``classes`` name the columns of
    a ``predict_proba`` output.
    """

    request_id: str
    model: str
    version: int
    inputs: Any
    outputs: Mapping[str, Any]
    latency_ms: float = 0.0
    at: float | None = None
    columns: Sequence[str] = ()
    classes: Sequence[Any] | None = None

    @classmethod
    def of(cls, observation: Any) -> PredictionRecord:
        """The record of a serving ``Observation`` (any object with its attributes)."""
        return cls(
            observation.request_id, observation.model, observation.version, observation.data,
            observation.outputs, observation.latency_s * 1000.0, observation.at,
            observation.columns, observation.classes,
        )


def checked(record: PredictionRecord) -> str | None:
    """Why ``record`` cannot be logged, or None."""
    if not isinstance(record.request_id, str) or not 0 < len(record.request_id) <= MAX_ID:
        return f"request id must be text of 1 to {MAX_ID} characters"
    return None


def row_of(record: PredictionRecord) -> Row:
    """The stored form of a record: plain JSON-ready values, columns of values (NaN → None)."""
    problem = checked(record)
    if problem is not None:
        raise ValueError(problem)
    at = record.at if record.at is not None else datetime.now(UTC).timestamp()
    return {
        "request_id": record.request_id,
        "ts": datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds"),
        "model": record.model,
        "version": int(record.version),
        "inputs": _input_columns(record.inputs, record.columns),
        "outputs": _output_columns(record.outputs, record.classes),
        "latency_ms": float(record.latency_ms),
    }


def _input_columns(data: Any, columns: Sequence[str]) -> dict[str, Any]:
    if isinstance(data, pd.DataFrame):
        return {str(name): _plain(data[name].to_numpy()) for name in data.columns}
    if isinstance(data, np.ndarray):
        if data.ndim == 2:
            names = list(columns) if len(columns) == data.shape[1] else [
                f"f{i}" for i in range(data.shape[1])]
            return dict(zip(names, _plain(data.T), strict=True))
        return {"input": _plain(data)}
    if isinstance(data, Mapping):
        if len(data) == 1 and columns:
            (value,) = data.values()
            if isinstance(value, np.ndarray) and value.ndim == 2 and (
                    value.shape[1] == len(columns)):
                return _input_columns(value, columns)
        return {str(name): _plain(value) for name, value in data.items()}
    if isinstance(data, list) and data and all(isinstance(item, Mapping) for item in data):
        names = list(dict.fromkeys(name for item in data for name in item))
        return {str(name): _plain([item.get(name) for item in data]) for name in names}
    return {"input": _plain(data)}


def _output_columns(outputs: Mapping[str, Any], classes: Sequence[Any] | None) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for name, value in outputs.items():
        array = np.asarray(value) if not isinstance(value, np.ndarray) else value
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if name == "predict_proba" and classes and array.ndim == 2 and (
                array.shape[1] == len(classes)):
            names = [f"proba_{label_of(c)}" for c in classes]
            columns.update(zip(names, _plain(array.T), strict=True))
        elif array.ndim == 2 and array.shape[1] <= 16:
            names = [f"{name}_{i}" for i in range(array.shape[1])]
            columns.update(zip(names, _plain(array.T), strict=True))
        else:
            columns["prediction" if name == "predict" else str(name)] = _plain(array)
    return columns


def _plain(value: Any) -> Any:
    """Plain Python (lists, numbers, text, None) that any JSON encoder takes; NaN/inf → None."""
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind == "f":
            finite = np.isfinite(value)
            if not finite.all():
                kept = value.astype(object)
                kept[~finite] = None
                return kept.tolist()
        if kind in "biufUS":
            return value.tolist()
    elif isinstance(value, str | int) or value is None:
        return value
    elif isinstance(value, float):
        return value if math.isfinite(value) else None
    return orjson.loads(to_json(value))  # objects, times, nested lists: through orjson


_META = ("request_id", "ts", "model", "version", "latency_ms")


def frame_of(rows: Iterable[Row], parts: Sequence[str] = ("inputs", "outputs")) -> pd.DataFrame:
    """Stored rows as a table, one row per input row (see :meth:`PredictionLog.records`).

    Each of ``parts`` is a mapping of column to a list of one value per input row (or one
    value for all of them); a column whose name is taken is prefixed with the part's name
    (``input_``, ``output_``).
    """
    meta: dict[str, list[Any]] = {name: [] for name in _META}
    found: list[dict[str, list[Any]]] = [{} for _ in parts]
    total = 0
    for row in rows:
        count = _row_count([row[part] for part in parts])
        for name in _META:
            meta[name].extend([row[name]] * count)
        for part, target in zip(parts, found, strict=True):
            for name, value in row[part].items():
                values = value if isinstance(value, list) and len(value) == count else (
                    [value] * count)
                column = target.get(name)
                if column is None:
                    column = target[name] = [None] * total
                column.extend(values)
        total += count
        for target in found:
            for values in target.values():
                if len(values) < total:
                    values.extend([None] * (total - len(values)))
    columns: dict[str, Any] = dict(meta)
    for part, target in zip(parts, found, strict=True):
        for name, values in target.items():
            columns[f"{part.removesuffix('s')}_{name}" if name in columns else name] = values
    frame = pd.DataFrame(columns)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    return frame.astype({"version": "int64", "latency_ms": "float64"})


def _row_count(parts: list[Mapping[str, Any]]) -> int:
    for part in parts:
        for value in part.values():
            if isinstance(value, list):
                return max(len(value), 1)
    return 1


