"""Where prediction-log batches go: the ``prediction_log`` table, or Parquet files."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Select, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from modelyard.errors import DatabaseUnavailable
from modelyard.live.journal import to_json
from modelyard.live.records import Row, iso
from modelyard.store import Database
from modelyard.store.tables import prediction_log

log = logging.getLogger("modelyard.predlog")


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached now (so: spool and retry)."""
    if isinstance(error, DatabaseUnavailable | OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


class Sink(Protocol):
    """Where batches go; ``write`` returns the rows stored (the rest refused for content)."""

    def write(self, rows: list[Row]) -> int: ...

    def purge(self, older_than: datetime) -> int: ...

    def read(self, model: str, version: int | None, since: datetime | None,
             until: datetime | None, limit: int | None = None) -> list[Row]: ...


class DatabaseSink:
    """The ``prediction_log`` table; one transaction and one multi-row INSERT per batch."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def _insert(self) -> Any:
        """An INSERT that skips rows already stored (a batch replayed after an outage)."""
        if self.database.dialect == "postgresql":
            return postgresql.insert(prediction_log).on_conflict_do_nothing()
        if self.database.dialect == "sqlite":
            return sqlite.insert(prediction_log).on_conflict_do_nothing()
        return insert(prediction_log)

    def write(self, rows: list[Row]) -> int:
        if not rows:
            return 0
        try:
            with self.database.write() as conn:
                conn.execute(self._insert(), rows)
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
                    conn.execute(self._insert(), [row])
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
             until: datetime | None, limit: int | None = None) -> list[Row]:
        t = prediction_log
        query = logged(select(t.c.request_id, t.c.ts, t.c.model, t.c.version, t.c.latency_ms,
                              t.c.inputs, t.c.outputs), model, version, since, until)
        query = query.order_by(t.c.ts, t.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.database.read() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]


def logged(query: Select[Any], model: str, version: int | None, since: datetime | None,
           until: datetime | None) -> Select[Any]:
    """``query`` kept to the prediction-log rows of ``model`` (one version or all) logged in
    ``[since, until)``."""
    t = prediction_log
    query = query.where(t.c.model == model)
    if version is not None:
        query = query.where(t.c.version == version)
    if since is not None:
        query = query.where(t.c.ts >= iso(since))
    if until is not None:
        query = query.where(t.c.ts < iso(until))
    return query


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
             until: datetime | None, limit: int | None = None) -> list[Row]:
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
        return rows if limit is None else rows[:limit]


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
