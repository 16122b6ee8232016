"""What storing the prediction log's batches costs SQLite, by page size and autocheckpoint.

    taskset -c 1 .venv/bin/python benchmarks/serving/log_storage.py [--batches 120]
        [--requests 5500] [--blob-kb 330]

Writes what ``live/sinks.py``'s ``DatabaseSink`` writes for each batch, into the store's own
``prediction_batches`` and ``prediction_log`` tables (``store/tables.py``, with their indexes):
one transaction with the batch's row and blob (``--blob-kb``; half random bytes, half zeros,
as an LZ4 payload of partly repetitive inputs) and one index row a request, from a JSON array,
each by the sink's own statement (``batch_insert``, and ``json_each`` for the index). The
database is in WAL mode with ``synchronous=NORMAL``, as the server runs it. The figure is the
mean over all batches, not the best, so that the checkpoints (and their fsyncs) the WAL
triggers every ``wal_autocheckpoint`` pages are counted. CPU is this process's user + system
time; wall includes waiting for the disk.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, event
from sqlalchemy.dialects import sqlite

from modelyard.live.sinks import _INDEX_JSON, batch_insert
from modelyard.store.tables import prediction_batches, prediction_log

SETTINGS = ((4096, 1000), (4096, 10_000), (16_384, 1000), (16_384, 250), (65_536, 64))
_COLUMNS = ["batch_key", "model", "version", "ts_min", "ts_max", "requests", "payload"]
_BATCH = batch_insert(sqlite).compile(dialect=sqlite.dialect(),  # the sink's own statement
                                      column_keys=_COLUMNS)


def run(folder: Path, page: int, checkpoint: int, batches: int, requests: int,
        blob: bytes) -> tuple[float, float]:
    """(CPU, wall) µs a request of storing ``batches`` batches."""
    engine = create_engine(f"sqlite:///{folder / f'log-{page}-{checkpoint}.db'}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # BEGIN and COMMIT are ours, below
        for pragma in (f"page_size={page}", "journal_mode=WAL", "synchronous=NORMAL",
                       f"wal_autocheckpoint={checkpoint}"):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    prediction_batches.create(engine)
    prediction_log.create(engine)
    ids = [orjson.dumps([f"c64bbca3217a4964-{b * requests + i:012x}" for i in range(requests)])
           for b in range(batches)]
    db: sqlite3.Connection = engine.raw_connection().driver_connection  # type: ignore[assignment]
    sql, order = str(_BATCH), _BATCH.positiontup or []
    cpu, wall = time.process_time(), time.perf_counter()
    for b in range(batches):
        db.execute("BEGIN")
        stamp = f"2026-12-07T00:00:{b % 60:02d}.000000Z"
        row = {"batch_key": uuid.uuid4().hex, "model": "mlp", "version": 1, "ts_min": stamp,
               "ts_max": stamp, "requests": requests, "payload": blob}
        batch_id = db.execute(sql, [row[name] for name in order]).fetchone()[0]
        db.execute(_INDEX_JSON, (batch_id, ids[b]))
        db.execute("COMMIT")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    engine.dispose()
    return cpu / (batches * requests) * 1e6, wall / (batches * requests) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=120)
    parser.add_argument("--requests", type=int, default=5500)
    parser.add_argument("--blob-kb", type=int, default=330)
    args = parser.parse_args()
    half = args.blob_kb * 512
    blob = os.urandom(half) + bytes(half)
    print(f"{args.batches} batches of {args.requests:,} requests, a {args.blob_kb} KB blob "
          f"each; SQLite {sqlite3.sqlite_version}")
    print("| page size | autocheckpoint (pages) | CPU µs a request | wall µs a request |")
    print("|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="modelyard-log-storage-") as folder:
        for page, checkpoint in SETTINGS:
            cpu, wall = run(Path(folder), page, checkpoint, args.batches, args.requests, blob)
            print(f"| {page:,} | {checkpoint:,} | {cpu:.3f} | {wall:.3f} |", flush=True)


if __name__ == "__main__":
    main()
