"""The training set of a retrain: logged predictions joined with their delayed labels.

:func:`build_training_set` reads the prediction log of a model (every version) in
``[since, until)``, keeps the requests that have a label in the ``feedback`` table and writes
one Parquet file with

- the **feature columns**, named as the model's signature names its inputs (the names the
  prediction log stores them under) and in the model's order — the reference data's column
  order when a reference is given, else ``features``, else the order the log holds them in;
- the **labels column** (``labels_column``, ``"label"`` by default): one label per row; a
  request of several rows labelled with a list spreads it over its rows, as
  :meth:`~modelyard.live.feedback.FeedbackStore.labels_for` does;
- a **source column** (``"source"``): ``"log"`` for rows from the prediction log,
  ``"reference"`` for rows of the version's reference data appended after them.

Outputs, latencies, timestamps and request ids are left out: a training function sees the
same columns the model was trained on, plus the label and the source. Nothing is written when
there is nothing to train on (no labelled prediction and no reference).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from modelyard.errors import InvalidInput, first_line
from modelyard.live.feedback import FeedbackStore
from modelyard.live.predlog import PredictionLog
from modelyard.live.records import Row, frame_of
from modelyard.store import Database

SOURCE_COLUMN = "source"
FROM_LOG = "log"
FROM_REFERENCE = "reference"

# Columns frame_of puts first; an input of the same name is stored as ``input_<name>``.
_META = ("request_id", "ts", "model", "version", "latency_ms")
# Private column names while joining, which no input of a model is expected to take.
_REQUEST, _ROW, _LABEL = "__modelyard_request", "__modelyard_row", "__modelyard_label"


@dataclass(frozen=True)
class TrainingSet:
    """A written training set: where it is, what it holds, and its content hash.

    ``rows_skipped`` counts labelled log rows left out because their label did not fit the
    request (a list label whose length is not the request's row count).
    """

    path: Path
    rows: int
    rows_from_log: int
    rows_from_reference: int
    rows_skipped: int
    columns: list[str]
    features: list[str]
    labels_column: str
    sha256: str
    since: datetime | None
    until: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for provenance and the audit log."""
        return {
            "path": str(self.path),
            "rows": self.rows,
            "rows_from_log": self.rows_from_log,
            "rows_from_reference": self.rows_from_reference,
            "rows_skipped": self.rows_skipped,
            "columns": list(self.columns),
            "features": list(self.features),
            "labels_column": self.labels_column,
            "sha256": self.sha256,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


def build_training_set(
    database: Database,
    model: str,
    *,
    since: datetime | None,
    until: datetime | None,
    out: Path,
    reference: pd.DataFrame | None = None,
    labels_column: str = "label",
    predictions: PredictionLog | None = None,
    features: Sequence[str] | None = None,
    source_column: str = SOURCE_COLUMN,
) -> TrainingSet:
    """Join ``model``'s logged predictions with their labels and write them as Parquet.

    Parameters
    ----------
    database
        The store holding the ``feedback`` table (and the ``prediction_log`` table, unless
        ``predictions`` writes Parquet files).
    model
        The model's name; predictions of all its versions are used.
    since, until
        The window of prediction times, ``since <= ts < until`` (timezone-aware); ``None``
        leaves that side open.
    out
        The Parquet file to write (its folder is created); replaced atomically.
    reference
        The champion version's reference data (features and ``labels_column``), appended
        after the logged rows; it also fixes the feature columns and their order.
    labels_column
        The name of the labels column, in ``reference`` and in the file written.
    predictions
        The prediction log to read; by default the ``prediction_log`` table of ``database``.
    features
        The model's input names in order (its signature's ``input_names``); by default the
        reference's columns, else the input columns found in the log.
    source_column
        The name of the column marking each row's origin (``"log"`` or ``"reference"``).

    Raises
    ------
    InvalidInput
        Nothing to train on (no labelled prediction in the window and no reference), a
        reference without its labels column, a feature the log does not hold, a naive time.
    """
    _check_time(since, "since")
    _check_time(until, "until")
    log = predictions if predictions is not None else PredictionLog(database)
    labelled, skipped = _labelled_rows(database, log, model, since, until)
    reference_features = _reference_features(reference, labels_column)
    chosen = list(features) if features is not None else reference_features
    if chosen is None:
        chosen = [c for c in labelled.columns if c != _LABEL]
    for name in (labels_column, source_column):
        if name in chosen:
            raise InvalidInput(f"{name!r} is both a feature and the name of the "
                               f"{'labels' if name == labels_column else 'source'} column; "
                               "pick another name for the latter")
    if labelled.empty and reference is None:
        note = (f" ({skipped} labelled rows were skipped: a list label needs one item per row "
                "of its request)" if skipped else "")
        raise InvalidInput(
            f"no labelled predictions of {model}{_window(since, until)}; post labels with "
            f"POST /v1/feedback or pass the reference{note}"
        )

    parts = []
    if not labelled.empty:
        missing = [name for name in chosen if name not in labelled.columns]
        if missing:
            raise InvalidInput(
                f"the prediction log of {model} holds no input column(s) "
                f"{', '.join(map(repr, missing))} that the model takes"
            )
        logged = labelled[chosen].copy()
        logged[labels_column] = labelled[_LABEL].to_numpy()
        logged[source_column] = FROM_LOG
        parts.append(logged.reset_index(drop=True))
    if reference is not None:
        missing = [name for name in chosen if name not in reference.columns]
        if missing:
            raise InvalidInput(f"the reference data lacks feature column(s) "
                               f"{', '.join(map(repr, missing))}")
        kept = reference[[*chosen, labels_column]].copy()
        kept.columns = pd.Index([*chosen, labels_column])
        kept[source_column] = FROM_REFERENCE
        parts.append(kept.reset_index(drop=True))
    table = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)

    path = Path(out)
    _write(table, path)
    return TrainingSet(
        path=path,
        rows=len(table),
        rows_from_log=len(labelled),
        rows_from_reference=0 if reference is None else len(reference),
        rows_skipped=skipped,
        columns=[str(c) for c in table.columns],
        features=chosen,
        labels_column=labels_column,
        sha256=_sha256(path),
        since=since,
        until=until,
    )


def _labelled_rows(
    database: Database, log: PredictionLog, model: str, since: datetime | None,
    until: datetime | None,
) -> tuple[pd.DataFrame, int]:
    """The input columns and the label (as ``_LABEL``) of every labelled log row, in log
    order, and how many labelled rows were skipped."""
    labels = FeedbackStore(database, predictions=log).labels_for(model, None, since, until)
    if labels.empty:
        return pd.DataFrame(), 0
    inputs = _input_frame(_first_of_each(log.sink.read(model, None, since, until)))
    labels = pd.DataFrame({_REQUEST: labels["request_id"], _LABEL: labels["label"]})
    for frame in (inputs, labels):  # both hold a request's rows in order: number them
        frame[_ROW] = frame.groupby(_REQUEST, sort=False).cumcount()
    joined = inputs.merge(labels, on=[_REQUEST, _ROW], how="inner", validate="one_to_one")
    fits = ~joined[_LABEL].map(lambda value: isinstance(value, list | dict))
    return joined[fits].drop(columns=[_REQUEST, _ROW]).reset_index(drop=True), int(
        (~fits).sum())


def _first_of_each(rows: list[Row]) -> list[Row]:
    """Each request once (a batch replayed after an outage may store it twice)."""
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row["request_id"] not in seen:
            seen.add(row["request_id"])
            unique.append(row)
    return unique


def _input_frame(rows: list[Row]) -> pd.DataFrame:
    """One row per input row: the request id (as ``_REQUEST``) and the inputs under their
    signature names (``frame_of`` prefixes an input named like a log field with ``input_``)."""
    frame = frame_of(rows, parts=("inputs",))
    columns: dict[str, Any] = {_REQUEST: frame["request_id"].to_numpy()}
    for name in frame.columns:
        if name in _META:
            continue
        original = name.removeprefix("input_")
        columns[original if original in _META else name] = frame[name].to_numpy()
    return pd.DataFrame(columns)


def _reference_features(reference: pd.DataFrame | None, labels_column: str) -> list[str] | None:
    if reference is None:
        return None
    columns = [str(c) for c in reference.columns]
    if labels_column not in columns:
        raise InvalidInput(
            f"the reference data has no labels column {labels_column!r} to train on; its "
            f"columns: {', '.join(columns)}"
        )
    return [c for c in columns if c != labels_column]


def _write(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        table.to_parquet(temporary, index=False)
    except (TypeError, ValueError) as error:  # pyarrow's ArrowTypeError/ArrowInvalid among them
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise InvalidInput(
            f"cannot write the training set: {first_line(str(error))} (do the labels or a "
            "feature mix types between the log and the reference?)"
        ) from None
    os.replace(temporary, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_time(at: datetime | None, name: str) -> None:
    if at is not None and at.tzinfo is None:
        raise InvalidInput(f"{name} must be timezone-aware (e.g. datetime.now(UTC)), not {at}")


def _window(since: datetime | None, until: datetime | None) -> str:
    if since and until:
        return f" between {since.isoformat()} and {until.isoformat()}"
    if since:
        return f" since {since.isoformat()}"
    if until:
        return f" before {until.isoformat()}"
    return ""
