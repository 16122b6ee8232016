"""The prediction log: sampled requests with their inputs and outputs, written in batches.

:meth:`PredictionLog.submit` takes one request (a sampling decision and one
``deque.append``); :meth:`PredictionLog.submit_stacked` the requests of one model version that
live monitoring already stacked column by column (:mod:`~modelyard.live.stacked`), which is how
a server hands them over. A writer thread takes what has queued every ``flush_interval_s``
(sooner once ``batch_size`` requests wait), turns it into one Arrow table per model version
(:mod:`~modelyard.live.batches`; stacked groups straight from their arrays) and stores each as
one compressed blob in the database with an index row per request, or as one Parquet file per
batch and day under ``<root>/model=<m>/version=<v>/date=YYYY-MM-DD/`` (the user's choice of
sink).

Nothing accepted is lost quietly. When the sink fails (database down), the batch goes to the
local :class:`~modelyard.live.journal.Journal` and later batches follow it there; a
:class:`~modelyard.live.journal.Replayer` thread replays the journal once the sink works
again (every ``retry_s``, backing off to ``max_backoff_s``), and again after a restart. When
the in-memory queue is full, records go to the journal directly; when the journal is full
they are dropped and counted in ``dropped`` (and the journal logs it).

Sampling keeps a request when a hash of its id falls below the rate, so every replica keeps
the same requests and a sampled-out prediction is sampled out everywhere.

Tabular requests are stored column by column, one value per input row; others keep their
inputs and outputs as JSON. Outputs take the names window profiles use: ``prediction`` for
``predict`` and ``proba_<class>`` for ``predict_proba``. :meth:`PredictionLog.records` reads
them back as one table row per input row.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard.live._clock import Clock, SystemClock
from modelyard.live.batches import (
    Batch,
    encode,
    from_rows,
    from_stacked,
    is_journal_batch,
    layout_of,
)
from modelyard.live.journal import Journal, Replayer
from modelyard.live.records import MAX_ID, PredictionRecord, Row, checked, frame_of
from modelyard.live.sinks import DatabaseSink, ParquetSink, Sink
from modelyard.live.stacked import Stacked
from modelyard.store import Database

log = logging.getLogger("modelyard.predlog")

_PURGE_EVERY_S = 3600.0


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
    max_queue : requests held in memory; past it, submitted ones go to the journal.

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
        self._queue: deque[PredictionRecord | Stacked] = deque()
        # Requests queued = taken in - taken out; each counter has one writing thread (the
        # submitter's, the flusher's), so neither needs a lock.
        self._taken_in = 0
        self._taken_out = 0
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
        if self.queue_depth >= self.max_queue:
            self._overflow(record)
            return
        self._queue.append(record)
        self._taken_in += 1
        if self.queue_depth >= self.batch_size:
            self._wake.set()

    def submit_many(self, records: Sequence[PredictionRecord]) -> None:
        """:meth:`submit` for each of ``records``, with less work per record."""
        if self.sample_rate < 1.0 or self.queue_depth + len(records) > self.max_queue:
            for record in records:
                self.submit(record)
            return
        stamp: float | None = None
        for record in records:
            if record.at is None:
                stamp = stamp if stamp is not None else self.clock.now().timestamp()
                record.at = stamp
        self._queue.extend(records)
        self._taken_in += len(records)
        self.submitted += len(records)
        if self.queue_depth >= self.batch_size:
            self._wake.set()

    def submit_stacked(self, group: Stacked) -> None:
        """Take the stacked requests of one model version (a collector's round); returns at
        once and never raises. A group whose outputs the ``rows`` layout cannot hold, or with
        an id that cannot be logged, goes request by request."""
        if not group.loggable or not 0 < min(map(len, group.ids)) <= max(
                map(len, group.ids)) <= MAX_ID:
            self.submit_many([PredictionRecord.of(o) for o in group.observations()])
            return
        self.submitted += group.requests
        if self.sample_rate < 1.0:
            keep = np.fromiter((sampled(i, self.sample_rate) for i in group.ids), bool,
                               group.requests)
            kept = int(keep.sum())
            self.sampled_out += group.requests - kept
            if kept == 0:
                return
            if kept < group.requests:
                group = group.take(keep)
        if self.queue_depth + group.requests > self.max_queue:
            try:
                self._spool([from_stacked([group])])
            except Exception:
                self._count(dropped=group.requests)
                log.exception("prediction log: could not keep %d requests of %s:%s",
                              group.requests, group.model, group.version)
            return
        self._queue.append(group)
        self._taken_in += group.requests
        if self.queue_depth >= self.batch_size:
            self._wake.set()

    def submit_folded(self, folded: Sequence[Stacked | Any]) -> None:
        """What a collector's round folded: stacked groups, and single serving
        ``Observation``s (anything with their attributes)."""
        single = []
        for item in folded:
            if isinstance(item, Stacked):
                self.submit_stacked(item)
            else:
                single.append(PredictionRecord.of(item))
        if single:
            self.submit_many(single)

    def _overflow(self, record: PredictionRecord) -> None:
        try:
            problem = checked(record)
            if problem is not None:
                raise ValueError(problem)
            self._spool(encode([record]))
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
        """Write (or spool) everything queued so far, in batches; returns requests taken."""
        with self._flushing:  # one flusher at a time: the writer, or close()
            pending = self.queue_depth
            taken = 0
            while taken < pending:
                records: list[PredictionRecord] = []
                stacked: dict[tuple[object, ...], list[Stacked]] = {}
                count = 0
                while count < self.batch_size and taken + count < pending:
                    item = self._queue.popleft()
                    if isinstance(item, Stacked):
                        stacked.setdefault(layout_of(item), []).append(item)
                        count += item.requests
                    else:
                        records.append(item)
                        count += 1
                taken += count
                self._taken_out += count
                self._store(records, [from_stacked(groups) for groups in stacked.values()])
            return taken

    def _store(self, records: list[PredictionRecord], ready: list[Batch]) -> None:
        good: list[PredictionRecord] = []
        for record in records:
            problem = checked(record)
            if problem is None:
                good.append(record)
            else:
                self._count(dropped=1)
                log.warning("prediction log: dropped request %r: %s", record.request_id, problem)
        batches = ready + (self._encode(good) if good else [])
        if not batches:
            return
        if self._replayer is not None and self._replayer.outage.is_set():
            self._spool(batches)
            return
        try:
            stored = self.sink.write_batches(batches)
        except Exception as error:
            self._outage(error)
            self._spool(batches)
            return
        self._count(written=stored, dropped=sum(b.requests for b in batches) - stored)
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

    def _encode(self, records: list[PredictionRecord]) -> list[Batch]:
        """The records as batches; a record that cannot be encoded is dropped and counted."""
        try:
            return encode(records)
        except Exception:  # find the culprit: each record alone
            batches = []
            for record in records:
                try:
                    batches.extend(encode([record]))
                except Exception as error:
                    self._count(dropped=1)
                    log.warning("prediction log: dropped request %r: %s", record.request_id,
                                error)
            return batches

    def _spool(self, batches: list[Batch]) -> None:
        total = sum(batch.requests for batch in batches)
        kept = 0
        if self.journal is not None:
            taken = self.journal.append([batch.to_journal() for batch in batches])
            kept = sum(batch.requests for batch in batches[:taken])
        self._count(spooled=kept, dropped=total - kept)

    def adopt(self, journal: Journal) -> int:
        """Replay another worker's journal (one no process runs any more) into this sink;
        returns the records replayed. Raises what the sink raised; the rest stays there."""
        return journal.replay(self._replay)

    def _replay(self, entries: list[Row]) -> None:
        """Journal entries back to the sink: batches, or rows an older version spooled."""
        batches: list[Batch] = []
        rows: list[Row] = []
        for entry in entries:  # in the order they were spooled
            if is_journal_batch(entry):
                batches += [*from_rows(rows), Batch.from_journal(entry)]
                rows = []
            else:
                rows.append(entry)
        batches += from_rows(rows)
        stored = self.sink.write_batches(batches)
        self._count(written=stored, replayed=stored,
                    dropped=sum(b.requests for b in batches) - stored)

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
        """Requests queued for the writer."""
        return self._taken_in - self._taken_out

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
        until: datetime | None = None, limit: int | None = None,
    ) -> pd.DataFrame:
        """Stored records of ``model`` (one version, or all) with ``since <= ts < until``.

        One row per input row: ``request_id``, ``ts`` (UTC), ``model``, ``version``,
        ``latency_ms``, then the input columns, then the outputs (an output whose name is
        taken gets an ``output_`` prefix). Records still queued or spooled are not included.
        ``limit`` keeps the first that many records (requests, not rows).
        """
        return frame_of(self.sink.read(model, version, since, until, limit))

