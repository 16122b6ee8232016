"""The training set of a retrain: logged inputs joined with delayed labels, the reference
appended, written as Parquet with the columns the model was trained on."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline

import modelyard
from modelyard.api.workspace import open_database
from modelyard.errors import InvalidInput
from modelyard.lifecycle.dataset import build_training_set
from modelyard.live.feedback import FeedbackStore
from modelyard.live.predlog import PredictionLog
from modelyard.live.records import PredictionRecord
from modelyard.settings import Settings
from modelyard.store import Database

T0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
COLUMNS = ["tenure", "charges"]


def predict(log: PredictionLog, request_id: str, rows: list[list[float]], at: datetime,
            version: int = 1, columns: list[str] = COLUMNS) -> None:
    """Log one answered request as the data plane hands it over (a float matrix)."""
    data = np.asarray(rows, dtype=np.float64)
    log.submit(PredictionRecord(
        request_id, "churn", version, data,
        {"predict": np.arange(len(rows)) % 2, "predict_proba": np.full((len(rows), 2), 0.5)},
        latency_ms=3.0, at=at.timestamp(), columns=columns, classes=[0, 1],
    ))


def label(db: Database, pairs: dict[str, Any], predictions: PredictionLog | None = None) -> None:
    FeedbackStore(db, predictions=predictions).ingest(
        [{"id": request_id, "label": value} for request_id, value in pairs.items()])


def traffic(log: PredictionLog) -> None:
    predict(log, "r1", [[1.0, 10.0]], T0 + timedelta(minutes=1))
    predict(log, "r2", [[2.0, 20.0], [3.0, 30.0], [4.0, 40.0]], T0 + timedelta(minutes=2),
            version=2)
    predict(log, "r3", [[5.0, 50.0]], T0 + timedelta(minutes=3))  # never labelled
    predict(log, "r4", [[6.0, 60.0]], T0 - timedelta(hours=1))  # before the window
    predict(log, "r5", [[7.0, 70.0], [8.0, 80.0]], T0 + timedelta(minutes=4))
    predict(log, "r6", [[9.0, 90.0], [10.0, 100.0]], T0 + timedelta(minutes=5))
    log.flush()


LABELS = {"r1": 1, "r2": [0, 1, 0], "r4": 1, "r5": [1], "r6": 1}


def test_labelled_predictions_of_every_version_become_feature_and_label_rows(
    db: Database, tmp_path: Path
) -> None:
    log = PredictionLog(db)
    traffic(log)
    label(db, LABELS)

    result = build_training_set(db, "churn", since=T0, until=T0 + timedelta(hours=1),
                                out=tmp_path / "sets" / "train.parquet")

    table = pd.read_parquet(result.path)
    assert list(table.columns) == ["tenure", "charges", "label", "source"]
    assert table["tenure"].tolist() == [1.0, 2.0, 3.0, 4.0, 9.0, 10.0]
    assert table["charges"].tolist() == [10.0, 20.0, 30.0, 40.0, 90.0, 100.0]
    assert table["label"].tolist() == [1, 0, 1, 0, 1, 1]  # a list label spread over its rows
    assert set(table["source"]) == {"log"}
    assert (result.rows, result.rows_from_log, result.rows_from_reference) == (6, 6, 0)
    assert result.rows_skipped == 2  # r5: one label for two rows cannot be placed
    assert result.columns == list(table.columns)
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert (result.since, result.until) == (T0, T0 + timedelta(hours=1))
    assert not list(result.path.parent.glob(".*.tmp"))


def test_the_reference_is_appended_and_fixes_the_column_order(
    db: Database, tmp_path: Path
) -> None:
    log = PredictionLog(db)
    traffic(log)
    label(db, LABELS)
    reference = pd.DataFrame({"charges": [11.0, 12.0], "tenure": [1.5, 2.5], "y": [0, 1]})

    result = build_training_set(db, "churn", since=T0, until=None, out=tmp_path / "t.parquet",
                                reference=reference, labels_column="y")

    table = pd.read_parquet(result.path)
    assert list(table.columns) == ["charges", "tenure", "y", "source"]
    assert table["source"].tolist() == ["log"] * 6 + ["reference"] * 2
    assert table.tail(2)[["charges", "tenure", "y"]].to_dict("list") == reference.to_dict("list")
    assert table["y"].tolist()[:6] == [1, 0, 1, 0, 1, 1]
    assert (result.rows, result.rows_from_log, result.rows_from_reference) == (8, 6, 2)


def test_without_labels_the_reference_alone_is_the_training_set(
    db: Database, tmp_path: Path
) -> None:
    reference = pd.DataFrame({"tenure": [1.0], "charges": [2.0], "label": ["yes"]})
    result = build_training_set(db, "churn", since=T0, until=None, out=tmp_path / "t.parquet",
                                reference=reference)
    assert pd.read_parquet(result.path).to_dict("list") == {
        "tenure": [1.0], "charges": [2.0], "label": ["yes"], "source": ["reference"]}
    assert (result.rows_from_log, result.rows_from_reference) == (0, 1)


def test_no_labelled_prediction_and_no_reference_says_how_to_get_labels(
    db: Database, tmp_path: Path
) -> None:
    log = PredictionLog(db)
    predict(log, "r1", [[1.0, 10.0]], T0 + timedelta(minutes=1))
    log.flush()
    with pytest.raises(InvalidInput, match=(
            r"^no labelled predictions of churn since 2027-01-15T08:00:00\+00:00; post labels "
            r"with POST /v1/feedback or pass the reference$")):
        build_training_set(db, "churn", since=T0, until=None, out=tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists()


def test_a_prediction_log_in_parquet_files_is_read_too(db: Database, tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "prediction-log")
    traffic(log)
    label(db, LABELS, predictions=log)

    result = build_training_set(db, "churn", since=T0, until=T0 + timedelta(hours=1),
                                out=tmp_path / "t.parquet", predictions=log)

    table = pd.read_parquet(result.path)
    assert table["tenure"].tolist() == [1.0, 2.0, 3.0, 4.0, 9.0, 10.0]
    assert table["label"].tolist() == [1, 0, 1, 0, 1, 1]


def test_inputs_named_like_log_fields_keep_their_names(db: Database, tmp_path: Path) -> None:
    log = PredictionLog(db)
    predict(log, "r1", [[3.0, 7.0, 1.0]], T0, columns=["version", "request_id", "label"])
    log.flush()
    label(db, {"r1": 0})
    result = build_training_set(db, "churn", since=None, until=None, out=tmp_path / "t.parquet",
                                labels_column="churned")
    assert pd.read_parquet(result.path).to_dict("list") == {
        "version": [3.0], "request_id": [7.0], "label": [1.0], "churned": [0],
        "source": ["log"]}


def test_the_file_trains_the_model_it_came_from(
    settings: Settings, cancer: tuple[pd.DataFrame, pd.Series], cancer_model: Pipeline,
    tmp_path: Path,
) -> None:
    X, y = cancer
    modelyard.register(cancer_model, "churn", reference=X.iloc[:100], labels=y.iloc[:100],
                       settings=settings)
    champion = modelyard.load("churn", settings)
    db = open_database(settings.resolved_database_url, settings.store)
    log = PredictionLog(db)
    served = X.iloc[100:300]
    for i, start in enumerate(range(0, len(served), 20)):
        rows = served.iloc[start : start + 20]
        log.submit(PredictionRecord(
            f"q{i}", "churn", 1, rows.to_numpy(np.float64), {"predict": champion.predict(rows)},
            at=(T0 + timedelta(seconds=i)).timestamp(), columns=champion.signature.input_names,
        ))
        if i % 2 == 0:  # half the requests get their labels
            labels = y.iloc[100 + start : 120 + start].tolist()
            FeedbackStore(db).ingest([{"id": f"q{i}", "label": labels}])
    log.flush()
    assert champion.manifest.reference is not None
    labels_column = champion.manifest.reference.labels_column
    assert labels_column == "target"

    result = build_training_set(db, "churn", since=T0, until=None, out=tmp_path / "t.parquet",
                                reference=champion.reference(),
                                labels_column=labels_column)

    table = pd.read_parquet(result.path)
    features = table.drop(columns=[labels_column, "source"])
    assert list(features.columns) == champion.signature.input_names
    assert (result.rows_from_log, result.rows_from_reference) == (100, 100)
    retrained = modelyard.register(
        clone(cancer_model).fit(features, table[labels_column]), "churn",
        reference=table.drop(columns=["source"]), labels_column=labels_column,
        parent=champion.info.ref, settings=settings)
    assert retrained.version == 2
    accuracy = (modelyard.load("churn:2", settings).predict(X) == y.to_numpy()).mean()
    assert accuracy > 0.9


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"since": datetime(2027, 1, 15)}, "since must be timezone-aware"),
        ({"reference": pd.DataFrame({"tenure": [1.0], "charges": [2.0]})},
         "the reference data has no labels column 'label' to train on; its columns: "
         "tenure, charges"),
        ({"features": ["tenure", "plan"]},
         "the prediction log of churn holds no input column\\(s\\) 'plan'"),
        ({"features": ["tenure", "source"]}, "'source' is both a feature and the name of"),
        ({"features": ["tenure", "label"]}, "'label' is both a feature and the name of the "
         "labels column; pick another name for the latter"),
        ({"reference": pd.DataFrame({"tenure": [1.0], "charges": [2.0], "label": ["yes"]})},
         r"cannot write the training set: .* \(do the labels or a feature mix types"),
    ],
)
def test_bad_calls_are_refused_clearly(
    db: Database, tmp_path: Path, call: dict[str, Any], message: str
) -> None:
    log = PredictionLog(db)
    predict(log, "r1", [[1.0, 10.0]], T0 + timedelta(minutes=1))
    log.flush()
    label(db, {"r1": 1})
    arguments: dict[str, Any] = {"since": None, "until": None, "out": tmp_path / "t.parquet"}
    with pytest.raises(InvalidInput, match=message):
        build_training_set(db, "churn", **{**arguments, **call})
