"""The prediction log: batched writes, deterministic sampling, Parquet files, retention, and
nothing lost while the database is away (SQLite locked; a PostgreSQL cluster stopped)."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sqlalchemy import event, func, select

from modelyard.errors import Unavailable
from modelyard.live.batches import Batch, encode
from modelyard.live.feedback import FeedbackStore
from modelyard.live.journal import Journal
from modelyard.live.predlog import PredictionLog, sampled
from modelyard.live.records import PredictionRecord
from modelyard.settings import StoreSettings
from modelyard.store import Database
from modelyard.store.tables import feedback, prediction_log
from tests.conftest import migrate_to

from .conftest import T0, FakeClock, wait_for

OUTAGE_S = 30.0  # how long PostgreSQL stays down under load (the figure)


def record(i: int, at: datetime | None = None, rows: int = 1, model: str = "churn",
           version: int = 1) -> PredictionRecord:
    """A tabular request of ``rows`` rows, with the outputs a classifier gives."""
    data = np.arange(rows * 2, dtype=float).reshape(rows, 2) + i
    proba = np.full((rows, 2), 0.5)
    return PredictionRecord(
        f"r{i}", model, version, data, {"predict": np.arange(rows) % 2, "predict_proba": proba},
        latency_ms=1.5, at=at.timestamp() if at else None, columns=["x", "y"], classes=[0, 1],
    )


def count(db: Database, table: Any, distinct: Any = None) -> int:
    what = func.count(func.distinct(distinct)) if distinct is not None else func.count()
    with db.read() as conn:
        return int(conn.execute(select(what).select_from(table)).scalar_one())


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal", max_bytes=64 << 20) as opened:
        yield opened


def test_records_are_written_in_batches_of_one_statement(db: Database) -> None:
    inserts: list[int] = []

    def observe(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO PREDICTION_BATCHES"):
            inserts.append(len(parameters) if executemany else 1)

    event.listen(db.engine, "before_cursor_execute", observe)
    log = PredictionLog(db, batch_size=1000, flush_interval_s=0.05)
    for i in range(5000):
        log.submit(record(i, T0))
    log.start()
    wait_for(lambda: log.written == 5000)
    log.close()
    assert count(db, prediction_log) == 5000
    assert len(inserts) == 5  # one batch per 1,000 records, not a statement per request
    assert log.queue_depth == 0


def test_sampling_keeps_the_same_quarter_of_request_ids_on_every_replica(db: Database) -> None:
    replicas = [PredictionLog(db, sample_rate=0.25, flush_interval_s=0.05) for _ in range(2)]
    for replica, model in zip(replicas, ["a", "b"], strict=True):
        for i in range(4000):
            replica.submit(record(i, T0, model=model))
        replica.start()
        replica.close()
    kept = [set(replica.records(model)["request_id"]) for replica, model in
            zip(replicas, ["a", "b"], strict=True)]
    assert kept[0] == kept[1] == {f"r{i}" for i in range(4000) if sampled(f"r{i}", 0.25)}
    assert 900 < len(kept[0]) < 1100
    assert replicas[0].sampled_out == 4000 - len(kept[0])


def test_records_reads_one_row_per_input_row_with_outputs_named_as_in_profiles(
    db: Database,
) -> None:
    log = PredictionLog(db, flush_interval_s=0.05).start()
    log.submit(record(0, T0, rows=3))
    log.submit(record(10, T0 + timedelta(minutes=5), version=2))
    bad = record(20, T0 + timedelta(minutes=6))
    bad.inputs[0, 0] = np.nan  # stored as null: PostgreSQL's JSON has no NaN
    log.submit(bad)
    log.close()
    frame = log.records("churn")
    assert list(frame.columns) == ["request_id", "ts", "model", "version", "latency_ms", "x", "y",
                                   "prediction", "proba_0", "proba_1"]
    assert frame["request_id"].tolist() == ["r0", "r0", "r0", "r10", "r20"]
    assert frame["x"].tolist()[:4] == [0.0, 2.0, 4.0, 10.0]
    assert pd.isna(frame["x"].iloc[4])
    assert frame["prediction"].tolist() == [0, 1, 0, 0, 0]
    assert frame["ts"].iloc[0] == pd.Timestamp(T0)
    assert log.records("churn", version=2)["request_id"].tolist() == ["r10"]
    window = log.records("churn", since=T0 + timedelta(minutes=1),
                         until=T0 + timedelta(minutes=6))
    assert window["request_id"].tolist() == ["r10"]
    assert log.records("other").empty


def test_a_row_the_database_refuses_is_dropped_alone_and_counted(db: Database) -> None:
    log = PredictionLog(db)
    for i in range(5):
        log.submit(record(i, T0))
    broken = record(5, T0)
    broken.model = None  # type: ignore[assignment]  # NOT NULL: refused for its content
    log.submit(broken)
    log.submit(record(6, T0))
    log.start()
    log.close()
    assert (log.written, log.dropped) == (6, 1)
    assert count(db, prediction_log) == 6


def test_retention_purges_old_rows(db: Database) -> None:
    clock = FakeClock(T0)
    log = PredictionLog(db, clock=clock, retention=timedelta(days=30), flush_interval_s=0.05)
    log.submit(record(0, T0 - timedelta(days=40)))
    log.submit(record(1, T0 - timedelta(days=1)))
    log.start()
    wait_for(lambda: log.written == 2 and count(db, prediction_log) == 1)  # purged once written
    log.close()
    assert log.records("churn")["request_id"].tolist() == ["r1"]
    assert log.purge(T0) == 1


def test_parquet_files_are_partitioned_read_back_and_purged_by_day(tmp_path: Path) -> None:
    root = tmp_path / "artifacts" / "prediction-log"
    log = PredictionLog(root, flush_interval_s=0.05).start()
    log.submit(record(0, T0, rows=2))
    log.submit(record(1, T0 + timedelta(days=1)))
    log.submit(record(2, T0 + timedelta(days=1), version=2))
    log.close()
    files = sorted(str(p.relative_to(root).parent) for p in root.rglob("*.parquet"))
    assert files == ["model=churn/version=1/date=2027-01-15",
                     "model=churn/version=1/date=2027-01-16",
                     "model=churn/version=2/date=2027-01-16"]
    assert not list(root.rglob("*.tmp"))
    frame = log.records("churn")
    assert frame["request_id"].tolist() == ["r0", "r0", "r1", "r2"]
    assert frame["proba_1"].tolist() == [0.5] * 4
    assert log.records("churn", version=2)["request_id"].tolist() == ["r2"]
    assert log.records("churn", since=T0 + timedelta(hours=1))["request_id"].tolist() == [
        "r1", "r2"]
    assert log.purge(T0 + timedelta(days=1)) == 1  # the whole of 2027-01-15
    assert log.records("churn")["request_id"].tolist() == ["r1", "r2"]


def test_a_full_queue_spills_to_the_journal_and_a_full_journal_drops_counted(
    db: Database, tmp_path: Path,
) -> None:
    probe = Journal(tmp_path / "probe", max_bytes=1 << 20)
    probe.append([batch.to_journal() for batch in encode([record(10, T0)])])  # one overflow
    line = probe.bytes
    probe.close()
    with Journal(tmp_path / "journal", max_bytes=line * 15 + line // 2) as journal:
        log = PredictionLog(db, journal=journal, max_queue=10, retry_s=0.05)
        for i in range(30):
            log.submit(record(i, T0))  # the writer is not running: the queue fills up
        assert (log.queue_depth, log.spooled, log.dropped) == (10, 15, 5)
        assert journal.dropped_total == 5
        log.start()
        log.close()
    assert log.written == count(db, prediction_log) == 25
    assert log.replayed == 15


def test_a_locked_sqlite_database_spools_and_replays_every_record_once(
    sqlite_db: Database, journal: Journal,
) -> None:
    log = PredictionLog(sqlite_db, journal=journal, flush_interval_s=0.02, retry_s=0.05,
                        max_backoff_s=0.2).start()
    locker = sqlite3.connect(sqlite_db.engine.url.database or "", isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: the store "is down"
        for i in range(200):
            log.submit(record(i, T0))
        wait_for(lambda: log.spooled == 200)
        assert log.written == 0
        assert journal.records >= 1  # batches of the 200, as they were taken
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    for i in range(200, 300):
        log.submit(record(i, T0))
    wait_for(lambda: log.written == 300)
    log.close()
    assert count(sqlite_db, prediction_log) == count(sqlite_db, prediction_log,
                                                     prediction_log.c.request_id) == 300
    assert log.replayed >= 200  # later ones too, if they came before the outage was over
    assert (log.dropped, journal.records) == (0, 0)


def test_records_left_in_the_journal_are_replayed_after_a_restart(
    sqlite_db: Database, tmp_path: Path,
) -> None:
    from modelyard.live.records import row_of

    with Journal(tmp_path / "journal", max_bytes=1 << 20) as journal:  # what a crash left
        journal.append([row_of(record(i, T0)) for i in range(3)])  # rows, as 0.1 spooled them
        journal.append([batch.to_journal() for batch in encode([record(i, T0)
                                                                for i in range(3, 5)])])
    with Journal(tmp_path / "journal", max_bytes=1 << 20) as journal:
        log = PredictionLog(sqlite_db, journal=journal, retry_s=0.02).start()
        wait_for(lambda: log.replayed == 5)
        log.close()
    assert count(sqlite_db, prediction_log) == 5
    assert log.records("churn")["request_id"].tolist() == [f"r{i}" for i in range(5)]


# -- PostgreSQL stopped under load -------------------------------------------------------------


class Cluster:
    """A throwaway PostgreSQL server of our own (stopping the shared one would hurt others)."""

    def __init__(self, bindir: Path, base: Path) -> None:
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.running = False

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{program} failed: {done.stderr or done.stdout}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.base / "log"),
                  "-w", "-t", "60", "start")
        self.running = True

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        self.running = False


def _bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if found:
        return found[-1].parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    bindir = _bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed: run "
                    "scripts/services.sh")
    root = os.geteuid() == 0
    if root and shutil.which("runuser") is None:
        pytest.fail("running as root without runuser (util-linux): cannot start PostgreSQL")
    # as root the server runs as postgres, which cannot enter pytest's private tmp_path
    base = Path(tempfile.mkdtemp(prefix="modelyard-pg-")) if root else tmp_path / "pg"
    base.mkdir(exist_ok=True)
    if root:
        shutil.chown(base, "postgres")
    server = Cluster(bindir, base)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running:
            server.stop()
        if root:
            shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_stopping_postgresql_under_load_loses_no_record_and_no_acknowledged_label(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    db = Database(cluster.url, StoreSettings(connect_timeout_s=1))
    db.migrate()
    log_journal = Journal(tmp_path / "journal" / "log", max_bytes=256 << 20)
    label_journal = Journal(tmp_path / "journal" / "feedback", max_bytes=64 << 20)
    log = PredictionLog(db, journal=log_journal, flush_interval_s=0.1, retry_s=0.5,
                        max_backoff_s=2.0).start()
    labels = FeedbackStore(db, label_journal, retry_s=0.5, max_backoff_s=2.0).start()
    acknowledged: list[str] = []
    refused: list[int] = []
    stop = threading.Event()

    def traffic() -> None:  # ~2,000 predictions/s and 10 label posts of 10 a second
        n = 0
        while not stop.is_set() and n < 2_000_000:
            for _ in range(20):
                log.submit(record(n))
                n += 1
            if n % 100 == 0:
                ids = [f"r{k}" for k in range(n - 100, n - 90)]
                try:
                    labels.ingest([{"id": i, "label": k % 2} for k, i in enumerate(ids)])
                except Unavailable:
                    refused.append(n)
                else:
                    acknowledged.extend(ids)
            time.sleep(0.01)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        wait_for(lambda: log.written > 2000 and len(acknowledged) > 100)
        cluster.stop()
        started = time.monotonic()
        stop.wait(OUTAGE_S)
        outage = time.monotonic() - started
        during = (log.spooled, label_journal.spooled_total, log.submitted)
        cluster.start()
        wait_for(lambda: log.replayed >= during[0] and labels.deferred > 0 and (
            label_journal.records == 0))
        time.sleep(1.0)  # traffic continues against the recovered database
    finally:
        stop.set()
        sender.join()
    log.close()
    labels.close()
    wait_for(lambda: label_journal.records == 0)
    log_journal.close()
    label_journal.close()
    submitted = log.submitted
    rows = count(db, prediction_log)
    distinct = count(db, prediction_log, prediction_log.c.request_id)
    with db.read() as conn:
        stored = set(conn.execute(select(feedback.c.request_id)).scalars())
    db.dispose()
    with capsys.disabled():
        print(f"\n  outage {outage:.1f} s: {submitted} records submitted, {during[0]} spooled "
              f"while down, {log.replayed} replayed, {rows} rows ({distinct} distinct); "
              f"{len(acknowledged)} labels acknowledged ({during[1]} journaled), "
              f"{len(stored)} stored, {len(refused)} posts refused")
    assert during[0] > 0
    assert during[1] > 0
    assert not refused
    assert log.dropped == 0
    assert rows == distinct == submitted
    assert set(acknowledged) <= stored
    assert len(stored) == len(set(acknowledged))


def test_a_batch_written_twice_is_stored_once(db: Database) -> None:
    """A replay after an outage may repeat a batch that was in fact committed: no duplicates."""
    from modelyard.live.records import row_of
    from modelyard.live.sinks import DatabaseSink

    sink = DatabaseSink(db)
    (batch,) = encode([record(i, T0) for i in range(50)])
    assert sink.write_batches([batch]) == 50
    again = Batch.from_journal(batch.to_journal())  # as the journal hands it back
    assert sink.write_batches([again]) == 50
    rows = [row_of(record(i, T0)) for i in range(100, 125)]  # an older version's journal
    sink.write(rows)
    sink.write(rows)
    assert count(db, prediction_log) == count(db, prediction_log, prediction_log.c.request_id) == 75
    assert len(sink.read("churn", None, None, None)) == 75


def test_batches_stored_with_zstd_by_an_earlier_version_stay_readable(db: Database) -> None:
    """The log's payload codec changed from zstd to LZ4: both kinds of stored batch, and a
    zstd batch replayed from an old journal, read back the same."""
    import base64

    import pyarrow as pa
    import pyarrow.ipc as ipc

    from modelyard.live.sinks import DatabaseSink

    def zstd(batch: Batch) -> bytes:  # what the earlier version stored
        sink = pa.BufferOutputStream()
        options = ipc.IpcWriteOptions(compression="zstd", use_threads=False)
        with ipc.new_stream(sink, batch.table.schema, options=options) as writer:
            writer.write_table(batch.table)
        return bytes(sink.getvalue().to_pybytes())

    old, journaled, new = (encode([record(i, T0) for i in range(k, k + 20)])[0]
                           for k in (0, 100, 200))
    assert zstd(old) != old.payload()  # the codec really differs
    entry = {**journaled.to_journal(), "payload": base64.b64encode(zstd(journaled)).decode()}
    sink = DatabaseSink(db)
    stored = [Batch.from_payload(old.key, old.model, old.version, zstd(old)),
              Batch.from_journal(entry), new]
    assert sink.write_batches(stored) == 60
    rows = sink.read("churn", None, None, None)
    assert sorted(row["request_id"] for row in rows) == sorted(
        f"r{i}" for k in (0, 100, 200) for i in range(k, k + 20))
    by_id = {row["request_id"]: row for row in rows}
    assert by_id["r105"]["inputs"] == {"x": [105.0], "y": [106.0]}
    assert by_id["r7"]["outputs"]["prediction"] == [0]


def test_requests_logged_before_the_batch_format_stay_readable_and_labelled(
    database_url: str,
) -> None:
    """0006 moves rows logged one by one into batches; downgrading brings them back."""
    from sqlalchemy import text

    db = Database(database_url)
    migrate_to(db, "0005")
    insert = ("INSERT INTO prediction_log (request_id, ts, model, version, inputs, outputs, "
              "latency_ms) VALUES (:id, :ts, :model, 1, :inputs, :outputs, 2.5)")
    with db.write() as conn:
        for i in range(1, 2_501):  # more than one chunk of the migration
            conn.execute(text(insert), {
                "id": f"old-{i}", "ts": (T0 + timedelta(seconds=i)).isoformat(
                    timespec="microseconds"), "model": "churn" if i % 5 else "other",
                "inputs": orjson.dumps({"x": [float(i), None], "y": ["a", "b"]}).decode(),
                "outputs": orjson.dumps({"prediction": [i % 2, 0]}).decode()})
    db.migrate()
    log = PredictionLog(db)
    frame = log.records("churn")
    assert len(frame) == 2 * 2_000
    assert frame["request_id"].nunique() == 2_000
    first = frame[frame["request_id"] == "old-1"]
    assert first["x"].tolist()[0] == 1.0
    assert np.isnan(first["x"].tolist()[1])
    assert first["y"].tolist() == ["a", "b"]
    assert first["prediction"].tolist() == [1, 0]
    assert count(db, prediction_log) == 2_500
    store = FeedbackStore(db)
    assert store.ingest([{"id": "old-7", "label": 1}]).unknown_ids == []
    labelled = store.labels_for("churn")
    assert labelled["request_id"].tolist() == ["old-7", "old-7"]
    assert labelled["prediction"].tolist() == [1, 0]
    log.submit(record(1, T0))  # and the new format beside it
    log.flush()
    assert len(log.records("churn")) == 4_001
    migrate_to(db, "0005")
    with db.read() as conn:
        back = conn.execute(text("SELECT count(*) FROM prediction_log")).scalar()
    assert back == 2_501
    db.dispose()


def stacked_requests(start: int, count_: int, at: datetime, rows: int = 1) -> Any:
    """``count_`` tabular requests of one version as the collector hands them over."""
    from modelyard.live.stacked import Stacked

    records = [record(i, at, rows=rows) for i in range(start, start + count_)]
    found = Stacked.build("churn", 1, ["x", "y"], [0, 1], [r.request_id for r in records],
                          [r.at for r in records], [r.latency_ms / 1000 for r in records],
                          [r.inputs for r in records], [dict(r.outputs) for r in records])
    assert found is not None
    return found


def test_stacked_requests_are_logged_as_they_would_be_one_by_one(db: Database) -> None:
    """The server's path (a collector's stacked group) and the record path store the same rows,
    and sampling keeps the same ids whichever way they came."""
    by_group = PredictionLog(db, sample_rate=0.5)
    by_group.submit_stacked(stacked_requests(0, 300, T0, rows=2))
    by_group.flush()
    other = Database(db.url.replace("m.db", "other.db")) if db.dialect == "sqlite" else db
    if other is not db:
        other.migrate()
    one_by_one = PredictionLog(other, sample_rate=0.5)
    for i in range(300):
        one_by_one.submit(record(i, T0, rows=2, model="one"))
    one_by_one.flush()
    grouped, single = by_group.records("churn"), one_by_one.records("one")
    assert grouped["request_id"].tolist() == single["request_id"].tolist()
    assert set(grouped["request_id"]) == {f"r{i}" for i in range(300) if sampled(f"r{i}", 0.5)}
    for column in ("x", "y", "prediction", "proba_1", "latency_ms"):
        assert grouped[column].tolist() == single[column].tolist()
    assert (by_group.submitted, by_group.sampled_out, by_group.written) == (
        300, 300 - grouped["request_id"].nunique(), grouped["request_id"].nunique())
    assert FeedbackStore(db).ingest([{"id": "r2", "label": 1}]).unknown_ids == (
        [] if sampled("r2", 0.5) else ["r2"])


def test_a_group_with_an_id_the_log_cannot_keep_drops_only_that_request(db: Database) -> None:
    group = stacked_requests(0, 5, T0)
    group.ids[3] = "x" * 200  # over the 128 characters an id may have
    log = PredictionLog(db)
    log.submit_stacked(group)
    log.flush()
    assert (log.written, log.dropped) == (4, 1)
    assert log.records("churn")["request_id"].tolist() == ["r0", "r1", "r2", "r4"]


def test_retention_rewrites_a_batch_that_straddles_the_cutoff_and_its_index(
    db: Database,
) -> None:
    log = PredictionLog(db)
    group = stacked_requests(0, 10, T0)
    group.at[:4] = (T0 - timedelta(days=40)).timestamp()  # four old requests in a new batch
    log.submit_stacked(group)
    log.submit_stacked(stacked_requests(10, 5, T0 - timedelta(days=50)))  # all old
    log.flush()
    assert count(db, prediction_log) == 15
    assert log.purge(T0 - timedelta(days=30)) == 9
    assert log.records("churn")["request_id"].tolist() == [f"r{i}" for i in range(4, 10)]
    assert count(db, prediction_log) == 6
    result = FeedbackStore(db).ingest([{"id": "r1", "label": 0}, {"id": "r5", "label": 1}])
    assert result.unknown_ids == ["r1"]


def test_the_narrow_index_migrates_both_ways(database_url: str) -> None:
    """0007 keeps one index row per request and batch; going back restores each request's own
    time, model and version from its batch."""
    from sqlalchemy import text

    db = Database(database_url)
    migrate_to(db, "0006")
    records = [record(i, T0 + timedelta(seconds=i), rows=1 + i % 2,
                      model="churn" if i % 3 else "other") for i in range(30)]
    written = []
    with db.write() as conn:
        for batch in encode(records):
            batch_id = conn.execute(text(
                "INSERT INTO prediction_batches (batch_key, model, version, ts_min, ts_max, "
                "requests, payload) VALUES (:k, :m, :v, :lo, :hi, :n, :p) RETURNING id"), {
                "k": batch.key, "m": batch.model, "v": batch.version, "lo": batch.ts_min,
                "hi": batch.ts_max, "n": batch.requests, "p": batch.payload()}).scalar_one()
            for request_id in batch.request_ids() + batch.request_ids()[:1]:  # one twice
                row = next(r for r in records if r.request_id == request_id)
                at = datetime.fromtimestamp(row.at or 0, UTC).isoformat(timespec="microseconds")
                written.append((request_id, at, batch.model, batch.version, batch_id))
                conn.execute(text("INSERT INTO prediction_log (request_id, ts, model, version, "
                                  "batch_id) VALUES (:r, :t, :m, :v, :b)"), dict(zip(
                                      "rtmvb", written[-1], strict=True)))
    db.migrate()
    assert count(db, prediction_log) == 30  # the repeated row is kept once
    store = FeedbackStore(db)
    assert store.ingest([{"id": "r5", "label": 1}, {"id": "nope", "label": 0}]).unknown_ids == [
        "nope"]
    assert store.labels_for("churn")["request_id"].tolist() == ["r5", "r5"]  # two rows
    migrate_to(db, "0006")
    with db.read() as conn:
        back = conn.execute(text("SELECT request_id, ts, model, version, batch_id "
                                 "FROM prediction_log ORDER BY request_id")).all()
    assert sorted(tuple(r) for r in back) == sorted(set(written))
    db.migrate()
    db.dispose()
