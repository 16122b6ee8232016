"""Delayed labels: validation, idempotent posts, unknown ids, durability across outages and
``kill -9``, and the join with the predictions they judge."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from modelyard.errors import InvalidInput, Unavailable
from modelyard.live.feedback import FeedbackResult, FeedbackStore
from modelyard.live.journal import Journal
from modelyard.live.predlog import PredictionLog
from modelyard.live.records import PredictionRecord
from modelyard.store import Database
from modelyard.store.tables import feedback

from .conftest import T0, FakeClock, wait_for


def stored(db: Database) -> dict[str, Any]:
    with db.read() as conn:
        return {row.request_id: row.label for row in conn.execute(select(feedback))}


def predict(log: PredictionLog, request_id: str, at: datetime, rows: int = 1,
            version: int = 1) -> None:
    log.submit(PredictionRecord(
        request_id, "churn", version, np.ones((rows, 2)), {"predict": np.arange(rows) % 2},
        at=at.timestamp(), columns=["x", "y"],
    ))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal", max_bytes=1 << 20) as opened:
        yield opened


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"id": "a", "label": 1}, r"must be a JSON array .* not an object"),
        ([], "feedback is empty"),
        (["a"], r"feedback item 0: expected an object .* not text"),
        ([{"id": "a", "label": 1}, {"id": "b"}], r'feedback item 1: "label" is missing'),
        ([{"label": 1}], r'feedback item 0: "id" is missing'),
        ([{"id": 7, "label": 1}], r'item 0: "id" must be text of 1 to 128 characters, not int'),
        ([{"id": "x" * 129, "label": 1}], "not text of 129 characters"),
        ([{"id": "", "label": 1}], "not empty text"),
        ([{"id": "a", "label": 1, "lable": 2}], "item 0: unknown field 'lable'"),
        ([{"id": "a", "label": None}], r"item 0 \(id 'a'\): \"label\" is null"),
        ([{"id": "a", "label": {"k": 1}}], r'"label" must be a text, number .* not an object'),
        ([{"id": "a", "label": float("nan")}], '"label" must be a finite number'),
        ([{"id": "a", "label": [1, [2]]}], r'"label" item 1 must be .* not an array'),
        ([{"id": "a", "label": []}], '"label" is an empty list'),
        ([{"id": "a", "label": 1}, {"id": "a", "label": 0}],
         "item 1: id 'a' is given again with another label than in item 0"),
    ],
)
def test_bad_feedback_is_refused_naming_the_item_and_field(
    sqlite_db: Database, items: Any, message: str
) -> None:
    store = FeedbackStore(sqlite_db)
    with pytest.raises(InvalidInput, match=message):
        store.ingest(items)
    assert stored(sqlite_db) == {}  # nothing of a bad post is kept


def test_too_many_items_in_one_post_are_refused(sqlite_db: Database) -> None:
    store = FeedbackStore(sqlite_db, max_items=3)
    with pytest.raises(InvalidInput, match="holds 4 items; send at most 3"):
        store.ingest([{"id": str(i), "label": 1} for i in range(4)])


def test_posting_is_idempotent_and_unknown_ids_are_reported_but_kept(db: Database) -> None:
    log = PredictionLog(db).start()
    for i in range(3):
        predict(log, f"r{i}", T0)
    log.close()
    store = FeedbackStore(db, clock=FakeClock(T0))
    items = [{"id": "r0", "label": 1}, {"id": "r1", "label": "no"}, {"id": "late", "label": 0.5},
             {"id": "r0", "label": 1}]
    assert store.ingest(items) == FeedbackResult(3, 1, ["late"])
    again = store.ingest([{"id": "r0", "label": 0}, {"id": "r2", "label": [1, 0]}])
    assert again == FeedbackResult(1, 1, [])  # the first label of r0 stays
    assert stored(db) == {"r0": 1, "r1": "no", "late": 0.5, "r2": [1, 0]}
    assert again.to_dict() == {"accepted": 1, "duplicates": 1, "unknown_ids": [],
                               "deferred": False}


def test_labels_are_joined_to_their_predictions_per_window(db: Database) -> None:
    log = PredictionLog(db).start()
    predict(log, "a", T0)
    predict(log, "b", T0 + timedelta(minutes=1), rows=2)
    predict(log, "c", T0 + timedelta(minutes=2))  # never labelled
    predict(log, "d", T0 + timedelta(minutes=3), version=2)
    log.close()
    store = FeedbackStore(db, clock=FakeClock(T0 + timedelta(days=2)))
    assert store.labels_for("churn").empty
    store.ingest([{"id": "a", "label": 0}, {"id": "b", "label": [1, 0]},
                  {"id": "d", "label": 1}])
    frame = store.labels_for("churn", version=1)
    assert frame["request_id"].tolist() == ["a", "b", "b"]
    assert frame["prediction"].tolist() == [0, 0, 1]
    assert frame["label"].tolist() == [0, 1, 0]  # a list label is one label per row
    assert (frame["received_at"] == T0 + timedelta(days=2)).all()
    window = store.labels_for("churn", since=T0 + timedelta(seconds=30),
                              until=T0 + timedelta(minutes=5))
    assert window["request_id"].tolist() == ["b", "b", "d"]


def test_labels_join_predictions_kept_in_parquet_files(sqlite_db: Database,
                                                       tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "prediction-log").start()
    predict(log, "a", T0)
    predict(log, "b", T0)
    log.close()
    store = FeedbackStore(sqlite_db, predictions=log)
    result = store.ingest([{"id": "b", "label": 1}, {"id": "zz", "label": 0}])
    assert result == FeedbackResult(2, 0, [])  # ids are not looked up in Parquet files
    frame = store.labels_for("churn")
    assert frame[["request_id", "label"]].to_dict("records") == [{"request_id": "b",
                                                                   "label": 1}]


def test_labels_wait_in_the_journal_while_the_database_is_locked(
    sqlite_db: Database, journal: Journal,
) -> None:
    store = FeedbackStore(sqlite_db, journal, retry_s=0.05, max_backoff_s=0.2).start()
    locker = sqlite3.connect(sqlite_db.engine.url.database or "", isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        result = store.ingest([{"id": "a", "label": 1}, {"id": "b", "label": 0}])
        assert result == FeedbackResult(2, 0, [], deferred=True)
        assert store.ingest([{"id": "a", "label": 1}]).deferred
        assert journal.records == 3
        time.sleep(0.3)  # the replayer keeps trying; nothing is lost meanwhile
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    wait_for(lambda: journal.records == 0)
    store.close()
    assert stored(sqlite_db) == {"a": 1, "b": 0}
    assert store.ingest([{"id": "b", "label": 0}]) == FeedbackResult(0, 1, ["b"])


def test_a_post_is_refused_when_neither_database_nor_journal_can_keep_it(
    sqlite_db: Database, tmp_path: Path,
) -> None:
    locker = sqlite3.connect(sqlite_db.engine.url.database or "", isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        with pytest.raises(Unavailable, match="cannot take more labels"):
            FeedbackStore(sqlite_db).ingest([{"id": "a", "label": 1}])
        with Journal(tmp_path / "tiny", max_bytes=64) as tiny:
            store = FeedbackStore(sqlite_db, tiny)
            with pytest.raises(Unavailable, match="post them again later"):
                store.ingest([{"id": f"id-{i}", "label": 1} for i in range(5)])
            assert tiny.dropped_total > 0
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_labels_left_in_the_journal_are_stored_at_start(sqlite_db: Database,
                                                        tmp_path: Path) -> None:
    with Journal(tmp_path / "journal", max_bytes=1 << 20) as journal:
        journal.append([{"request_id": "a", "label": 1, "received_at": T0.isoformat()}])
    with Journal(tmp_path / "journal", max_bytes=1 << 20) as journal:
        store = FeedbackStore(sqlite_db, journal).start()
        store.close()
        assert journal.records == 0
    assert stored(sqlite_db) == {"a": 1}


_CHILD = textwrap.dedent(
    """
    import sys
    from modelyard.live.feedback import FeedbackStore
    from modelyard.live.journal import Journal
    from modelyard.settings import StoreSettings
    from modelyard.store import Database

    url, folder = sys.argv[1], sys.argv[2]
    db = Database(url, StoreSettings(busy_timeout_s=0.05))
    db.migrate()
    store = FeedbackStore(db, Journal(folder, max_bytes=64 << 20), retry_s=0.05).start()
    for n in range(1_000_000):
        ids = [f"c{n}-{i}" for i in range(20)]
        result = store.ingest([{"id": i, "label": n % 2} for i in ids])
        print("J" if result.deferred else "D", *ids, flush=True)
    """
)


@pytest.mark.slow
def test_every_acknowledged_label_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "fb.db"
    url = f"sqlite:///{path}"
    folder = tmp_path / "journal"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, url, str(folder)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert child.stdout is not None
        lines.extend(line for line in child.stdout if line.endswith("\n"))

    reader = threading.Thread(target=read)
    reader.start()
    locker: sqlite3.Connection | None = None
    try:
        wait_for(lambda: sum(line[0] == "D" for line in lines) >= 20 or child.poll() is not None)
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # the database stops taking writes: labels go to disk
        wait_for(lambda: sum(line[0] == "J" for line in lines) >= 20)
        os.kill(child.pid, signal.SIGKILL)  # mid-stream, with labels waiting in the journal
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
        reader.join(timeout=30)
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
        if locker is not None:
            locker.execute("ROLLBACK")
            locker.close()
    acknowledged = {i for line in lines for i in line.split()[1:]}
    journaled = {i for line in lines if line[0] == "J" for i in line.split()[1:]}
    db = Database(url)
    try:
        with Journal(folder, max_bytes=64 << 20) as journal:
            FeedbackStore(db, journal).start().close()  # the restart replays the journal
        with db.read() as conn:
            ids = set(conn.execute(select(feedback.c.request_id)).scalars())
            total = conn.execute(select(func.count()).select_from(feedback)).scalar_one()
    finally:
        db.dispose()
    assert journaled
    assert acknowledged <= ids
    assert total == len(ids)
