"""Answered requests written by the model thread straight into column buffers, one per model
version and layout, until the collector's next fold.

A batched model's requests run as batches (:mod:`modelyard.serving.batching`); an unbatched
model's travel in groups: those one event-loop iteration read run one by one on a model thread
(:mod:`modelyard.serving.unbatched`). Once a batch or a group is answered, the model thread
copies its inputs and outputs into the buffers here (:meth:`Buffers.add_batch`: the input and
outputs the model ran as one; :meth:`Buffers.add`: each request's own), rows after the rows
already there; the ids, times and latencies go into flat arrays beside them.
The fold then takes the buffers as they are (:meth:`Buffers.take`): one
:class:`~modelyard.live.stacked.Stacked` group per layout, with no other copy.

What this saves against handing each batch or group to the collector's queue (the event
loop's call, and an object per batch that lives on until the collector's thread wakes): no
object lives per group between the model thread and the fold (a group's own arrays are freed
on the thread that made them while they are still in its cache), no stacking round per 10 ms,
no second concatenation. The copy is made where the rows were just written; the model thread
pays a lock and one copy per column.

The buffers lay their arrays out column by column (Fortran order), as their readers take them:
the fold sketches each column, and the prediction log makes each an Arrow column. Row by row,
each column's read gathered one value from every row: 64 strided passes over the matrix for a
64-feature model, and a copy for Arrow. On 8,000 rows of 64 FP32 features in one process
(``benchmarks/serving/column_layout.py``) the fold went from 1.48 to 1.06 µs a row and the
log's table from 0.35 to 0.06, while the model thread's copy rose from 0.06 to 0.20 µs a row
for batches of 64 rows and from 0.50 to 0.62 for groups of eight one-row requests.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Sequence
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

from modelyard.live.stacked import Stacked, single_tensor
from modelyard.serving.model import Prepared, ServedModel

_DATA = attrgetter("data")
_ROWS = attrgetter("rows")
_ID = attrgetter("request_id")
_STARTED = attrgetter("started")
_SMALLEST = 256  # rows a new buffer holds at first
_NUMERIC = "biuf"


class ColumnBuffer:
    """One model version's requests of one layout: inputs and outputs as growing arrays, and
    each request's id, time (epoch s), latency (s) and rows."""

    def __init__(self, model: ServedModel, tensor: str | None, matrix: np.ndarray,
                 outputs: dict[str, np.ndarray], capacity: int) -> None:
        self.model = model
        self.tensor = tensor
        self.names = tuple(outputs)
        self.matrix = _rows_like(matrix, capacity)
        self.raw = {name: _rows_like(value, capacity) for name, value in outputs.items()}
        self.rows = 0
        self.ids: list[str] = []
        self.started = array("d")  # each request's start (perf_counter)
        self.counts: array[int] | None = None  # each request's rows; None: one each so far
        self.at = array("d")  # each group's time (epoch s), its end (perf_counter) and size
        self.ends = array("d")
        self.sizes = array("q")

    @staticmethod
    def fits(matrix: np.ndarray, outputs: dict[str, np.ndarray]) -> bool:
        """Whether a group with this first input and these first outputs can be buffered."""
        return matrix.ndim == 2 and matrix.dtype.kind in _NUMERIC and all(
            type(value) is np.ndarray and value.ndim in (1, 2) and value.dtype.kind in _NUMERIC
            for value in outputs.values())

    @property
    def requests(self) -> int:
        return len(self.ids)

    def add(self, parts: Sequence[Prepared], data: Sequence[np.ndarray],
            results: Sequence[dict[str, np.ndarray]], chunks: list[int],
            finished: float) -> bool:
        """Append requests answered together: their inputs and outputs in chunks of
        ``chunks`` rows each, in order (each request's own, or one chunk for a stacked batch);
        False, with nothing added, when a chunk does not fit: another width or dtype, an
        output without one row per input row."""
        start = self.rows
        end = start + sum(chunks)
        if end > len(self.matrix):
            self._grow(end)
        try:
            # (rows past self.rows are free: a refused group leaves only unused rows written)
            np.concatenate(data, out=self.matrix[start:end], casting="no")
            for name in self.names:
                values = list(map(itemgetter(name), results))
                if list(map(len, values)) != chunks:  # (len of a 0-d output raises TypeError)
                    return False
                np.concatenate(values, out=self.raw[name][start:end], casting="no")
        except (ValueError, TypeError, KeyError):  # another width or dtype; a missing output
            return False
        count = len(parts)
        rows = chunks if len(chunks) == count else list(map(_ROWS, parts))
        if self.counts is not None:
            self.counts.extend(rows)
        elif end - start != count or 0 in rows:  # the first request of other than one row
            self.counts = array("q", [1] * len(self.ids))
            self.counts.extend(rows)
        self.rows = end
        self.ids.extend(map(_ID, parts))
        self.started.extend(map(_STARTED, parts))
        self.at.append(time.time())
        self.ends.append(finished)
        self.sizes.append(count)
        return True

    def _grow(self, needed: int) -> None:
        capacity = max(needed, 2 * len(self.matrix))
        self.matrix = _rows_like(self.matrix, capacity, self.rows)
        self.raw = {name: _rows_like(values, capacity, self.rows)
                    for name, values in self.raw.items()}

    def stacked(self) -> Stacked:
        """What the buffer holds as one stacked group (views of its arrays)."""
        model = self.model
        sizes = np.frombuffer(self.sizes, np.int64)
        ends = np.repeat(np.frombuffer(self.ends, np.float64), sizes)
        return Stacked(
            model=model.name, version=model.version, ids=self.ids,
            at=np.repeat(np.frombuffer(self.at, np.float64), sizes),
            latency_ms=(ends - np.frombuffer(self.started, np.float64)) * 1000.0,
            counts=None if self.counts is None else np.frombuffer(self.counts, np.int64),
            matrix=self.matrix[:self.rows],
            raw={name: values[:self.rows] for name, values in self.raw.items()},
            columns=list(model.columns), tensor=self.tensor, classes=model.manifest.classes,
        )


def _rows_like(values: np.ndarray, capacity: int, kept: int = 0) -> np.ndarray:
    """An array of ``capacity`` rows shaped and typed as ``values``' rows, holding its first
    ``kept`` rows; column by column in memory (see the module)."""
    found = np.empty((capacity, *values.shape[1:]), values.dtype, order="F")
    found[:kept] = values[:kept]
    return found


# a buffer's key: the model, its input tensor's name (None: a matrix), the outputs asked for,
# and the input's dtype and width
_Key = tuple[ServedModel, str | None, tuple[str, ...], np.dtype[Any], int]


class Buffers:
    """The column buffers of every model version served, filled by model threads and taken
    whole by the collector's fold (see the module). Thread-safe.

    ``max_requests``: requests held before new groups are dropped (counted in ``dropped``).
    """

    def __init__(self, max_requests: int = 200_000) -> None:
        self.max_requests = max_requests
        self.dropped = 0
        self._buffers: dict[_Key, ColumnBuffer | None] = {}  # None: that layout does not fit
        self._held = 0
        self._sizes: dict[_Key, int] = {}  # rows each layout held at the last take
        self._withdrawn: set[str] = set()
        self._lock = threading.Lock()

    def add(self, model: ServedModel, parts: Sequence[Prepared],
            results: list[dict[str, np.ndarray]], finished: float) -> bool:
        """Take a group a model thread answered one request at a time (each request's outputs
        in ``results``; ``finished``: ``perf_counter()`` when the last one was answered);
        False when it does not fit a buffer (see the module): the caller then hands it over
        another way."""
        first = results[0]
        try:  # the same number of outputs each (a failed request's exception has no len);
            # that each has every one of the first's is checked as they are copied
            if not all(map(len(first).__eq__, map(len, results))):
                return False
        except TypeError:
            return False
        unwrapped = single_tensor(list(map(_DATA, parts)))
        if unwrapped is None:
            return False
        tensor, data = unwrapped
        return self._add(model, parts, tensor, data, results, list(map(_ROWS, parts)),
                         finished)

    def add_batch(self, model: ServedModel, parts: Sequence[Prepared], data: Any,
                  outputs: dict[str, np.ndarray], finished: float) -> bool:
        """Take a batch a model thread answered as one: ``data`` the input it ran on (the
        requests' rows stacked in order) and ``outputs`` its outputs. As :meth:`add`."""
        unwrapped = single_tensor([data])
        if unwrapped is None:
            return False
        tensor, stacked = unwrapped
        return self._add(model, parts, tensor, stacked, [outputs], [len(stacked[0])],
                         finished)

    def _add(self, model: ServedModel, parts: Sequence[Prepared], tensor: str | None,
             data: Sequence[Any], results: Sequence[dict[str, np.ndarray]],
             chunks: list[int], finished: float) -> bool:
        head = data[0]
        if type(head) is not np.ndarray or head.ndim != 2:
            return False
        first = results[0]
        key = (model, tensor, tuple(first), head.dtype, head.shape[1])
        with self._lock:
            if key not in self._buffers:  # the first group of this layout since the take
                fits = ColumnBuffer.fits(head, first)
                capacity = max(_SMALLEST, self._sizes.get(key, 0) * 5 // 4)
                self._buffers[key] = ColumnBuffer(model, tensor, head, first,
                                                  capacity) if fits else None
            buffer = self._buffers[key]
            if buffer is None:
                return False
            if self._held >= self.max_requests:
                self.dropped += len(parts)
                return True
            if not buffer.add(parts, data, results, chunks, finished):
                return False
            self._held += len(parts)
            return True

    @property
    def held(self) -> int:
        """Requests buffered since the last take."""
        return self._held

    def withdraw(self, request_ids: list[str]) -> None:
        """Requests given to :meth:`add` whose callers stopped waiting for their answers: left
        out of the next :meth:`take` (a take that came first keeps them)."""
        with self._lock:
            self._withdrawn.update(request_ids)

    def take(self) -> list[Stacked]:
        """Everything buffered since the last take, one stacked group per layout; the buffers
        start again empty."""
        with self._lock:
            buffers, self._buffers = self._buffers, {}
            withdrawn, self._withdrawn = self._withdrawn, set()
            self._held = 0
            # (only the layouts just taken: a model no longer served is not kept alive here)
            self._sizes = {key: buffer.rows for key, buffer in buffers.items()
                           if buffer is not None}
        found = []
        for buffer in buffers.values():
            if buffer is None or not buffer.requests:
                continue
            stacked = buffer.stacked()
            if withdrawn:
                keep = np.fromiter((i not in withdrawn for i in stacked.ids), bool,
                                   stacked.requests)
                if not keep.all():
                    if not keep.any():
                        continue
                    stacked = stacked.take(keep)
            found.append(stacked)
        return found
