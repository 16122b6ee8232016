"""Answered requests of one model version, stacked column by column, once for all of live
monitoring.

The collector stacks what the data plane recorded every few milliseconds. For the common case
— every request's inputs one 2-D numeric array of the same width (a tabular model's matrix, or
an ONNX model's single tensor) and the same numeric outputs — it stacks them here once
(:meth:`Stacked.build`): the window profile takes the columns as they are, and the prediction
log builds its batch from the same arrays (:func:`modelyard.live.batches.from_stacked`)
instead of going back to one record per request. :meth:`Stacked.of` does the same for
observations queued one by one. Anything that does not stack (named tensors, text, requests
that asked for different outputs) is folded the general way, request by request.

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
>>> [o.request_id for o in stacked.observations()]
['r0', 'r1', 'r2']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter
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
    the input rows of each (None: one each); ``matrix`` the inputs, one row per input row, as
    the model took them (``tensor``: the name of its single input tensor, None for a tabular
    model's matrix); ``raw`` each output as the model gave it, stacked the same way.
    """

    model: str
    version: int
    ids: list[str]
    at: np.ndarray
    latency_ms: np.ndarray
    counts: np.ndarray | None
    matrix: np.ndarray
    raw: dict[str, np.ndarray]
    columns: list[str]  # the model's input columns
    tensor: str | None
    classes: list[Any] | None
    _observations: Sequence[Observation] | None = field(default=None, repr=False)

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
        stacked = cls.build(first.model, first.version, first.columns, first.classes,
                            [o.request_id for o in observations], [o.at for o in observations],
                            [o.latency_s for o in observations], [o.data for o in observations],
                            [o.outputs for o in observations])
        if stacked is not None:
            stacked._observations = observations
        return stacked

    @classmethod
    def build(cls, model: str, version: int, columns: list[str], classes: list[Any] | None,
              ids: Sequence[str], at: Sequence[float], latency_s: Sequence[float],
              data: Sequence[Any], outputs: Sequence[dict[str, Any]],
              counts: Sequence[int] | None = None) -> Stacked | None:
        """Requests of one model version given field by field (one entry per request), stacked;
        None when they are not all tabular alike. The work per request is numpy's and
        ``map``'s own loops in C: no Python statement runs once per request.

        With ``counts`` (each request's rows), ``data`` and ``outputs`` hold batches instead
        — the requests' rows stacked in order, as a batched model ran them."""
        unwrapped = single_tensor(data)
        if unwrapped is None:
            return None
        tensor, data = unwrapped
        head = data[0]
        if type(head) is not np.ndarray or head.ndim != 2 or head.dtype.kind not in "biuf":
            return None
        kind = head.dtype
        try:
            matrix = head if len(data) == 1 else np.concatenate(data)
        except (ValueError, TypeError):  # another width, or not 2-D
            return None
        if matrix.ndim != 2 or matrix.dtype != kind:
            return None
        names = outputs[0].keys()
        if not all(map(names.__eq__, map(dict.keys, outputs))):  # (C loops, no frame each)
            return None
        rows = len(matrix)
        requests = len(ids)
        raw: dict[str, np.ndarray] = {}
        for name in names:
            values = list(map(itemgetter(name), outputs))
            try:
                stacked = values[0] if len(values) == 1 else np.concatenate(values)
            except (ValueError, TypeError):  # a 0-d output, or widths that disagree
                return None
            if type(stacked) is not np.ndarray or stacked.dtype.kind not in "biuf" or (
                    stacked.ndim not in (1, 2)) or len(stacked) != rows:
                return None
            raw[name] = stacked
        per_request: np.ndarray | None = None
        if counts is not None:
            if sum(counts) != rows or len(counts) != requests:
                return None
            if rows != requests:
                per_request = np.array(counts, np.int64)
        elif rows != requests or (len(data) > 1 and any(map((1).__ne__, map(len, data)))):
            per_request = np.fromiter(map(len, data), np.int64, requests)
        return cls(
            model=model, version=version, ids=list(ids), at=np.array(at, np.float64),
            latency_ms=np.array(latency_s, np.float64) * 1000.0, counts=per_request,
            matrix=matrix, raw=raw, columns=list(columns), tensor=tensor, classes=classes,
        )

    @classmethod
    def concat(cls, parts: Sequence[Stacked]) -> Stacked:
        """Groups of one model version and one layout (:meth:`layout`) as one."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        counts = None
        if any(part.counts is not None for part in parts):
            counts = np.concatenate([part.counts if part.counts is not None
                                     else np.ones(part.requests, np.int64) for part in parts])
        return cls(
            model=first.model, version=first.version,
            ids=[request_id for part in parts for request_id in part.ids],
            at=np.concatenate([part.at for part in parts]),
            latency_ms=np.concatenate([part.latency_ms for part in parts]),
            counts=counts, matrix=np.concatenate([part.matrix for part in parts]),
            raw={name: np.concatenate([part.raw[name] for part in parts]) for name in first.raw},
            columns=first.columns, tensor=first.tensor, classes=first.classes,
        )

    def layout(self) -> tuple[Any, ...]:
        """Groups with equal layouts stack into one (:meth:`concat`)."""
        return (self.model, self.version, self.tensor, self.matrix.shape[1],
                self.matrix.dtype.str,
                tuple((name, values.shape[1:], values.dtype.str)
                      for name, values in self.raw.items()))

    @cached_property
    def _named(self) -> tuple[dict[str, np.ndarray], bool]:
        columns: dict[str, np.ndarray] = {}
        loggable = True
        for name, stacked in self.raw.items():
            named = output_columns(name, stacked, self.classes)
            if named is None:
                loggable = False
            else:
                columns.update(named)
        return columns, loggable

    @property
    def outputs(self) -> dict[str, np.ndarray]:
        """The outputs as named columns (see the module)."""
        return self._named[0]

    @property
    def loggable(self) -> bool:
        """Whether every output fits the log's column layout."""
        return self._named[1]

    @property
    def input_names(self) -> list[str]:
        """The profile's names for the matrix's columns ([] when too wide to profile)."""
        width = self.matrix.shape[1]
        if self.tensor is None:
            return list(self.columns) if width == len(self.columns) else [
                f"f{i}" for i in range(width)]
        if width == 1:
            return [self.tensor]
        if width == len(self.columns):
            return list(self.columns)
        if width <= MAX_INPUT_COLUMNS:
            return [f"{self.tensor}_{i}" for i in range(width)]
        return []

    @property
    def log_names(self) -> list[str]:
        """The log's names for the matrix's columns: the model's columns, else f0, f1, …"""
        width = self.matrix.shape[1]
        return list(self.columns) if len(self.columns) == width else [
            f"f{i}" for i in range(width)]

    def profile_columns(self) -> dict[str, np.ndarray]:
        """The columns a window profile takes: the inputs (unless too wide), then outputs."""
        columns = {name: self.matrix[:, i] for i, name in enumerate(self.input_names)}
        columns.update(self.outputs)
        return columns

    def bounds(self) -> np.ndarray:
        """Where each request's rows start, and one past the last row."""
        if self.counts is None:
            return np.arange(self.requests + 1)
        return np.concatenate([[0], np.cumsum(self.counts)])

    def observations(self) -> Sequence[Observation]:
        """The requests one by one again (for what takes them so: the log's JSON layout)."""
        if self._observations is None:
            edges = self.bounds().tolist()
            found = []
            for k, request_id in enumerate(self.ids):
                start, end = edges[k], edges[k + 1]
                rows = self.matrix[start:end]
                found.append(Observation(
                    self.model, self.version, request_id, float(self.at[k]),
                    float(self.latency_ms[k]) / 1000.0, end - start, self.columns,
                    rows if self.tensor is None else {self.tensor: rows},
                    {name: values[start:end] for name, values in self.raw.items()},
                    self.classes))
            self._observations = found
        return self._observations

    def take(self, keep: np.ndarray) -> Stacked:
        """The requests where ``keep`` (one bool per request) is true, with their rows."""
        picked = np.flatnonzero(keep).tolist()
        rows = keep if self.counts is None else np.repeat(keep, self.counts)
        return Stacked(
            self.model, self.version, [self.ids[i] for i in picked], self.at[picked],
            self.latency_ms[picked], None if self.counts is None else self.counts[picked],
            self.matrix[rows], {name: values[rows] for name, values in self.raw.items()},
            self.columns, self.tensor, self.classes,
        )


def single_tensor(data: Sequence[Any]) -> tuple[str | None, Sequence[Any]] | None:
    """Requests' inputs as one array each: as they are (``tensor`` None), or each request's
    only named tensor, under the same name for all (``tensor``: that name); None when a
    request has several tensors, or another name than the first."""
    head = data[0]
    if type(head) is not dict:
        return None, data
    if len(head) != 1:
        return None
    tensor = next(iter(head))
    try:
        return tensor, list(map(itemgetter(tensor), data))
    except (KeyError, TypeError):  # another tensor's name, or not a dict
        return None


def output_columns(name: str, values: np.ndarray, classes: list[Any] | None
                   ) -> dict[str, np.ndarray] | None:
    """One output (one row per input row) as the named columns profiles and the log take (see
    the module); None when it is too wide for columns."""
    flat = values.reshape(len(values), -1)
    if name == "predict_proba" and classes and flat.shape[1] == len(classes):
        return {f"{PROBABILITY_PREFIX}{label_of(c)}": flat[:, i] for i, c in enumerate(classes)}
    if flat.shape[1] == 1:
        return {PREDICTION if name == "predict" else name: flat[:, 0]}
    if flat.shape[1] <= MAX_OUTPUT_COLUMNS:
        return {f"{name}_{i}": flat[:, i] for i in range(flat.shape[1])}
    return None
