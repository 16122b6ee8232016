"""Delayed labels: ``[{"id": request id, "label": ...}]`` stored durably, joined to predictions.

:meth:`FeedbackStore.ingest` answers only once the labels are durable: committed to the
``feedback`` table, or — when the database cannot be reached — written and ``fsync``-ed to
the feedback journal, which a background thread replays once the database is back (and
:meth:`FeedbackStore.start` replays after a restart). Posting is idempotent: the first label
stored for an id stays, later ones for the same id are counted as duplicates.

Ids that match no stored prediction are stored anyway and reported back in ``unknown_ids``:
the prediction may still be queued or spooled by the prediction log, or sampled out of it,
and a label lost now could not be posted again by a client that already moved on.

A label is a JSON scalar (text, number, boolean) or, for a request of several rows, a short
list with one label per row.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite

from modelyard.errors import InvalidInput, Unavailable
from modelyard.live._clock import Clock, SystemClock
from modelyard.live.journal import Journal, Replayer
from modelyard.live.predlog import PredictionLog
from modelyard.live.records import Row, frame_of, iso
from modelyard.live.sinks import DatabaseSink, is_unavailable, logged
from modelyard.store import Database
from modelyard.store.tables import feedback, prediction_batches, prediction_log

log = logging.getLogger("modelyard.feedback")

MAX_ID_CHARS = 128
MAX_LABEL_CHARS = 1024
MAX_LABEL_ITEMS = 1024
MAX_ITEMS = 10_000
_CHUNK = 500  # ids per IN (…) list
_FIELDS = {"id", "label"}


@dataclass(frozen=True)
class FeedbackResult:
    """What one post did: labels newly stored, ids already labelled, ids with no prediction.

    ``deferred`` means the database was down: the labels are safe in the journal, stored when
    it returns; duplicates then count only repeats within the post and ids are not checked.
    """

    accepted: int
    duplicates: int
    unknown_ids: list[str] = field(default_factory=list)
    deferred: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "unknown_ids": self.unknown_ids, "deferred": self.deferred}


def validate(items: Any, max_items: int = MAX_ITEMS) -> tuple[list[tuple[str, Any]], int]:
    """The ``(id, label)`` pairs of a post, each id once, and how many repeats were dropped.

    >>> validate([{"id": "a", "label": 1}, {"id": "b", "label": "yes"}, {"id": "a", "label": 1}])
    ([('a', 1), ('b', 'yes')], 1)
    >>> validate([{"id": "a", "lable": 1}])
    Traceback (most recent call last):
    ...
    modelyard.errors.InvalidInput: feedback item 0: unknown field 'lable'; an item has ...
    """
    if not isinstance(items, list | tuple):
        raise InvalidInput('feedback must be a JSON array of {"id": ..., "label": ...} objects, '
                           f"not {_kind(items)}")
    if not items:
        raise InvalidInput('feedback is empty: send at least one {"id": ..., "label": ...}')
    if len(items) > max_items:
        raise InvalidInput(f"feedback holds {len(items)} items; send at most {max_items} a post")
    pairs: dict[str, tuple[int, Any]] = {}
    repeats = 0
    for index, item in enumerate(items):
        where = f"feedback item {index}"
        if not isinstance(item, Mapping):
            raise InvalidInput(f'{where}: expected an object with "id" and "label", '
                               f"not {_kind(item)}")
        for name in item:
            if name not in _FIELDS:
                raise InvalidInput(f'{where}: unknown field {name!r}; an item has "id" and '
                                   '"label"')
        for name in ("id", "label"):
            if name not in item:
                raise InvalidInput(f'{where}: "{name}" is missing')
        request_id = item["id"]
        if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID_CHARS:
            raise InvalidInput(f'{where}: "id" must be text of 1 to {MAX_ID_CHARS} '
                               f"characters, not {_shown(request_id)}")
        label = item["label"]
        problem = _label_problem(label)
        if problem:
            raise InvalidInput(f'{where} (id {request_id!r}): "label" {problem}')
        if request_id in pairs:
            first, earlier = pairs[request_id]
            if earlier != label or type(earlier) is not type(label):
                raise InvalidInput(f"{where}: id {request_id!r} is given again with another "
                                   f"label than in item {first}")
            repeats += 1
            continue
        pairs[request_id] = (index, label)
    return [(request_id, label) for request_id, (_, label) in pairs.items()], repeats


def _label_problem(label: Any) -> str | None:
    if isinstance(label, list):
        if not label:
            return "is an empty list"
        if len(label) > MAX_LABEL_ITEMS:
            return f"has {len(label)} items; at most {MAX_LABEL_ITEMS}"
        for position, value in enumerate(label):
            problem = _scalar_problem(value)
            if problem:
                return f"item {position} {problem}"
        return None
    return _scalar_problem(label)


def _scalar_problem(value: Any) -> str | None:
    if value is None:
        return "is null; send a text, number or boolean label"
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if abs(value) < 2**63 else "is a number too large to store"
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number"
    if isinstance(value, str):
        return None if len(value) <= MAX_LABEL_CHARS else (
            f"is text of {len(value)} characters; at most {MAX_LABEL_CHARS}")
    return f"must be a text, number or boolean (or a list of them), not {_kind(value)}"


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "text", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"text of {len(value)} characters" if value else "empty text"
    return _kind(value)


class FeedbackStore:
    """Labels in the ``feedback`` table, spooled to a journal while the database is down.

    Parameters
    ----------
    database : the store holding ``feedback`` (and ``prediction_log``).
    journal : where labels wait (fsync-ed) while the database is unavailable; without one,
        a post then fails with :class:`~modelyard.errors.Unavailable`.
    clock : for ``received_at``.
    predictions : the prediction log, when it writes Parquet files: :meth:`labels_for` reads
        predictions there, and ids are not checked (``unknown_ids`` stays empty).

    Attributes
    ----------
    accepted, duplicates, deferred : counters for metrics: labels stored in the database,
        repeats ignored, labels written to the journal while the database was down.
    """

    def __init__(
        self, database: Database, journal: Journal | None = None, clock: Clock | None = None,
        *, predictions: PredictionLog | None = None, max_items: int = MAX_ITEMS,
        retry_s: float = 1.0, max_backoff_s: float = 30.0,
    ) -> None:
        self.database = database
        self.journal = journal
        self.clock = clock or SystemClock()
        self.predictions = predictions
        self.max_items = max_items
        self.check_ids = predictions is None or isinstance(predictions.sink, DatabaseSink)
        self.accepted = 0
        self.duplicates = 0
        self.deferred = 0
        self._counts = threading.Lock()
        self._replayer = (
            Replayer(journal, self._replay, name="modelyard-feedback-replay", retry_s=retry_s,
                     max_backoff_s=max_backoff_s) if journal is not None else None
        )

    def start(self) -> FeedbackStore:
        """Replay labels left in the journal (a crash, an outage), then keep retrying."""
        if self._replayer is None:
            return self
        try:
            self._replayer.replay_now()
        except Exception as error:
            if not is_unavailable(error):
                raise
            self._replayer.outage.set()
            log.warning("feedback: the database is unavailable at start; %d labels wait in %s",
                        self.journal.records if self.journal else 0,
                        self.journal.directory if self.journal else "")
        self._replayer.start()
        return self

    def close(self) -> None:
        """Stop retrying; labels still in the journal are replayed at the next start."""
        if self._replayer is not None:
            self._replayer.stop()

    def ingest(self, items: Any) -> FeedbackResult:
        """Store labels ``[{"id": ..., "label": ...}]``; returns once they are durable.

        Raises :class:`~modelyard.errors.InvalidInput` naming the first bad item and field
        (nothing is stored then), and :class:`~modelyard.errors.Unavailable` when the
        database is down and the journal cannot take the labels (retry the post).
        """
        pairs, repeats = validate(items, self.max_items)
        received = iso(self.clock.now())
        rows = [{"request_id": request_id, "label": label, "received_at": received}
                for request_id, label in pairs]
        if self._replayer is not None and self._replayer.outage.is_set():
            return self._defer(rows, repeats)
        try:
            with self.database.write() as conn:
                duplicates, unknown = self._insert(conn, rows)
        except Exception as error:
            if not is_unavailable(error):
                raise
            if self._replayer is not None:
                self._replayer.outage.set()
                log.warning("feedback: the database is unavailable (%s); labels go to the "
                            "journal until it returns", str(error).splitlines()[0])
            return self._defer(rows, repeats)
        with self._counts:
            self.accepted += len(rows) - duplicates
            self.duplicates += duplicates + repeats
        return FeedbackResult(len(rows) - duplicates, duplicates + repeats, unknown)

    def _insert(self, conn: Connection, rows: list[Row]) -> tuple[int, list[str]]:
        ids = [row["request_id"] for row in rows]
        existing = set(self._present(conn, feedback.c.request_id, ids))
        fresh = [row for row in rows if row["request_id"] not in existing]
        if fresh:
            conn.execute(self._insert_ignoring_duplicates(), fresh)
        if not self.check_ids:
            return len(existing), []
        known = set(self._present(conn, prediction_log.c.request_id, ids))
        return len(existing), [request_id for request_id in ids if request_id not in known]

    def _insert_ignoring_duplicates(self) -> Any:
        dialect = postgresql if self.database.dialect == "postgresql" else sqlite
        return dialect.insert(feedback).on_conflict_do_nothing(index_elements=["request_id"])

    @staticmethod
    def _present(conn: Connection, column: Any, ids: list[str]) -> Iterator[str]:
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            yield from conn.execute(select(column).where(column.in_(chunk)).distinct()).scalars()

    def _defer(self, rows: list[Row], repeats: int) -> FeedbackResult:
        kept = self.journal.append(rows, fsync=True) if self.journal is not None else 0
        if kept < len(rows):
            raise Unavailable("the database is unavailable and the feedback journal cannot take "
                              "more labels; post them again later")
        with self._counts:
            self.deferred += kept
            self.duplicates += repeats
        return FeedbackResult(kept, repeats, [], deferred=True)

    def adopt(self, journal: Journal) -> int:
        """Replay another worker's journal (one no process runs any more) into this sink;
        returns the labels replayed. Raises what the sink raised; the rest stays there."""
        return journal.replay(self._replay)

    def _replay(self, rows: list[Row]) -> None:
        with self.database.write() as conn:
            conn.execute(self._insert_ignoring_duplicates(), rows)

    def labels_for(
        self, model: str, version: int | None = None, since: datetime | None = None,
        until: datetime | None = None,
    ) -> pd.DataFrame:
        """Labelled predictions of ``model`` made in ``[since, until)``, one row per input row.

        Columns: ``request_id``, ``ts`` (of the prediction), ``model``, ``version``,
        ``latency_ms``, the outputs (``prediction``, ``proba_<class>``, …), ``label`` and
        ``received_at``. A list label is spread over the request's rows.
        """
        if self.predictions is not None and not self.check_ids:
            found = self.predictions.sink.read(model, version, since, until)
            labels = self._labels(list(dict.fromkeys(row["request_id"] for row in found)))
            rows = [{**row, "labels": labels[row["request_id"]]} for row in found
                    if row["request_id"] in labels]
        else:
            rows = self._joined(model, version, since, until)
        seen: set[str] = set()
        unique = []
        for row in rows:  # a prediction replayed twice (at-least-once) is judged once
            if row["request_id"] not in seen:
                seen.add(row["request_id"])
                unique.append(row)
        frame = frame_of(unique, parts=("outputs", "labels"))
        for name in ("label", "received_at"):
            if name not in frame.columns:  # nothing labelled yet
                frame[name] = pd.Series(dtype=object)
        frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True, format="ISO8601")
        return frame

    def _labels(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        labels: dict[str, dict[str, Any]] = {}
        with self.database.read() as conn:
            for start in range(0, len(ids), _CHUNK):
                query = select(feedback).where(
                    feedback.c.request_id.in_(ids[start : start + _CHUNK]))
                for row in conn.execute(query):
                    labels[row.request_id] = {"label": row.label, "received_at": row.received_at}
        return labels

    def _joined(self, model: str, version: int | None, since: datetime | None,
                until: datetime | None) -> list[Row]:
        """Labelled requests logged in ``[since, until)``, in time order: labels → index rows
        → the batches they point to (kept by their span), then each request's own time."""
        p, f, b = prediction_log, feedback, prediction_batches
        label_id: Any = f.c.request_id
        model_column: Any = None
        if self.database.dialect == "sqlite":
            # Without statistics SQLite cannot tell that labels are far fewer than logged
            # requests, and drove this join from the log (a scan of every logged request, 0.2 s
            # a call at 6M). A unary '+' keeps an index from being used for a term: labels
            # first, then their index rows by key, then their batches by id.
            label_id = literal_column(f"+{f.name}.request_id")
            model_column = literal_column(f"+{b.name}.model")
        query = logged(select(p.c.request_id, p.c.batch_id, f.c.label, f.c.received_at)
                       .select_from(f.join(p, p.c.request_id == label_id)
                                    .join(b, b.c.id == p.c.batch_id)),
                       model, version, since, until, model_column)
        with self.database.read() as conn:
            hits = conn.execute(query.order_by(p.c.batch_id)).all()
            batches = DatabaseSink(self.database).batches(conn, [hit.batch_id for hit in hits])
        requests: dict[tuple[int, str], Row] = {}
        for batch_id, batch in batches.items():
            for row in batch.rows():  # a request id a batch holds twice: the first is judged
                requests.setdefault((batch_id, row["request_id"]), row)
        start = iso(since) if since is not None else ""
        end = iso(until) if until is not None else "9999"
        joined = []
        for hit in hits:
            found = requests.get((hit.batch_id, hit.request_id))
            if found is not None and start <= found["ts"] < end:
                joined.append({**found, "labels": {"label": hit.label,
                                                   "received_at": hit.received_at}})
        joined.sort(key=lambda row: row["ts"])  # stable: a batch's own order breaks ties
        return joined
