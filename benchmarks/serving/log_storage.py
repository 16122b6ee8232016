"""What storing the prediction log's batches costs SQLite, by page size and autocheckpoint.

    taskset -c 1 .venv/bin/python benchmarks/serving/log_storage.py [--batches 120]
        [--requests 5500] [--blob-kb 330]

Writes what ``live/sinks.py``'s ``DatabaseSink`` writes for each batch, the way it writes it:
one transaction with the batch's blob (``--blob-kb``; half random bytes, half zeros, as an LZ4
payload of partly repetitive inputs) and one index row a request from a JSON array
(``json_each``, into a ``WITHOUT ROWID`` table keyed by request id). The database is in WAL
mode with ``synchronous=NORMAL``, as the server runs it. The figure is the mean over all
batches, not the best, so that the checkpoints (and their fsyncs) the WAL triggers every
``wal_autocheckpoint`` pages are counted. CPU is this process's user + system time; wall
includes waiting for the disk.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import orjson

SETTINGS = ((4096, 1000), (4096, 10_000), (16_384, 1000), (16_384, 250), (65_536, 64))


def run(folder: Path, page: int, checkpoint: int, batches: int, requests: int,
        blob: bytes) -> tuple[float, float]:
    """(CPU, wall) µs a request of storing ``batches`` batches."""
    db = sqlite3.connect(folder / f"log-{page}-{checkpoint}.db", isolation_level=None)
    db.execute(f"PRAGMA page_size={page}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA wal_autocheckpoint={checkpoint}")
    db.execute("CREATE TABLE batches (id INTEGER PRIMARY KEY, batch_key TEXT UNIQUE, "
               "payload BLOB)")
    db.execute("CREATE TABLE log (request_id VARCHAR(128) NOT NULL, batch_id INTEGER NOT NULL,"
               " PRIMARY KEY (request_id, batch_id)) WITHOUT ROWID")
    ids = [orjson.dumps([f"c64bbca3217a4964-{b * requests + i:012x}" for i in range(requests)])
           for b in range(batches)]
    cpu, wall = time.process_time(), time.perf_counter()
    for b in range(batches):
        db.execute("BEGIN")
        batch_id = db.execute("INSERT INTO batches (batch_key, payload) VALUES (?, ?) "
                              "RETURNING id", (uuid.uuid4().hex, blob)).fetchone()[0]
        db.execute("INSERT OR IGNORE INTO log SELECT value, ? FROM json_each(?)",
                   (batch_id, ids[b]))
        db.execute("COMMIT")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    db.close()
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
