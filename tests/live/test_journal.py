"""The local spool: bounded, ordered, replayed before deletion, tolerant of a torn last line."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.errors import StorageError
from modelyard.live.journal import Journal, Replayer

OpenJournal = Callable[..., Journal]


@pytest.fixture
def open_journal() -> Iterator[OpenJournal]:
    """Journals that are closed after the test (each holds a lock file open)."""
    opened: list[Journal] = []

    def make(*args: Any, **kwargs: Any) -> Journal:
        opened.append(Journal(*args, **kwargs))
        return opened[-1]

    yield make
    for journal in opened:
        journal.close()


def records(start: int, stop: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "x": i} for i in range(start, stop)]


def replay_all(journal: Journal) -> list[Any]:
    got: list[Any] = []
    journal.replay(got.extend)
    return got


def test_replay_gives_back_every_record_in_order_across_segments(
    open_journal: OpenJournal, tmp_path: Path
) -> None:
    journal = open_journal(tmp_path / "j", max_bytes=1 << 20, segment_bytes=200)
    for start in range(0, 100, 10):
        assert journal.append(records(start, start + 10)) == 10
    assert len(list((tmp_path / "j").glob("*.jsonl"))) > 3  # it rolled over to new segments
    assert (journal.spooled_total, journal.records) == (100, 100)
    assert replay_all(journal) == records(0, 100)
    assert (journal.records, journal.bytes, journal.replayed_total) == (0, 0, 100)
    assert list((tmp_path / "j").glob("*.jsonl")) == []


def test_records_survive_a_reopen_and_numpy_values_become_json(
    open_journal: OpenJournal, tmp_path: Path
) -> None:
    journal = open_journal(tmp_path, max_bytes=1 << 20)
    journal.append([{"a": np.array([1.5, np.nan]), "b": np.int64(3)}], fsync=True)
    journal.close()
    reopened = open_journal(tmp_path, max_bytes=1 << 20)
    assert reopened.records == 1
    assert replay_all(reopened) == [{"a": [1.5, None], "b": 3}]


def test_a_full_journal_keeps_a_prefix_counts_drops_and_warns_once_per_episode(
    open_journal: OpenJournal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    line = len(b'{"id":"r10","x":10}\n')
    journal = open_journal(tmp_path, max_bytes=line * 25)
    with caplog.at_level(logging.WARNING, logger="modelyard.journal"):
        assert journal.append(records(10, 30)) == 20
        assert journal.append(records(30, 40)) == 5  # the rest would not fit: none of it
        assert journal.append(records(40, 50)) == 0
        assert journal.bytes <= journal.max_bytes
        assert (journal.spooled_total, journal.dropped_total) == (25, 15)
        full = [r for r in caplog.records if "is full" in r.getMessage()]
        assert len(full) == 1
        assert replay_all(journal) == records(10, 35)
        assert journal.append(records(50, 51)) == 1
        assert any("takes records again" in r.getMessage() for r in caplog.records)
        assert journal.append(records(10, 40)) == 24
        full = [r for r in caplog.records if "is full" in r.getMessage()]
        assert len(full) == 2  # a new episode is reported again


def test_a_torn_last_line_is_skipped_and_the_rest_kept(
    open_journal: OpenJournal, tmp_path: Path
) -> None:
    journal = open_journal(tmp_path, max_bytes=1 << 20)
    journal.append(records(0, 3))
    journal.close()
    (segment,) = tmp_path.glob("*.jsonl")
    with segment.open("ab") as handle:  # what kill -9 in the middle of a write leaves
        handle.write(b'{"id":"r3","x"')
    reopened = open_journal(tmp_path, max_bytes=1 << 20)
    reopened.append(records(4, 5))  # goes to a new segment, not after the torn bytes
    assert replay_all(reopened) == [*records(0, 3), *records(4, 5)]
    assert reopened.torn_total == 1


def test_a_segment_is_deleted_only_after_its_consumer_succeeded(
    open_journal: OpenJournal, tmp_path: Path
) -> None:
    journal = open_journal(tmp_path, max_bytes=1 << 20, segment_bytes=1)  # an append a segment
    for start in range(0, 30, 10):
        journal.append(records(start, start + 10))
    seen: list[list[Any]] = []

    def flaky(batch: list[Any]) -> None:
        if len(seen) == 1:
            seen.append([])
            raise ConnectionError("database down")
        seen.append(batch)

    with pytest.raises(ConnectionError):
        journal.replay(flaky)
    assert seen[0] == records(0, 10)
    assert journal.records == 20  # the failed segment and the one after it are kept
    assert replay_all(journal) == records(10, 30)
    assert journal.records == 0


def test_appends_during_a_replay_wait_for_the_next_one(
    open_journal: OpenJournal, tmp_path: Path
) -> None:
    journal = open_journal(tmp_path, max_bytes=1 << 20)
    journal.append(records(0, 5))

    def consumer(batch: list[Any]) -> None:
        journal.append(records(5, 6))  # e.g. the writer spooling while the replayer runs

    assert journal.replay(consumer) == 5
    assert replay_all(journal) == records(5, 6)


def test_one_process_at_a_time_per_folder(
    open_journal: OpenJournal, tmp_path: Path
) -> None:
    journal = open_journal(tmp_path, max_bytes=1024)
    with pytest.raises(StorageError, match="in use by another process"):
        open_journal(tmp_path, max_bytes=1024)
    journal.close()
    open_journal(tmp_path, max_bytes=1024).close()


def test_the_replayer_retries_until_the_consumer_works_and_clears_the_outage(
    open_journal: OpenJournal, tmp_path: Path
) -> None:
    journal = open_journal(tmp_path, max_bytes=1 << 20)
    journal.append(records(0, 10))
    sink: list[Any] = []
    attempts: list[int] = []
    healthy = threading.Event()

    def consumer(batch: list[Any]) -> None:
        attempts.append(len(batch))
        if not healthy.is_set():
            raise ConnectionError("still down")
        sink.extend(batch)

    replayer = Replayer(journal, consumer, name="test-replay", retry_s=0.01, max_backoff_s=0.05)
    replayer.outage.set()
    replayer.start()
    try:
        deadline = time.monotonic() + 10
        while len(attempts) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(attempts) >= 3
        assert not sink
        assert replayer.outage.is_set()
        healthy.set()
        while journal.records and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink == records(0, 10)
        assert not replayer.outage.is_set()
    finally:
        replayer.stop()
