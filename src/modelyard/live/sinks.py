"""Where prediction-log batches go: the database (a blob per batch, an index row per request)
or Parquet files (a file per batch and day)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Connection, Select, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from modelyard.errors import DatabaseUnavailable
from modelyard.live.batches import Batch, from_rows
from modelyard.live.records import Row, iso
from modelyard.store import Database
from modelyard.store.tables import prediction_batches, prediction_log

log = logging.getLogger("modelyard.predlog")

_CHUNK = 500
_PURGE_BATCHES = 50  # expired batches per purge transaction


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached now (so: spool and retry)."""
    if isinstance(error, DatabaseUnavailable | OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


class Sink(Protocol):
    """Where batches go; ``write_batches`` returns the requests stored (the rest refused for
    content). ``write`` takes requests in :func:`~modelyard.live.records.row_of`'s shape."""

    def write_batches(self, batches: Sequence[Batch]) -> int: ...

    def write(self, rows: list[Row]) -> int: ...

    def purge(self, older_than: datetime) -> int: ...

    def read(self, model: str, version: int | None, since: datetime | None,
             until: datetime | None, limit: int | None = None) -> list[Row]: ...


def _within(rows: list[Row], since: datetime | None, until: datetime | None,
            limit: int | None) -> list[Row]:
    start = iso(since) if since is not None else ""
    end = iso(until) if until is not None else "9999"
    kept = [row for row in rows if start <= row["ts"] < end]
    kept.sort(key=lambda row: row["ts"])  # stable: a batch's own order breaks ties
    return kept if limit is None else kept[:limit]


def batch_insert(dialect: Any) -> Any:
    """The statement storing a batch's row in ``prediction_batches`` (``dialect``: SQLAlchemy's
    ``sqlite`` or ``postgresql``), returning its id; nothing (no row) when its key is stored
    already: a batch replayed from the journal after a crash."""
    t = prediction_batches
    return dialect.insert(t).on_conflict_do_nothing(index_elements=["batch_key"]).returning(t.c.id)


class DatabaseSink:
    """``prediction_batches`` holds each batch as one compressed Arrow table; ``prediction_log``
    one index row per request (its id and batch), which feedback looks up.

    One transaction per round. The index rows are written without a Python object per row:
    on SQLite as one statement reading the ids from a JSON array (``json_each``: 0.22 µs a row,
    where ``executemany`` of one tuple per row takes 0.86), on PostgreSQL by ``COPY``. A batch
    already stored (replayed from the journal after a crash) is skipped by its key.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self._json_each: bool | None = None  # whether SQLite has its JSON functions (3.38+)

    def write(self, rows: list[Row]) -> int:
        return self.write_batches(from_rows(rows)) if rows else 0

    def write_batches(self, batches: Sequence[Batch]) -> int:
        if not batches:
            return 0
        try:
            with self.database.write() as conn:
                return sum(self._store(conn, batch) for batch in batches)
        except Exception as error:
            if is_unavailable(error) or len(batches) == 1:
                raise
            return self._one_by_one(batches, error)

    def _store(self, conn: Connection, batch: Batch) -> int:
        dialect = postgresql if self.database.dialect == "postgresql" else sqlite
        batch_id = conn.execute(batch_insert(dialect), {
            "batch_key": batch.key, "model": batch.model, "version": batch.version,
            "ts_min": batch.ts_min, "ts_max": batch.ts_max,
            "requests": batch.requests, "payload": batch.payload(),
        }).scalar()
        if batch_id is not None:  # else stored before: a replay after a crash
            if self.database.dialect == "postgresql":
                _copy(conn, list(zip(batch.request_ids(), repeat(batch_id))))
            else:
                self._index_sqlite(conn, batch, batch_id)
        return batch.requests

    def _index_sqlite(self, conn: Connection, batch: Batch, batch_id: int) -> None:
        ids = (batch_id, orjson.dumps(batch.ids_in_order()))
        if self._json_each is None:  # the first time, in a savepoint: find out
            try:
                with conn.begin_nested():
                    conn.exec_driver_sql(_INDEX_JSON, ids)
                self._json_each = True
                return
            except OperationalError as error:
                if "json_each" not in str(error):
                    raise
                self._json_each = False
        if self._json_each:
            conn.exec_driver_sql(_INDEX_JSON, ids)
        else:
            conn.exec_driver_sql(_INDEX_ROWS, list(zip(batch.request_ids(), repeat(batch_id))))

    def _one_by_one(self, batches: Sequence[Batch], error: Exception) -> int:
        """A round the database refused for its content: store the batches it takes."""
        log.warning("prediction log: the database refused %d batches (%s); retrying one by one",
                    len(batches), str(error).splitlines()[0])
        stored = 0
        for batch in batches:
            try:
                stored += self.write_batches([batch])
            except Exception as batch_error:
                if is_unavailable(batch_error):
                    raise
                log.warning("prediction log: dropped a batch of %d requests of %s:%s: %s",
                            batch.requests, batch.model, batch.version,
                            str(batch_error).splitlines()[0])
        return stored

    def purge(self, older_than: datetime) -> int:
        """Remove requests logged before ``older_than``: the batches that hold nothing newer,
        their rows in a batch that straddles the cutoff (rewritten), and the index rows of
        both (their ids read from the batches). Returns the requests removed.

        Works through the expired batches a few at a time, a transaction each, so that other
        writers wait at most for one such step."""
        cutoff = iso(older_than)
        t, index = prediction_batches, prediction_log
        removed = 0
        last = 0
        while True:
            with self.database.write() as conn:
                expired = conn.execute(
                    select(t.c.id, t.c.batch_key, t.c.model, t.c.version, t.c.payload)
                    .where(t.c.ts_min < cutoff, t.c.id > last).order_by(t.c.id)
                    .limit(_PURGE_BATCHES)).all()
                if not expired:
                    return removed
                last = expired[-1].id
                for row in expired:
                    batch = Batch.from_payload(row.batch_key, row.model, row.version,
                                               row.payload)
                    kept = batch.since(older_than)
                    keep = set(kept.request_ids())
                    gone = [request_id for request_id in batch.request_ids()
                            if request_id not in keep]
                    for start in range(0, len(gone), _CHUNK):
                        conn.execute(delete(index).where(
                            index.c.batch_id == row.id,
                            index.c.request_id.in_(gone[start:start + _CHUNK])))
                    if not kept.table.num_rows:
                        conn.execute(delete(t).where(t.c.id == row.id))
                    else:
                        conn.execute(update(t).where(t.c.id == row.id).values(
                            payload=kept.payload(), ts_min=kept.ts_min,
                            requests=kept.requests))
                    removed += batch.requests - kept.requests

    def read(self, model: str, version: int | None, since: datetime | None,
             until: datetime | None, limit: int | None = None) -> list[Row]:
        t = prediction_batches
        query = logged(select(t.c.batch_key, t.c.model, t.c.version, t.c.payload), model,
                       version, since, until)
        rows: list[Row] = []
        with self.database.read() as conn:
            for found in conn.execute(query.order_by(t.c.ts_min, t.c.id)):
                rows.extend(Batch.from_payload(found.batch_key, found.model, found.version,
                                               found.payload).rows())
        return _within(rows, since, until, limit)

    def batches(self, conn: Connection, ids: Sequence[int]) -> dict[int, Batch]:
        """The stored batches with these ids."""
        t = prediction_batches
        found: dict[int, Batch] = {}
        unique = sorted(set(ids))
        for start in range(0, len(unique), _CHUNK):
            query = select(t.c.id, t.c.batch_key, t.c.model, t.c.version, t.c.payload).where(
                t.c.id.in_(unique[start:start + _CHUNK]))
            for row in conn.execute(query):
                found[row.id] = Batch.from_payload(row.batch_key, row.model, row.version,
                                                   row.payload)
        return found


_COPY = f"COPY {prediction_log.name} (request_id, batch_id) FROM STDIN"
_INDEX_JSON = (f"INSERT OR IGNORE INTO {prediction_log.name} (request_id, batch_id) "
               "SELECT value, ? FROM json_each(?)")
_INDEX_ROWS = f"INSERT OR IGNORE INTO {prediction_log.name} (request_id, batch_id) VALUES (?, ?)"


def _copy(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Index rows through PostgreSQL's COPY, in the transaction ``conn`` has open: a few µs a
    row less than ``executemany``. The driver's own errors bypass SQLAlchemy, so a lost
    connection is named here, for the writer to spool and retry."""
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor, cursor.copy(_COPY) as copy:
            for row in rows:
                copy.write_row(row)
    except Exception as error:
        if type(error).__name__ in ("OperationalError", "InterfaceError"):
            raise DatabaseUnavailable(f"the database went away during COPY: {error}") from error
        raise


def logged(query: Select[Any], model: str, version: int | None, since: datetime | None,
           until: datetime | None, model_column: Any = None) -> Select[Any]:
    """``query`` kept to the stored batches of ``model`` (one version or all) whose span
    (``ts_min`` to ``ts_max``) meets ``[since, until)``; a reader keeps their requests in it.
    ``model_column`` stands for ``prediction_batches.model`` (a planner hint, say)."""
    t = prediction_batches
    query = query.where((t.c.model if model_column is None else model_column) == model)
    if version is not None:
        query = query.where(t.c.version == version)
    if since is not None:
        query = query.where(t.c.ts_max >= iso(since))
    if until is not None:
        query = query.where(t.c.ts_min < iso(until))
    return query


class ParquetSink:
    """Parquet files under ``root`` (any fsspec URL): a file per batch and day, named by the
    batch's key (a batch replayed after a crash rewrites its own file), in
    ``model=<m>/version=<v>/date=YYYY-MM-DD/``. Files of one model may differ in schema; each
    is read on its own."""

    def __init__(self, root: str | Path) -> None:
        import fsspec

        self.fs, self.root = fsspec.core.url_to_fs(str(root))
        self.root = str(self.root).rstrip("/")
        self.fs.makedirs(self.root, exist_ok=True)

    def write(self, rows: list[Row]) -> int:
        return self.write_batches(from_rows(rows)) if rows else 0

    def write_batches(self, batches: Sequence[Batch]) -> int:
        staged = []  # every file written before any is published: a failed round leaves none
        stored = 0
        try:
            for batch in batches:
                days = pc.cast(batch.table.column("ts"), pa.date32())
                for day in pc.unique(days).to_pylist():
                    part = batch.table.filter(pc.equal(days, pa.scalar(day, pa.date32())))
                    folder = (f"{self.root}/model={batch.model}/version={batch.version}/"
                              f"date={day.isoformat()}")
                    self.fs.makedirs(folder, exist_ok=True)
                    temporary = f"{folder}/.{batch.key}.parquet.tmp"
                    with self.fs.open(temporary, "wb") as handle:
                        pq.write_table(part, handle)
                    staged.append((temporary, f"{folder}/{batch.key}.parquet"))
                stored += batch.requests
        except BaseException:
            for temporary, _ in staged:
                self.fs.rm(temporary)
            raise
        for temporary, final in staged:
            self.fs.mv(temporary, final)
        return stored

    def purge(self, older_than: datetime) -> int:
        cutoff = older_than.astimezone(UTC).date().isoformat()
        removed = 0
        for folder in self.fs.glob(f"{self.root}/model=*/version=*/date=*"):
            if folder.rsplit("date=", 1)[1] < cutoff:
                removed += len(self.fs.glob(f"{folder}/*.parquet"))
                self.fs.rm(folder, recursive=True)
        return removed

    def read(self, model: str, version: int | None, since: datetime | None,
             until: datetime | None, limit: int | None = None) -> list[Row]:
        first = iso(since)[:10] if since is not None else ""
        last = iso(until)[:10] if until is not None else "9999"
        pattern = f"{self.root}/model={model}/version={'*' if version is None else version}"
        rows: list[Row] = []
        for path in sorted(self.fs.glob(f"{pattern}/date=*/*.parquet")):
            day = path.rsplit("date=", 1)[1][:10]
            if not first <= day <= last:
                continue
            with self.fs.open(path, "rb") as handle:
                table = pq.read_table(handle)
            stored_version = int(path.rsplit("version=", 1)[1].split("/", 1)[0])
            name = path.rsplit("/", 1)[1].removesuffix(".parquet")
            rows.extend(Batch(name, model, stored_version, table).rows())
        return _within(rows, since, until, limit)
