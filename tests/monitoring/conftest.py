"""Helpers shared by the monitoring tests: a mixed table for the quality rules and skew, and
models scored on covariate-shifted windows (the ``breast_cancer`` fixture among them) for the
performance metrics and CBPE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.monitoring.quality import Finding


def table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.normal(0.0, 1.0, rows)
    score[rng.random(rows) < 0.02] = np.nan
    plan = rng.choice(np.array(["free", "pro", "team"], dtype=object), rows, p=[0.6, 0.3, 0.1])
    plan[rng.random(rows) < 0.01] = None
    return pd.DataFrame({
        "age": np.clip(rng.normal(40, 12, rows).round(), 18, 95).astype(np.int64),
        "income": rng.lognormal(10.0, 0.6, rows),
        "score": score,
        "plan": plan,
        "active": rng.random(rows) < 0.3,
        "visits": rng.poisson(3.0, rows),
    })


def only(findings: list[Finding], rule: str) -> Finding:
    """The one finding, checked to be of ``rule``."""
    assert [(f.rule, f.column) for f in findings] == [(rule, findings[0].column)], findings
    return findings[0]


def halves(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    half = len(frame) // 2
    return frame.iloc[order[:half]], frame.iloc[order[half:]]


@dataclass(frozen=True)
class Scenario:
    """A model, a labelled reference it was not trained on, and a covariate-shifted window."""

    classes: Any
    reference_proba: Any
    reference_labels: Any
    reference_accuracy: float
    current_proba: Any
    current_labels: Any

    @property
    def true_accuracy(self) -> float:
        predicted = np.asarray(self.classes)[self.current_proba.argmax(axis=1)]
        return float(np.mean(predicted == self.current_labels))


def shifted(
    x: Any, y: Any, model: Any, sizes: tuple[int, int], feature: int, strength: float
) -> Scenario:
    """Train on the first rows, calibrate on the next, and keep each remaining row with a
    probability that rises with one feature: P(x) shifts, P(y | x) does not."""
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train, reference = order[: sizes[0]], order[sizes[0] : sizes[0] + sizes[1]]
    pool = order[sizes[0] + sizes[1] :]
    model.fit(x[train], y[train])
    z = (x[pool, feature] - x[pool, feature].mean()) / x[pool, feature].std()
    current = pool[rng.random(pool.size) < 1 / (1 + np.exp(-strength * z))]
    reference_proba = model.predict_proba(x[reference])
    return Scenario(
        classes=model.classes_,
        reference_proba=reference_proba,
        reference_labels=y[reference],
        reference_accuracy=float(np.mean(model.predict(x[reference]) == y[reference])),
        current_proba=model.predict_proba(x[current]),
        current_labels=y[current],
    )


@pytest.fixture(scope="module")
def breast_cancer() -> Scenario:
    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression())
    return shifted(x, y, model, (250, 150), feature=0, strength=1.5)
