"""What the data plane hands to live monitoring, and one stacking round of it.

The collector's queue holds three kinds of hand-off: a request recorded alone (``Request``,
a plain tuple: the cheapest thing to build on the hot path), a batched model's answered batch
or an unbatched group the column buffers did not take (:class:`AnsweredBatch`; see
:mod:`.columns` for those they do take) and a failed request (:class:`Failure`); other callers
hand :class:`Observation` objects one by one. :func:`stack_round` turns what one round took into
:class:`~modelyard.live.stacked.Stacked` groups, one per layout, and what does not stack
(named tensors, text, requests that asked for other outputs) into loose observations, which a
fold takes as one table (:func:`frame_of`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelyard.live.stacked import MAX_INPUT_COLUMNS, Stacked, output_columns
from modelyard.serving.model import ServedModel
from modelyard.serving.observe import Observation

# what Collector.record queues: the data plane's model, request id, at, latency, rows, data,
# outputs
Request = tuple[ServedModel, str, float, float, int, Any, dict[str, np.ndarray]]


@dataclass(slots=True)
class AnsweredBatch:
    """What Collector.record_batch queues (see Observer.record_batch): of each request only
    its id, start and rows, so that its own objects (its input, its ``Prepared``) are freed
    by the event loop as soon as it is answered, as with monitoring off."""

    model: ServedModel
    ids: list[str]
    started: list[float]
    rows: list[int]
    at: float
    finished: float
    data: Any
    outputs: dict[str, np.ndarray]

    @staticmethod
    def stack(model: ServedModel, batches: list[AnsweredBatch]) -> Stacked | None:
        """Batches of ``model`` as one group (their inputs and outputs are stacked already:
        one concatenation per column for all of them), or None when they do not stack
        alike (see :mod:`.stacked`)."""
        return Stacked.build(
            model.name, model.version, model.columns, model.manifest.classes,
            [i for batch in batches for i in batch.ids],
            [batch.at for batch in batches for _ in batch.ids],
            [batch.finished - s for batch in batches for s in batch.started],
            [batch.data for batch in batches], [batch.outputs for batch in batches],
            counts=[n for batch in batches for n in batch.rows])

    def observations(self) -> list[Observation]:
        """The batch's requests one by one, each with its rows of the input and outputs."""
        model, at, finished, data = self.model, self.at, self.finished, self.data
        pieces = ServedModel.split(self.outputs, self.rows)
        found, start = [], 0
        for request_id, began, rows, piece in zip(self.ids, self.started, self.rows, pieces,
                                                  strict=True):
            end = start + rows
            if isinstance(data, dict):
                own: Any = {name: values[start:end] for name, values in data.items()}
            elif isinstance(data, pd.DataFrame):
                own = data.iloc[start:end]
            else:
                own = data[start:end]
            found.append(Observation(model.name, model.version, request_id, at,
                                     finished - began, rows, model.columns, own, piece,
                                     model.manifest.classes))
            start = end
        return found


@dataclass(slots=True)
class Failure:
    model: str
    version: int
    at: float
    latency_s: float


def frame_of(observations: list[Observation]) -> pd.DataFrame:
    """One table of the observations' input rows and outputs (same model version)."""
    first = observations[0]
    inputs = _inputs([o.data for o in observations], first)
    outputs = _outputs([o.outputs for o in observations], first.classes,
                       [o.rows for o in observations])
    if not len(inputs.columns):  # nothing profiled of the inputs: still one row per input row
        inputs = pd.DataFrame(index=pd.RangeIndex(sum(o.rows for o in observations)))
    outputs.index = inputs.index
    return pd.concat([inputs, outputs], axis=1) if len(outputs.columns) else inputs


def _inputs(parts: list[Any], first: Observation) -> pd.DataFrame:
    if all(isinstance(p, np.ndarray) and p.ndim == 2 for p in parts):
        matrix = np.vstack(parts)
        names = first.columns if matrix.shape[1] == len(first.columns) else [
            f"f{i}" for i in range(matrix.shape[1])
        ]
        return pd.DataFrame(matrix, columns=names)
    if all(isinstance(p, pd.DataFrame) for p in parts):
        return pd.concat([pd.DataFrame(p) for p in parts], ignore_index=True)
    if all(isinstance(p, dict) for p in parts):
        columns: dict[str, np.ndarray] = {}
        for name in parts[0]:
            stacked = np.concatenate([np.asarray(p[name]) for p in parts])
            flat = stacked.reshape(len(stacked), -1)
            if flat.shape[1] == 1:
                columns[name] = flat[:, 0]
            elif flat.shape[1] == len(first.columns) and len(parts[0]) == 1:
                columns.update({c: flat[:, i] for i, c in enumerate(first.columns)})
            elif flat.shape[1] <= MAX_INPUT_COLUMNS:
                columns.update({f"{name}_{i}": flat[:, i] for i in range(flat.shape[1])})
        return pd.DataFrame(columns)
    frames = [p if isinstance(p, pd.DataFrame) else pd.DataFrame(p, columns=first.columns)
              for p in parts]
    return pd.concat(frames, ignore_index=True)


def _outputs(parts: list[dict[str, np.ndarray]], classes: list[Any] | None,
             rows: list[int]) -> pd.DataFrame:
    """The outputs as columns (``rows``: each request's input rows); an output some requests
    did not ask for is missing (NaN) on their rows."""
    columns: dict[str, np.ndarray] = {}
    names = list(dict.fromkeys(name for part in parts for name in part))
    for name in names:
        present = [np.asarray(p[name]) for p in parts if name in p]
        if len(present) < len(parts):
            width = int(np.prod(present[0].shape[1:])) if present[0].ndim > 1 else 1
            if present[0].dtype.kind not in "fiub":
                continue  # text outputs without a value to stand for "missing"
            filled = [np.asarray(p[name], dtype=np.float64).reshape(n, -1) if name in p
                      else np.full((n, width), np.nan) for p, n in zip(parts, rows, strict=True)]
            stacked = np.concatenate(filled)
        else:
            stacked = np.concatenate(present)
        columns.update(output_columns(name, stacked, classes) or {})  # too wide: left out
    return pd.DataFrame(columns)


Item = Request | AnsweredBatch | Observation | Failure


def stack_round(taken: list[Item]
                ) -> tuple[dict[tuple[Any, ...], Stacked], list[Observation | Failure], int]:
    """What one round took: its stacked groups (one per layout, by layout), what does not
    stack, and how many requests it held."""
    recorded = [item for item in taken if type(item) is tuple]
    others = [item for item in taken if type(item) is not tuple] if len(
        recorded) < len(taken) else []
    stacked: list[Stacked] = []
    loose: list[Observation | Failure] = []
    requests = len(taken)
    if others:
        batches = [item for item in others if type(item) is AnsweredBatch]
        if batches:
            others = [item for item in others if type(item) is not AnsweredBatch]
            requests += sum(len(batch.ids) for batch in batches) - len(batches)
            _stack_batches(batches, stacked, loose)
    if recorded:
        _stack_requests(recorded, stacked, loose)
    if others:
        _stack_observations(others, stacked, loose)
    by_layout: dict[tuple[Any, ...], list[Stacked]] = {}
    for found in stacked:  # (this round's batches as one group: fewer objects held)
        by_layout.setdefault(found.layout(), []).append(found)
    return ({layout: Stacked.concat(group) for layout, group in by_layout.items()}, loose,
            requests)


def _stack_batches(batches: list[AnsweredBatch], stacked: list[Stacked],
                   loose: list[Observation | Failure]) -> None:
    batched: dict[ServedModel, list[AnsweredBatch]] = {}
    for batch in batches:
        batched.setdefault(batch.model, []).append(batch)
    for model, of_model in batched.items():
        found = AnsweredBatch.stack(model, of_model)  # the round's batches at once
        if found is not None:
            stacked.append(found)
            continue
        for batch in of_model:  # (they differ: outputs asked for, widths)
            found = AnsweredBatch.stack(model, [batch])
            if found is None:
                loose.extend(batch.observations())
            else:
                stacked.append(found)


def _stack_requests(recorded: list[Request], stacked: list[Stacked],
                    loose: list[Observation | Failure]) -> None:
    models = [item[0] for item in recorded]
    if models.count(models[0]) == len(models):  # the common case: one model
        groups: Any = [(models[0], recorded)]
    else:
        by_model: dict[ServedModel, list[Request]] = {}
        for item in recorded:
            by_model.setdefault(item[0], []).append(item)
        groups = by_model.items()
    for model, items in groups:
        found = _stacked(model, items)
        if found is None and len({tuple(i[6]) for i in items}) > 1:
            parts: dict[tuple[str, ...], list[Request]] = {}  # asked for other outputs
            for item in items:
                parts.setdefault(tuple(item[6]), []).append(item)
            for part in parts.values():
                _add(model, part, _stacked(model, part), stacked, loose)
            continue
        _add(model, items, found, stacked, loose)


def _stack_observations(others: list[Any], stacked: list[Stacked],
                        loose: list[Observation | Failure]) -> None:
    by_version: dict[tuple[str, int], list[Observation]] = {}
    for other in others:
        if isinstance(other, Observation):
            by_version.setdefault((other.model, other.version), []).append(other)
        elif isinstance(other, Failure):
            loose.append(other)
    for observations in by_version.values():
        found = Stacked.of(observations)
        if found is None:
            loose.extend(observations)
        else:
            stacked.append(found)


def _add(model: ServedModel, items: list[Request], found: Stacked | None,
         stacked: list[Stacked], loose: list[Observation | Failure]) -> None:
    if found is not None:
        stacked.append(found)
        return
    loose.extend(Observation(model.name, model.version, i[1], i[2], i[3], i[4],
                             model.columns, i[5], i[6], model.manifest.classes)
                 for i in items)


def _stacked(model: ServedModel, items: list[Request]) -> Stacked | None:
    _, ids, at, latency, _, data, outputs = zip(*items, strict=True)
    return Stacked.build(model.name, model.version, model.columns, model.manifest.classes,
                         ids, at, latency, data, outputs)
