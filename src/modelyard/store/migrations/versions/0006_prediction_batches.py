"""The prediction log stores batches: one compressed Arrow table per batch, an index row per
request.

A row of JSON per logged request cost about 24 µs of the server's CPU (building the row, the
JSON text of every value, and the insert); a batch built from stacked arrays costs about 3.
``prediction_batches`` holds the batches (``batch_key`` makes a replayed batch a no-op, as the
unique index of 0003 did for rows); ``prediction_log`` keeps one row per logged request (id,
time, model, version, batch), which feedback joins on; it is indexed by request id and by
batch (ascending, so cheap to keep), no longer by time. Rows already logged move into batches
of up to 1,000 requests per model version, with their inputs and outputs kept as the JSON they
were stored as.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_CHUNK = 1000
_OLD = "prediction_log_0005"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def _json(value: Any) -> Any:
    """A JSON column's value as Python (PostgreSQL's driver parses it, SQLite hands text)."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


# The batch format as this revision writes and reads it (``modelyard.live.batches`` is the
# running code's copy; a migration keeps its own so that it never changes under old data).


def _payload(rows: list[dict[str, Any]]) -> bytes:
    """Rows as a ``requests`` batch: a zstd Arrow IPC stream, inputs and outputs as JSON."""
    table = pa.table({
        "request_id": pa.array([row["request_id"] for row in rows], pa.string()),
        "ts": pa.array([datetime.fromisoformat(row["ts"]) for row in rows],
                       pa.timestamp("us", tz="UTC")),
        "latency_ms": pa.array([float(row["latency_ms"]) for row in rows], pa.float64()),
        "inputs": pa.array([orjson.dumps(_json(row["inputs"]), option=_NUMPY).decode()
                            for row in rows], pa.string()),
        "outputs": pa.array([orjson.dumps(_json(row["outputs"]), option=_NUMPY).decode()
                             for row in rows], pa.string()),
    }).replace_schema_metadata({"layout": "requests"})
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema,
                        options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _rows(payload: bytes) -> Iterator[dict[str, Any]]:
    """A stored batch of either layout back as requests (inputs and outputs as values)."""
    with ipc.open_stream(pa.py_buffer(payload)) as reader:
        table = reader.read_all()
    layout = (table.schema.metadata or {}).get(b"layout")
    ids = table.column("request_id").to_pylist()
    stamps = [iso.isoformat(timespec="microseconds")
              for iso in table.column("ts").to_pylist()]
    latency = table.column("latency_ms").to_pylist()
    if layout != b"rows":
        inputs, outputs = table.column("inputs").to_pylist(), table.column("outputs").to_pylist()
        for i, request_id in enumerate(ids):
            yield {"request_id": request_id, "ts": stamps[i], "latency_ms": latency[i],
                   "inputs": orjson.loads(inputs[i]), "outputs": orjson.loads(outputs[i])}
        return
    parts = [(name, table.column(name).to_pylist()) for name in table.column_names
             if name.startswith(("in:", "out:"))]
    start = 0
    while start < len(ids):
        end = start + 1
        while end < len(ids) and (ids[end], stamps[end]) == (ids[start], stamps[start]):
            end += 1
        row: dict[str, Any] = {"request_id": ids[start], "ts": stamps[start],
                               "latency_ms": latency[start], "inputs": {}, "outputs": {}}
        for name, values in parts:
            side, column = name.split(":", 1)
            row["inputs" if side == "in" else "outputs"][column] = values[start:end]
        yield row
        start = end


def _create_new() -> None:
    op.create_table(
        "prediction_batches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_key", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("ts_min", sa.String(32), nullable=False),
        sa.Column("ts_max", sa.String(32), nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prediction_batches"),
        sa.UniqueConstraint("batch_key", name="uq_prediction_batches_batch_key"),
    )
    op.create_index("ix_prediction_batches_model_version_ts", "prediction_batches",
                    ["model", "version", "ts_max"])
    op.create_table(
        "prediction_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("batch_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prediction_log"),
    )
    op.create_index("ix_prediction_log_request_id", "prediction_log", ["request_id"])
    op.create_index("ix_prediction_log_batch_id", "prediction_log", ["batch_id"])


def _create_old(name: str) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
    )


def upgrade() -> None:
    conn = op.get_bind()
    op.drop_index("ux_prediction_log_entry", table_name="prediction_log")
    op.drop_index("ix_prediction_log_model_version_ts", table_name="prediction_log")
    op.rename_table("prediction_log", _OLD)
    if conn.dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {_OLD} RENAME CONSTRAINT pk_prediction_log TO pk_{_OLD}")
    _create_new()
    old = sa.table(_OLD, *(sa.column(name) for name in (
        "id", "request_id", "ts", "model", "version", "inputs", "outputs", "latency_ms")))
    batches = sa.table("prediction_batches", *(sa.column(name) for name in (
        "id", "batch_key", "model", "version", "ts_min", "ts_max", "requests", "payload")))
    index = sa.table("prediction_log", *(sa.column(name) for name in (
        "request_id", "ts", "model", "version", "batch_id")))
    last = 0
    while True:
        chunk = conn.execute(sa.select(old).where(old.c.id > last).order_by(old.c.id)
                             .limit(_CHUNK)).mappings().all()
        if not chunk:
            break
        last = chunk[-1]["id"]
        groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in chunk:
            groups.setdefault((row["model"], row["version"]), []).append(dict(row))
        for (model, version), rows in groups.items():
            stamps = [row["ts"] for row in rows]
            batch_id = conn.execute(sa.insert(batches).returning(batches.c.id), {
                "batch_key": uuid.uuid4().hex, "model": model, "version": version,
                "ts_min": min(stamps), "ts_max": max(stamps), "requests": len(rows),
                "payload": _payload(rows),
            }).scalar_one()
            conn.execute(sa.insert(index), [
                {"request_id": row["request_id"], "ts": row["ts"], "model": model,
                 "version": version, "batch_id": batch_id} for row in rows
            ])
    op.drop_table(_OLD)


def downgrade() -> None:
    conn = op.get_bind()
    _create_old(_OLD)
    old = sa.table(_OLD, sa.column("request_id"), sa.column("ts"), sa.column("model"),
                   sa.column("version"), sa.column("inputs", sa.JSON),
                   sa.column("outputs", sa.JSON), sa.column("latency_ms"))
    batches = sa.table("prediction_batches", *(sa.column(name) for name in (
        "id", "batch_key", "model", "version", "payload")))
    last = 0
    while True:
        chunk = conn.execute(sa.select(batches).where(batches.c.id > last)
                             .order_by(batches.c.id).limit(50)).mappings().all()
        if not chunk:
            break
        last = chunk[-1]["id"]
        for stored in chunk:
            conn.execute(sa.insert(old), [
                {**row, "model": stored["model"], "version": stored["version"]}
                for row in _rows(stored["payload"])
            ])
    op.drop_table("prediction_log")
    op.drop_table("prediction_batches")
    op.rename_table(_OLD, "prediction_log")
    if conn.dialect.name == "postgresql":
        op.execute(f"ALTER TABLE prediction_log RENAME CONSTRAINT pk_{_OLD} TO pk_prediction_log")
    op.create_index("ux_prediction_log_entry", "prediction_log",
                    ["request_id", "model", "version", "ts"], unique=True)
    op.create_index("ix_prediction_log_model_version_ts", "prediction_log",
                    ["model", "version", "ts"])
