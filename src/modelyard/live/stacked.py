"""Answered requests of one model version, stacked column by column, once for all of live
monitoring.

The collector folds what the data plane observed every fraction of a second. For the common
case — every request's inputs one 2-D numeric array of the same width (a tabular model's
matrix, or an ONNX model's single tensor) and the same numeric outputs — it stacks them here
once: the window profile takes the columns as they are, and the prediction log builds its
batch from the same arrays (:func:`modelyard.live.batches.from_stacked`) instead of going back
to one record per request. Anything else (named tensors, text, requests that asked for
different outputs) is folded the general way, request by request.

Outputs take the names window profiles and the log use: ``prediction`` for ``predict``,
``proba_<class>`` for ``predict_proba`` with known classes, ``<name>`` for another one-wide
output and ``<name>_<i>`` for the columns of a wider one (at most 16; a wider output is left
out of the profile, and the log keeps such requests as JSON).

>>> import numpy as np
>>> from modelyard.serving.observe import Observation
>>> seen = [Observation("churn", 1, f"r{i}", 1.7e9 + i, 0.002, 1, ["a", "b"],
...                     np.array([[1.0, 2.0 * i]]), {"predict": np.array([i % 2])})
...         for i in range(3)]
>>> stacked = Stacked.of(seen)
>>> stacked.requests, stacked.rows, list(stacked.profile_columns())
(3, 3, ['a', 'b', 'prediction'])
>>> stacked.profile_columns()["b"].tolist(), stacked.latency_ms.tolist()
([0.0, 2.0, 4.0], [2.0, 2.0, 2.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.monitoring._tables import label_of
from modelyard.serving.observe import Observation

PREDICTION = "prediction"
PROBABILITY_PREFIX = "proba_"
MAX_OUTPUT_COLUMNS = 16
MAX_INPUT_COLUMNS = 256  # a wider tensor (an image) is not profiled feature by feature


@dataclass(eq=False)
class Stacked:
    """Requests of one model version as columns (see the module).

    ``ids``, ``at`` (epoch seconds) and ``latency_ms`` hold one entry per request; ``counts``
    the input rows of each (None: one each); ``matrix`` the inputs, one row per input row;
    ``outputs`` one column per output column, named as above.
    """

    model: str
    version: int
    ids: list[str]
    at: np.ndarray
    latency_ms: np.ndarray
    counts: np.ndarray | None
    matrix: np.ndarray
    input_names: list[str]  # the profile's names for the matrix's columns ([] when too wide)
    log_names: list[str]  # the log's names for them: the model's columns, else f0, f1, …
    outputs: dict[str, np.ndarray]
    loggable: bool  # every output fits the log's column layout
    observations: Sequence[Observation]

    @property
    def requests(self) -> int:
        return len(self.ids)

    @property
    def rows(self) -> int:
        return len(self.matrix)

    @classmethod
    def of(cls, observations: Sequence[Observation]) -> Stacked | None:
        """The observations (one model version) stacked, or None when they are not all
        tabular alike (see the module)."""
        first = observations[0]
        head = _matrix(first.data)
        if head is None:
            return None
        width, kind = head.shape[1], head.dtype.kind
        names = tuple(first.outputs)
        parts = []
        for observation in observations:
            matrix = head if observation is first else _matrix(observation.data)
            if (matrix is None or matrix.shape[1] != width or matrix.dtype.kind != kind
                    or tuple(observation.outputs) != names):
                return None
            parts.append(matrix)
        requests = len(observations)
        counts = np.fromiter((len(p) for p in parts), np.int64, requests)
        outputs, loggable = _outputs(observations, names, first.classes, int(counts.sum()))
        if outputs is None:
            return None
        return cls(
            model=first.model, version=first.version,
            ids=[o.request_id for o in observations],
            at=np.fromiter((o.at for o in observations), np.float64, requests),
            latency_ms=np.fromiter((o.latency_s for o in observations), np.float64,
                                   requests) * 1000.0,
            counts=None if (counts == 1).all() else counts,
            matrix=parts[0] if requests == 1 else np.concatenate(parts),
            input_names=_profile_names(first, width),
            log_names=(list(first.columns) if len(first.columns) == width
                       else [f"f{i}" for i in range(width)]),
            outputs=outputs, loggable=loggable, observations=observations,
        )

    def take(self, keep: np.ndarray) -> Stacked:
        """The requests where ``keep`` (one bool per request) is true, with their rows."""
        picked = np.flatnonzero(keep).tolist()
        rows = keep if self.counts is None else np.repeat(keep, self.counts)
        return Stacked(
            self.model, self.version, [self.ids[i] for i in picked], self.at[picked],
            self.latency_ms[picked], None if self.counts is None else self.counts[picked],
            self.matrix[rows], self.input_names, self.log_names,
            {name: values[rows] for name, values in self.outputs.items()}, self.loggable,
            [self.observations[i] for i in picked],
        )

    def row_at(self) -> np.ndarray:
        """Each input row's request time (epoch seconds)."""
        return self.at if self.counts is None else np.repeat(self.at, self.counts)

    def profile_columns(self) -> dict[str, np.ndarray]:
        """The columns a window profile takes: the inputs (unless too wide), then outputs."""
        columns = {name: self.matrix[:, i] for i, name in enumerate(self.input_names)}
        columns.update(self.outputs)
        return columns


def _matrix(data: Any) -> np.ndarray | None:
    """The request's inputs as one 2-D numeric array, when they are one."""
    if type(data) is dict and len(data) == 1:  # the serving layer's {tensor name: array}
        (data,) = data.values()
    if type(data) is np.ndarray and data.ndim == 2 and data.dtype.kind in "biuf":
        return data
    return None


def _profile_names(first: Observation, width: int) -> list[str]:
    if type(first.data) is not dict:
        return list(first.columns) if width == len(first.columns) else [
            f"f{i}" for i in range(width)]
    (name,) = first.data
    if width == 1:
        return [str(name)]
    if width == len(first.columns):
        return list(first.columns)
    if width <= MAX_INPUT_COLUMNS:
        return [f"{name}_{i}" for i in range(width)]
    return []


def _outputs(observations: Sequence[Observation], names: tuple[str, ...],
             classes: list[Any] | None, rows: int) -> tuple[dict[str, np.ndarray] | None, bool]:
    """The outputs as named columns, and whether the log can keep them as columns; None when
    one is not numeric or not one value (row) per input row."""
    columns: dict[str, np.ndarray] = {}
    loggable = True
    for name in names:
        parts = [o.outputs[name] for o in observations]
        try:
            stacked = parts[0] if len(parts) == 1 else np.concatenate(parts)
        except ValueError:  # a 0-d output, or widths that disagree
            return None, False
        if type(stacked) is not np.ndarray or stacked.dtype.kind not in "biuf" or (
                stacked.ndim not in (1, 2)) or len(stacked) != rows:
            return None, False
        flat = stacked.reshape(len(stacked), -1)
        if name == "predict_proba" and classes and flat.shape[1] == len(classes):
            columns.update({f"{PROBABILITY_PREFIX}{label_of(c)}": flat[:, i]
                            for i, c in enumerate(classes)})
        elif flat.shape[1] == 1:
            columns[PREDICTION if name == "predict" else name] = flat[:, 0]
        elif flat.shape[1] <= MAX_OUTPUT_COLUMNS:
            columns.update({f"{name}_{i}": flat[:, i] for i in range(flat.shape[1])})
        else:
            loggable = False
    return columns, loggable
