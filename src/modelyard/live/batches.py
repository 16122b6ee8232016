"""Prediction-log batches: many logged requests as one Arrow table, stored as one blob.

The log stores what the writer took in one round as one table per model version, encoded as a
compressed Arrow IPC stream, and indexes each request (id and time) beside it. Building a
batch from stacked numpy arrays costs about 1 µs a request and storing it about 2 µs, where a
row of JSON per request cost about 24 µs (the measurements are in ``benchmarks/RESULTS.md``).

A batch has one of two layouts, named in its schema's metadata:

- ``rows``: tabular requests — the inputs a 2-D numeric array (or a dict holding one, as the
  serving layer passes a tabular model's tensor) and numeric outputs. One table row per input
  row: ``request_id``, ``ts``, ``latency_ms``, then ``in:<column>`` and ``out:<column>``,
  the outputs named as window profiles name them (``prediction``, ``proba_<class>``).
- ``requests``: anything else (named tensors, text, a mapping per row). One table row per
  request with its inputs and outputs as JSON text, exactly the row :func:`row_of` makes.

:meth:`Batch.rows` gives the requests back in the row shape every reader takes.

>>> import numpy as np
>>> records = [PredictionRecord(f"r{i}", "churn", 1, np.array([[1.0, 2.0 * i]]),
...                             {"predict": np.array([i])}, 1.5, 1.7e9 + i, ["a", "b"])
...            for i in range(3)]
>>> (batch,) = encode(records)
>>> batch.layout, batch.requests, batch.ts_min < batch.ts_max
('rows', 3, True)
>>> again = Batch.from_payload(batch.key, "churn", 1, batch.payload())
>>> [(row["request_id"], row["inputs"], row["outputs"]) for row in again.rows()][2]
('r2', {'a': [1.0], 'b': [4.0]}, {'prediction': [2]})
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from modelyard.live.journal import to_json
from modelyard.live.records import PredictionRecord, Row, iso, row_of
from modelyard.live.stacked import Stacked
from modelyard.monitoring._tables import label_of

ROWS = "rows"
REQUESTS = "requests"
_INPUT = "in:"
_OUTPUT = "out:"
_MAX_OUTPUT_COLUMNS = 16
# LZ4 frames, on the writer's own thread (Arrow's pool would add a thread hop per batch).
# Arrow compresses each column buffer with a one-shot call. With zstd each call builds and
# clears a new context of tens of KB, ~70 times a batch for a 64-feature model, and that
# churn evicted the model's own data from the core's caches: HGB with batching at c=64 served
# 7.3k req/s with monitoring on under zstd against 8.5k under LZ4 (3 alternating pairs,
# benchmarks/RESULTS.md). LZ4's payloads are larger on compressible inputs (digits: 130
# against 53 bytes a request; breast cancer: 118 against 92). Readers take either codec: it
# is written in each IPC message, so stored batches of both kinds stay readable.
_OPTIONS = ipc.IpcWriteOptions(compression="lz4", use_threads=False)


@dataclass
class Batch:
    """Logged requests of one model version as one table (see the module's layouts).

    ``ids``, when given, is each request's id in order (a request of several rows once), as
    the writer knows it from stacked requests; otherwise it is read from the table.
    """

    key: str  # unique: a batch replayed from the journal is stored once
    model: str
    version: int
    table: pa.Table
    ids: list[str] | None = field(default=None, repr=False)

    @property
    def layout(self) -> str:
        layout: bytes = (self.table.schema.metadata or {}).get(b"layout", b"")
        return layout.decode()

    @cached_property
    def _requests(self) -> list[str]:
        if self.ids is not None:
            return self.ids
        ids = self.table.column("request_id").to_numpy(zero_copy_only=False)
        if self.layout == ROWS and len(ids) > 1:  # a request of several rows is one entry
            micros = self.table.column("ts").cast(pa.int64()).to_numpy()
            first = np.ones(len(ids), dtype=bool)
            first[1:] = (ids[1:] != ids[:-1]) | (micros[1:] != micros[:-1])
            ids = ids[first]
        return list(ids.tolist())

    def request_ids(self) -> list[str]:
        """The ids of the batch's requests, each once, in order of first appearance."""
        return list(dict.fromkeys(self._requests))

    def ids_in_order(self) -> list[str]:
        """The ids of the batch's requests in order; an id twice only if a client sent it for
        two requests (a store that keeps each once drops the repeat)."""
        return self._requests

    @property
    def requests(self) -> int:
        return len(self._requests)

    @cached_property
    def _span(self) -> tuple[str, str]:
        extremes = pc.min_max(self.table.column("ts"))
        low, high = extremes["min"].as_py(), extremes["max"].as_py()
        if low is None:
            raise ValueError("an empty batch has no time span")
        return iso(low), iso(high)

    @property
    def ts_min(self) -> str:
        return self._span[0]

    @property
    def ts_max(self) -> str:
        return self._span[1]

    def since(self, cutoff: datetime) -> Batch:
        """The same batch without its requests logged before ``cutoff`` (retention)."""
        stamps = self.table.column("ts")
        kept = self.table.filter(pc.greater_equal(stamps, pa.scalar(cutoff, stamps.type)))
        return Batch(self.key, self.model, self.version, kept)

    def payload(self) -> bytes:
        """The table as an LZ4-compressed Arrow IPC stream."""
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, self.table.schema, options=_OPTIONS) as writer:
            writer.write_table(self.table)
        return bytes(sink.getvalue().to_pybytes())

    @classmethod
    def from_payload(cls, key: str, model: str, version: int, payload: bytes) -> Batch:
        with ipc.open_stream(pa.py_buffer(payload)) as reader:
            return cls(key, model, version, reader.read_all())

    def to_journal(self) -> dict[str, Any]:
        """A JSON-ready form for the local journal."""
        return {"batch": self.key, "model": self.model, "version": self.version,
                "payload": base64.b64encode(self.payload()).decode("ascii")}

    @classmethod
    def from_journal(cls, entry: Mapping[str, Any]) -> Batch:
        return cls.from_payload(entry["batch"], entry["model"], int(entry["version"]),
                                base64.b64decode(entry["payload"]))

    def rows(self) -> list[Row]:
        """The requests in the row shape of :func:`~modelyard.live.records.row_of`."""
        return list(_rows(self))


def is_journal_batch(entry: Any) -> bool:
    return isinstance(entry, Mapping) and "batch" in entry and "payload" in entry


def encode(records: Sequence[PredictionRecord]) -> list[Batch]:
    """The records as batches, one per model version and layout, in order of first arrival.

    Raises nothing for a bad record: :func:`~modelyard.live.records.checked` sorts those out
    first.
    """
    groups: dict[tuple[Any, ...], list[PredictionRecord]] = {}
    names: dict[int, tuple[Any, ...]] = {}  # the records keep their lists alive meanwhile
    for record in records:
        groups.setdefault(_layout_key(record, names), []).append(record)
    batches = []
    for key, group in groups.items():
        table = _rows_table(group) if key[2] == ROWS else _requests_table(group)
        batches.append(Batch(uuid.uuid4().hex, group[0].model, int(group[0].version), table))
    return batches


def from_rows(rows: Sequence[Row]) -> list[Batch]:
    """Rows in :func:`row_of`'s shape (an old journal, a migration) as ``requests`` batches.

    A batch's key comes from its requests' ids and times, so the same rows given twice (a
    journal segment replayed after a crash) make the same batch, stored once.
    """
    groups: dict[tuple[str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row["model"], int(row["version"])), []).append(row)
    batches = []
    for (model, version), group in groups.items():
        digest = hashlib.blake2b(f"{model}\n{version}".encode(), digest_size=16)
        for row in group:
            digest.update(f"\n{row['request_id']}\t{row['ts']}".encode())
        batches.append(Batch(digest.hexdigest(), model, version, _table_of_rows(group)))
    return batches


# -- building ---------------------------------------------------------------------------------


def _matrix(record: PredictionRecord) -> np.ndarray | None:
    """The record's inputs as one 2-D numeric array, when they are one."""
    data = record.inputs
    if isinstance(data, dict) and len(data) == 1:  # the serving layer's {tensor name: array}
        (data,) = data.values()
    if type(data) is np.ndarray and data.ndim == 2 and data.dtype.kind in "biuf":
        return data
    return None


def _output_shape(record: PredictionRecord, rows: int) -> tuple[Any, ...] | None:
    shape = []
    for name, value in record.outputs.items():
        if type(value) is not np.ndarray or value.dtype.kind not in "biuf" or (
                value.ndim not in (1, 2) or len(value) != rows):
            return None
        width = 1 if value.ndim == 1 else value.shape[1]
        if width > _MAX_OUTPUT_COLUMNS and not (name == "predict_proba" and record.classes):
            return None
        shape.append((name, width, value.dtype.str))
    return tuple(shape)


def _layout_key(record: PredictionRecord, names: dict[int, tuple[Any, ...]]) -> tuple[Any, ...]:
    """Records with equal keys go in one table. ``names`` keeps the column names and classes
    seen in this call by identity: the serving layer passes its model's own lists."""
    matrix = _matrix(record)
    if matrix is not None:
        outputs = _output_shape(record, len(matrix))
        if outputs is not None:
            return (record.model, record.version, ROWS, _named(record.columns, names),
                    matrix.shape[1], matrix.dtype.str, outputs, _named(record.classes, names))
    return (record.model, record.version, REQUESTS)


def _named(values: Sequence[Any] | None, names: dict[int, tuple[Any, ...]]) -> Any:
    if values is None:
        return None
    found = names.get(id(values))
    if found is None:
        found = names[id(values)] = tuple(label_of(value) for value in values)
    return found


def _rows_table(records: list[PredictionRecord]) -> pa.Table:
    first = records[0]
    matrices = [_matrix(r) for r in records]
    counts = np.fromiter((len(m) for m in matrices), np.int64, len(records))  # type: ignore[arg-type]
    inputs = np.vstack(matrices)  # type: ignore[arg-type]
    width = inputs.shape[1]
    names = list(first.columns) if len(first.columns) == width else [f"f{i}" for i in range(width)]
    now = datetime.now(UTC).timestamp()
    stamps = np.fromiter((now if r.at is None else r.at for r in records), np.float64, len(records))
    latency = np.fromiter((r.latency_ms for r in records), np.float64, len(records))
    outputs: dict[str, np.ndarray] = {}
    for name, _, _ in _output_shape(first, len(matrices[0])) or ():  # type: ignore[arg-type]
        stacked = np.concatenate([r.outputs[name] for r in records])
        flat = stacked.reshape(len(stacked), -1)
        if name == "predict_proba" and first.classes and flat.shape[1] == len(first.classes):
            for i, label in enumerate(first.classes):
                outputs[f"proba_{label_of(label)}"] = flat[:, i]
        elif flat.shape[1] == 1:
            outputs["prediction" if name == "predict" else str(name)] = flat[:, 0]
        else:
            for i in range(flat.shape[1]):
                outputs[f"{name}_{i}"] = flat[:, i]
    return _columns_table([r.request_id for r in records], stamps, latency, counts, inputs,
                          names, outputs)


def _columns_table(ids: list[str], at: np.ndarray, latency_ms: np.ndarray,
                   counts: np.ndarray | None, inputs: np.ndarray, names: Sequence[str],
                   outputs: Mapping[str, np.ndarray]) -> pa.Table:
    """A ``rows`` table: per-request ``ids``, ``at`` (epoch s) and ``latency_ms`` spread over
    each request's ``counts`` rows (None: one each); ``inputs`` one row per input row."""
    micros = np.round(at * 1e6).astype(np.int64)
    if counts is not None and not (counts == 1).all():
        request_id: Any = pa.array(np.repeat(np.array(ids, dtype=object), counts), pa.string())
        micros, latency_ms = np.repeat(micros, counts), np.repeat(latency_ms, counts)
    else:
        request_id = pa.array(ids, pa.string())
    columns: dict[str, Any] = {
        "request_id": request_id,
        "ts": pa.array(micros, pa.timestamp("us", tz="UTC")),
        "latency_ms": latency_ms,
    }
    for i, name in enumerate(names):
        columns[_INPUT + str(name)] = inputs[:, i]
    for name, values in outputs.items():
        columns[_OUTPUT + name] = values
    return pa.table(columns).replace_schema_metadata({"layout": ROWS})


def from_stacked(groups: Sequence[Stacked]) -> Batch:
    """One ``rows`` batch of stacked requests of one model version whose inputs and outputs
    have the same columns (the collector's groups of one round or several)."""
    first = groups[0]
    if len(groups) == 1:
        ids, at, latency, inputs = first.ids, first.at, first.latency_ms, first.matrix
        counts = first.counts
        outputs = first.outputs
    else:
        ids = [request_id for group in groups for request_id in group.ids]
        at = np.concatenate([group.at for group in groups])
        latency = np.concatenate([group.latency_ms for group in groups])
        inputs = np.concatenate([group.matrix for group in groups])
        counts = None
        if any(group.counts is not None for group in groups):
            counts = np.concatenate([group.counts if group.counts is not None
                                     else np.ones(group.requests, np.int64) for group in groups])
        outputs = {name: np.concatenate([group.outputs[name] for group in groups])
                   for name in first.outputs}
    table = _columns_table(ids, at, latency, counts, inputs, first.log_names, outputs)
    return Batch(uuid.uuid4().hex, first.model, int(first.version), table, ids)


def layout_of(group: Stacked) -> tuple[Any, ...]:
    """Stacked groups with equal layouts go in one batch."""
    return (group.model, group.version, tuple(group.log_names), group.matrix.shape[1],
            group.matrix.dtype.str, tuple((n, v.dtype.str) for n, v in group.outputs.items()))


def _requests_table(records: list[PredictionRecord]) -> pa.Table:
    return _table_of_rows([row_of(record) for record in records])


def _table_of_rows(rows: Sequence[Row]) -> pa.Table:
    return pa.table({
        "request_id": pa.array([row["request_id"] for row in rows], pa.string()),
        "ts": pa.array([datetime.fromisoformat(row["ts"]) for row in rows],
                       pa.timestamp("us", tz="UTC")),
        "latency_ms": pa.array([float(row["latency_ms"]) for row in rows], pa.float64()),
        "inputs": pa.array([to_json(row["inputs"]).decode() for row in rows], pa.string()),
        "outputs": pa.array([to_json(row["outputs"]).decode() for row in rows], pa.string()),
    }).replace_schema_metadata({"layout": REQUESTS})


# -- reading ----------------------------------------------------------------------------------


def _iso_all(micros: np.ndarray) -> list[str]:
    """Epoch microseconds as the store's ISO text, all at once (0.35 µs each)."""
    text = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us")
    return list(np.char.add(text, "+00:00").tolist())


def _rows(batch: Batch) -> Iterator[Row]:
    table = batch.table
    ids = table.column("request_id").to_pylist()
    stamps = table.column("ts").cast(pa.int64()).to_pylist()
    text = _iso_all(np.asarray(stamps, dtype=np.int64))
    latency = table.column("latency_ms").to_pylist()
    if batch.layout != ROWS:
        inputs = table.column("inputs").to_pylist()
        outputs = table.column("outputs").to_pylist()
        for i, request_id in enumerate(ids):
            yield {"request_id": request_id, "ts": text[i], "model": batch.model,
                   "version": batch.version, "latency_ms": latency[i],
                   "inputs": orjson.loads(inputs[i]), "outputs": orjson.loads(outputs[i])}
        return
    parts = [(name.removeprefix(_INPUT), table.column(name).to_pylist())
             for name in table.column_names if name.startswith(_INPUT)]
    outs = [(name.removeprefix(_OUTPUT), table.column(name).to_pylist())
            for name in table.column_names if name.startswith(_OUTPUT)]
    start = 0
    total = len(ids)
    while start < total:
        end = start + 1
        while end < total and ids[end] == ids[start] and stamps[end] == stamps[start]:
            end += 1
        yield {"request_id": ids[start], "ts": text[start], "model": batch.model,
               "version": batch.version, "latency_ms": latency[start],
               "inputs": {name: values[start:end] for name, values in parts},
               "outputs": {name: values[start:end] for name, values in outs}}
        start = end
