"""The retraining tests' world: a champion ``churn`` trained where x0 + x1 > 0 decides the
label, labelled traffic from a world where x0 - x1 > 0 does, and training entry points that
succeed, train badly, crash or hang (``trainer.py`` in a work folder)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import modelyard
from modelyard.api.workspace import open_registry
from modelyard.live.feedback import FeedbackStore
from modelyard.live.predlog import PredictionLog
from modelyard.live.records import PredictionRecord
from modelyard.settings import Settings

FEATURES = ["x0", "x1"]

TRAINER = textwrap.dedent('''
    import time

    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression


    def train(data, output_dir, C=1.0):
        X = data.drop(columns=["label", "source"])
        return LogisticRegression(C=C).fit(X, data["label"])


    def constant(data, output_dir):
        X = data.drop(columns=["label", "source"])
        return DummyClassifier(strategy="constant", constant=0).fit(X, data["label"])


    def crash(data, output_dir):
        raise RuntimeError("the feature store is unreachable")


    def slow(data, output_dir):
        time.sleep(60)
''')


def concept(X: np.ndarray, new: bool) -> np.ndarray:
    """The old world labels x0 + x1 > 0; the new one x0 - x1 > 0."""
    return ((X[:, 0] - X[:, 1] if new else X[:, 0] + X[:, 1]) > 0).astype(int)


def serve_churn(settings: Settings) -> Settings:
    """Registers ``churn:1``, trained on the old world, as champion, and logs 600 predictions
    from the new one with their labels."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(800, 2))
    y = pd.Series(concept(X, new=False), name="label")
    reference = pd.DataFrame(X, columns=FEATURES)
    model = LogisticRegression().fit(reference, y)
    modelyard.register(model, "churn", reference=reference, labels=y, alias="champion",
                       settings=settings)
    log = PredictionLog(open_registry(settings).db)
    live = rng.normal(size=(600, 2))
    start = datetime.now(UTC) - timedelta(hours=2)
    answers = model.predict(pd.DataFrame(live, columns=FEATURES))
    for i, row in enumerate(live):
        log.submit(PredictionRecord(
            f"r{i}", "churn", 1, row[None, :], {"predict": answers[i:i + 1]},
            latency_ms=2.0, at=(start + timedelta(seconds=5 * i)).timestamp(),
            columns=FEATURES, classes=[0, 1]))
    log.flush()
    labels = concept(live, new=True)
    FeedbackStore(open_registry(settings).db).ingest(
        [{"id": f"r{i}", "label": int(value)} for i, value in enumerate(labels)])
    return settings
