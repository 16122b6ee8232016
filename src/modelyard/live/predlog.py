"""The prediction log: sampled requests with their inputs and outputs, written in batches.

:meth:`PredictionLog.submit` is the hot path's only cost: a sampling decision and one
``deque.append``. A writer thread takes what has queued every ``flush_interval_s`` (sooner
once ``batch_size`` records wait) and stores it with one multi-row ``INSERT`` into the
``prediction_log`` table, or as one Parquet file per model, version and day under
``<root>/model=<m>/version=<v>/date=YYYY-MM-DD/`` (the user's choice of sink).

Nothing accepted is lost quietly. When the sink fails (database down), the batch goes to the
local :class:`~modelyard.live.journal.Journal` and later batches follow it there; a
:class:`~modelyard.live.journal.Replayer` thread replays the journal once the sink works
again (every ``retry_s``, backing off to ``max_backoff_s``), and again after a restart. When
the in-memory queue is full, records go to the journal directly; when the journal is full
they are dropped and counted in ``dropped`` (and the journal logs it).

Sampling keeps a request when a hash of its id falls below the rate, so every replica keeps
the same requests and a sampled-out prediction is sampled out everywhere.

Each record's inputs and outputs are stored as columns of values, one value per input row
(``{"x": [1.0, 2.0], "y": ["a", "b"]}``); outputs take the names window profiles use:
``prediction`` for ``predict`` and ``proba_<class>`` for ``predict_proba``.
:meth:`PredictionLog.records` reads them back as one table row per input row.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from modelyard.errors import DatabaseUnavailable
from modelyard.live._clock import Clock, SystemClock
from modelyard.live.journal import Journal, Replayer, to_json
from modelyard.monitoring._tables import label_of
from modelyard.store import Database
from modelyard.store.tables import prediction_log

log = logging.getLogger("modelyard.predlog")

_MAX_ID = 128
_PURGE_EVERY_S = 3600.0
Row = dict[str, Any]


def sampled(request_id: str, rate: float) -> bool:
    """Whether the request with this id is kept at sampling ``rate`` (same answer everywhere).

    >>> sampled("req-1", 1.0), sampled("req-1", 0.0)
    (True, False)
    >>> sum(sampled(f"req-{i}", 0.25) for i in range(10_000))
    2554
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2**64


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached now (so: spool and retry)."""
    if isinstance(error, DatabaseUnavailable | OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


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


class Sink(Protocol):
    """Where batches go; ``write`` returns the rows stored (the rest refused for content)."""

    def write(self, rows: list[Row]) -> int: ...

    def purge(self, older_than: datetime) -> int: ...

    def read(self, model: str, version: int | None, since: datetime | None,
             until: datetime | None) -> list[Row]: ...


class DatabaseSink:
    """The ``prediction_log`` table; one transaction and one multi-row INSERT per batch."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def write(self, rows: list[Row]) -> int:
        if not rows:
            return 0
        try:
            with self.database.write() as conn:
                conn.execute(insert(prediction_log), rows)
        except Exception as error:
            if is_unavailable(error):
                raise
            return self._one_by_one(rows, error)
        return len(rows)

    def _one_by_one(self, rows: list[Row], error: Exception) -> int:
        """A batch the database refused for its content: store the rows it takes, count the rest."""
        log.warning("prediction log: the database refused a batch of %d (%s); retrying one by one",
                    len(rows), str(error).splitlines()[0])
        stored = 0
        for row in rows:
            try:
                with self.database.write() as conn:
                    conn.execute(insert(prediction_log), [row])
                stored += 1
            except Exception as row_error:
                if is_unavailable(row_error):
                    raise
                log.warning("prediction log: dropped request %r: %s", row.get("request_id"),
                            str(row_error).splitlines()[0])
        return stored

    def purge(self, older_than: datetime) -> int:
        query = delete(prediction_log).where(prediction_log.c.ts < iso(older_than))
        with self.database.write() as conn:
            result = conn.execute(query)
        return int(result.rowcount or 0)

    def read(self, model: str, version: int | None, since: datetime | None,
             until: datetime | None) -> list[Row]:
        t = prediction_log
        query = select(t.c.request_id, t.c.ts, t.c.model, t.c.version, t.c.latency_ms,
                       t.c.inputs, t.c.outputs).where(t.c.model == model)
        if version is not None:
            query = query.where(t.c.version == version)
        if since is not None:
            query = query.where(t.c.ts >= iso(since))
        if until is not None:
            query = query.where(t.c.ts < iso(until))
        with self.database.read() as conn:
            return [dict(row._mapping) for row in conn.execute(query.order_by(t.c.ts, t.c.id))]


class ParquetSink:
    """Parquet files under ``root`` (any fsspec URL), one per batch, model, version and day.

    Inputs and outputs are stored as JSON text, so every file of a model has one schema.
    """

    def __init__(self, root: str | Path) -> None:
        import fsspec

        self.fs, self.root = fsspec.core.url_to_fs(str(root))
        self.root = str(self.root).rstrip("/")
        self.fs.makedirs(self.root, exist_ok=True)

    def write(self, rows: list[Row]) -> int:
        groups: dict[tuple[str, int, str], list[Row]] = {}
        for row in rows:
            groups.setdefault((row["model"], row["version"], row["ts"][:10]), []).append(row)
        staged = []  # every file written before any is published: a failed batch leaves none
        try:
            for (model, version, day), group in groups.items():
                folder = f"{self.root}/model={model}/version={version}/date={day}"
                self.fs.makedirs(folder, exist_ok=True)
                name = uuid.uuid4().hex
                temporary = f"{folder}/.{name}.parquet.tmp"
                with self.fs.open(temporary, "wb") as handle:
                    pq.write_table(_table(group), handle)
                staged.append((temporary, f"{folder}/{name}.parquet"))
        except BaseException:
            for temporary, _ in staged:
                self.fs.rm(temporary)
            raise
        for temporary, final in staged:
            self.fs.mv(temporary, final)
        return len(rows)

    def purge(self, older_than: datetime) -> int:
        cutoff = older_than.astimezone(UTC).date().isoformat()
        removed = 0
        for folder in self.fs.glob(f"{self.root}/model=*/version=*/date=*"):
            if folder.rsplit("date=", 1)[1] < cutoff:
                removed += len(self.fs.glob(f"{folder}/*.parquet"))
                self.fs.rm(folder, recursive=True)
        return removed

    def read(self, model: str, version: int | None, since: datetime | None,
             until: datetime | None) -> list[Row]:
        first = iso(since)[:10] if since is not None else ""
        last = iso(until)[:10] if until is not None else "9999"
        start = iso(since) if since is not None else ""
        end = iso(until) if until is not None else "9999"
        pattern = f"{self.root}/model={model}/version={'*' if version is None else version}"
        rows: list[Row] = []
        for path in sorted(self.fs.glob(f"{pattern}/date=*/*.parquet")):
            day = path.rsplit("date=", 1)[1][:10]
            if not first <= day <= last:
                continue
            with self.fs.open(path, "rb") as handle:
                table = pq.read_table(handle)
            for row in table.to_pylist():
                row["ts"] = iso(row["ts"])
                if start <= row["ts"] < end:
                    row["inputs"] = orjson.loads(row["inputs"])
                    row["outputs"] = orjson.loads(row["outputs"])
                    rows.append(row)
        rows.sort(key=lambda row: row["ts"])
        return rows


_SCHEMA = pa.schema([
    ("request_id", pa.string()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("model", pa.string()),
    ("version", pa.int64()),
    ("latency_ms", pa.float64()),
    ("inputs", pa.string()),
    ("outputs", pa.string()),
])


def _table(rows: list[Row]) -> Any:
    return pa.table({
        "request_id": [row["request_id"] for row in rows],
        "ts": [datetime.fromisoformat(row["ts"]) for row in rows],
        "model": [row["model"] for row in rows],
        "version": [row["version"] for row in rows],
        "latency_ms": [row["latency_ms"] for row in rows],
        "inputs": [to_json(row["inputs"]).decode() for row in rows],
        "outputs": [to_json(row["outputs"]).decode() for row in rows],
    }, schema=_SCHEMA)


class PredictionLog:
    """Sampled predictions → batches → the database or Parquet files, spooling when it fails.

    Parameters
    ----------
    sink : a :class:`~modelyard.store.Database` (the ``prediction_log`` table), or the folder
        (path or fsspec URL, e.g. ``<artifacts>/prediction-log``) for Parquet files.
    sample_rate : share of requests kept, decided by a hash of the request id.
    journal : where batches go while the sink fails; without one they are dropped (counted).
    clock : wall-clock time for records without ``at`` and for retention.
    retention : records older than this are purged (checked hourly by the writer).
    batch_size, flush_interval_s : a batch is written once this many records wait, or after
        this long.
    max_queue : records held in memory; past it, submitted records go to the journal.

    Attributes
    ----------
    submitted, sampled_out, written, replayed, spooled, dropped : counters for metrics;
        ``written`` includes ``replayed`` (records written from the journal).
    queue_depth, journal_bytes : gauges.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> predictions = PredictionLog(folder).start()
    >>> predictions.submit(PredictionRecord("r1", "churn", 1, {"tenure": [3.0]},
    ...                                     {"prediction": [1]}, latency_ms=2.5))
    >>> predictions.close()
    >>> predictions.records("churn")[["request_id", "tenure", "prediction"]]
      request_id  tenure  prediction
    0         r1     3.0           1
    """

    def __init__(
        self, sink: Database | str | Path, *, sample_rate: float = 1.0,
        journal: Journal | None = None, clock: Clock | None = None,
        retention: timedelta | None = None, batch_size: int = 1000,
        flush_interval_s: float = 0.5, max_queue: int = 100_000, retry_s: float = 1.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be between 0 and 1")
        self.sink: Sink = DatabaseSink(sink) if isinstance(sink, Database) else ParquetSink(sink)
        self.sample_rate = sample_rate
        self.journal = journal
        self.clock = clock or SystemClock()
        self.retention = retention
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_queue = max_queue
        self.submitted = 0
        self.sampled_out = 0
        self.written = 0
        self.replayed = 0
        self.spooled = 0
        self.dropped = 0
        self._queue: deque[PredictionRecord] = deque()
        self._counts = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False
        self._last_purge: float | None = None
        self._replayer = (
            Replayer(journal, self._replay, name="modelyard-predlog-replay", retry_s=retry_s,
                     max_backoff_s=max_backoff_s) if journal is not None else None
        )

    # -- the hot path --------------------------------------------------------------------

    def submit(self, record: PredictionRecord) -> None:
        """Take one answered request; returns at once and never raises."""
        self.submitted += 1
        if self.sample_rate < 1.0 and not sampled(record.request_id, self.sample_rate):
            self.sampled_out += 1
            return
        if record.at is None:
            record.at = self.clock.now().timestamp()
        if len(self._queue) >= self.max_queue:
            self._overflow(record)
            return
        self._queue.append(record)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def _overflow(self, record: PredictionRecord) -> None:
        try:
            self._spool([row_of(record)])
        except Exception:
            self._count(dropped=1)
            log.exception("prediction log: could not keep request %r", record.request_id)

    # -- the writer ----------------------------------------------------------------------

    def start(self) -> PredictionLog:
        """Start the writer and the journal's replayer (which first replays what is left)."""
        self._thread = threading.Thread(target=self._loop, name="modelyard-predlog",
                                        daemon=True)
        self._thread.start()
        if self._replayer is not None:
            self._replayer.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                self.flush()
                self._purge_when_due()
            except Exception:  # keep logging; the next round retries
                log.exception("prediction log: the writer round failed")

    def flush(self) -> int:
        """Write (or spool) everything queued so far, in batches; returns records taken."""
        with self._flushing:  # one flusher at a time: the writer, or close()
            pending = len(self._queue)
            taken = 0
            while taken < pending:
                batch = []
                for _ in range(min(self.batch_size, pending - taken)):
                    batch.append(self._queue.popleft())
                taken += len(batch)
                self._store(batch)
            return taken

    def _store(self, batch: list[PredictionRecord]) -> None:
        rows: list[Row] = []
        for record in batch:
            try:
                rows.append(row_of(record))
            except Exception as error:
                self._count(dropped=1)
                log.warning("prediction log: dropped request %r: %s", record.request_id, error)
        if not rows:
            return
        if self._replayer is not None and self._replayer.outage.is_set():
            self._spool(rows)
            return
        try:
            stored = self.sink.write(rows)
        except Exception as error:
            self._outage(error)
            self._spool(rows)
            return
        self._count(written=stored, dropped=len(rows) - stored)
        if self._warned:
            log.warning("prediction log: the sink takes records again")
            self._warned = False

    def _outage(self, error: Exception) -> None:
        if self._replayer is not None:
            self._replayer.outage.set()
        if not self._warned:
            where = "the journal" if self.journal is not None else "nowhere (no journal): dropped"
            log.warning("prediction log: cannot write (%s); records go to %s until it works",
                        str(error).splitlines()[0] if str(error) else type(error).__name__,
                        where)
            self._warned = True

    def _spool(self, rows: list[Row]) -> None:
        kept = self.journal.append(rows) if self.journal is not None else 0
        self._count(spooled=kept, dropped=len(rows) - kept)

    def _replay(self, rows: list[Row]) -> None:
        stored = self.sink.write(rows)
        self._count(written=stored, replayed=stored, dropped=len(rows) - stored)

    def _count(self, written: int = 0, replayed: int = 0, spooled: int = 0,
               dropped: int = 0) -> None:
        with self._counts:
            self.written += written
            self.replayed += replayed
            self.spooled += spooled
            self.dropped += dropped

    def _purge_when_due(self) -> None:
        if self.retention is None:
            return
        now = self.clock.monotonic()
        if self._last_purge is None or now - self._last_purge >= _PURGE_EVERY_S:
            self._last_purge = now
            removed = self.purge(self.clock.now() - self.retention)
            if removed:
                log.info("prediction log: removed %d records past retention", removed)

    def close(self) -> None:
        """Stop the threads and store everything queued (the SIGTERM path).

        What the sink cannot take now stays in the journal, replayed at the next start.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        if self._replayer is not None:
            self._replayer.stop()
        self.flush()
        if self._replayer is not None and self.journal is not None and self.journal.records:
            try:
                self._replayer.replay_now()
            except Exception as error:
                log.warning("prediction log: %d records stay in the journal %s (%s)",
                            self.journal.records, self.journal.directory,
                            str(error).splitlines()[0])

    # -- gauges, retention, reading ------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def journal_bytes(self) -> int:
        return self.journal.bytes if self.journal is not None else 0

    def purge(self, older_than: datetime) -> int:
        """Remove records older than ``older_than``: database rows by time; Parquet by day.

        Parquet files are removed a whole day at a time, once the day ended before
        ``older_than``. Returns the rows (database) or files (Parquet) removed.
        """
        return self.sink.purge(older_than)

    def records(
        self, model: str, version: int | None = None, since: datetime | None = None,
        until: datetime | None = None,
    ) -> pd.DataFrame:
        """Stored records of ``model`` (one version, or all) with ``since <= ts < until``.

        One row per input row: ``request_id``, ``ts`` (UTC), ``model``, ``version``,
        ``latency_ms``, then the input columns, then the outputs (an output whose name is
        taken gets an ``output_`` prefix). Records still queued or spooled are not included.
        """
        return frame_of(self.sink.read(model, version, since, until))


# -- records → rows → tables ---------------------------------------------------------------


def row_of(record: PredictionRecord) -> Row:
    """The stored form of a record: plain JSON-ready values, columns of values (NaN → None)."""
    if not isinstance(record.request_id, str) or not 0 < len(record.request_id) <= _MAX_ID:
        raise ValueError(f"request id must be text of 1 to {_MAX_ID} characters")
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


