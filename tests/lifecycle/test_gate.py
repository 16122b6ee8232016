"""The evaluation gate: a better candidate passes, a worse one fails naming the metric, too
little data fails, lower-is-better metrics count the right way, bad settings are refused."""

from __future__ import annotations

import doctest
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from modelyard.errors import InvalidInput
from modelyard.lifecycle import gate
from modelyard.lifecycle.gate import GateConfig, evaluate_gate, load_gate

Split = tuple[pd.DataFrame, pd.Series, pd.DataFrame]


@pytest.fixture(scope="module")
def cancer_split(cancer: tuple[pd.DataFrame, pd.Series]) -> Split:
    """Training features and labels, and a labelled holdout of 250 rows (label: ``y``)."""
    X, y = cancer
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=250, random_state=0, stratify=y)
    return X_train, y_train, X_test.assign(y=y_test.to_numpy())


@pytest.fixture(scope="module")
def strong(cancer_split: Split) -> Any:
    X, y, _ = cancer_split
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)


@pytest.fixture(scope="module")
def stump(cancer_split: Split) -> Any:
    X, y, _ = cancer_split
    return DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y)


def test_a_better_candidate_passes(cancer_split: Split, strong: Any, stump: Any) -> None:
    _, _, holdout = cancer_split
    result = evaluate_gate(strong.predict, stump.predict, holdout, "y",
                           GateConfig(metrics=("accuracy", "f1")), "classification")

    assert result.passed
    assert result.rows == 250
    accuracy = result.metrics["accuracy"]
    assert accuracy.candidate is not None
    assert accuracy.champion is not None
    assert accuracy.candidate > accuracy.champion
    assert accuracy.delta == pytest.approx(accuracy.candidate - accuracy.champion)
    assert accuracy.higher_is_better
    assert accuracy.ok
    assert result.reasons[0] == (
        f"accuracy {accuracy.candidate:.3f} vs champion {accuracy.champion:.3f}: "
        f"+{accuracy.delta:.3f} ≥ required +0.000")
    assert result.reasons[1].startswith("f1 ")
    assert result.reasons[1].endswith("(a regression of at most 0.010 is allowed)")
    audit = json.loads(json.dumps(result.to_dict()))
    assert audit["passed"] is True
    assert audit["metrics"]["accuracy"]["ok"] is True
    assert set(audit["metrics"]["f1"]) >= {"candidate", "champion", "delta", "higher_is_better",
                                           "ok"}
    assert audit["config"] == {"metrics": ["accuracy", "f1"], "min_improvement": 0.0,
                               "max_regression": 0.01, "min_rows": 200}


def test_a_worse_candidate_fails_naming_what_got_worse(
    cancer_split: Split, strong: Any
) -> None:
    X, y, holdout = cancer_split
    constant = DummyClassifier(strategy="most_frequent").fit(X, y)
    result = evaluate_gate(constant.predict, strong.predict, holdout, "y",
                           GateConfig(metrics=("accuracy", "f1")), "classification")

    assert not result.passed
    assert [m.ok for m in result.metrics.values()] == [False, False]
    assert "< required +0.000" in result.reasons[0]
    assert result.reasons[1].startswith("f1 ")
    assert result.reasons[1].endswith("worse by more than the allowed 0.010")


def test_a_better_primary_metric_does_not_excuse_a_regression_elsewhere(
    cancer_split: Split, strong: Any
) -> None:
    X, y, holdout = cancer_split
    # Predicting the positive class everywhere finds every positive (recall 1.0) at the
    # cost of precision.
    everything = DummyClassifier(strategy="constant", constant=1).fit(X, y)
    result = evaluate_gate(everything.predict, strong.predict, holdout, "y",
                           GateConfig(metrics=("recall", "precision")), "classification")
    assert not result.passed
    assert result.metrics["recall"].ok
    assert result.metrics["recall"].candidate == 1.0
    assert not result.metrics["precision"].ok
    assert "worse by more than the allowed 0.010" in result.reasons[1]


def test_labels_shuffled_in_training_make_a_failing_candidate(cancer_split: Split,
                                                              strong: Any) -> None:
    X, y, holdout = cancer_split
    shuffled = y.sample(frac=1.0, random_state=1).to_numpy()
    confused = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, shuffled)
    result = evaluate_gate(confused.predict, strong.predict, holdout, "y", GateConfig(),
                           "classification")
    assert not result.passed
    assert list(result.metrics) == ["accuracy", "f1"]  # the classification defaults


def test_the_same_model_passes_only_without_a_required_improvement(
    cancer_split: Split, strong: Any
) -> None:
    _, _, holdout = cancer_split
    even = evaluate_gate(strong.predict, strong.predict, holdout, "y", GateConfig(),
                         "classification")
    assert even.passed
    assert even.reasons[0].endswith(": +0.000 ≥ required +0.000")
    strict = evaluate_gate(strong.predict, strong.predict, holdout, "y",
                           GateConfig(min_improvement=0.01), "classification")
    assert not strict.passed
    assert strict.reasons[0].endswith(": +0.000 < required +0.010")


def test_too_few_labelled_rows_fail_the_gate(cancer_split: Split, strong: Any,
                                            stump: Any) -> None:
    _, _, holdout = cancer_split
    few = holdout.head(150).copy()
    few.loc[few.index[:30], "y"] = np.nan  # unlabelled rows do not count
    result = evaluate_gate(strong.predict, stump.predict, few, "y", GateConfig(),
                           "classification")
    assert not result.passed
    assert result.rows == 120
    assert result.reasons == ["only 120 labelled rows; the gate needs 200"]
    assert result.metrics == {}


def test_unlabelled_rows_are_left_out(cancer_split: Split, strong: Any, stump: Any) -> None:
    _, _, holdout = cancer_split
    partly = holdout.copy()
    partly["y"] = partly["y"].astype(object)
    partly.loc[partly.index[:50], "y"] = None
    result = evaluate_gate(strong.predict, stump.predict, partly, "y", GateConfig(),
                           "classification")
    assert result.rows == 200
    assert result.passed


def test_probability_metrics_use_the_proba_functions(
    cancer_split: Split, strong: Any, stump: Any
) -> None:
    _, _, holdout = cancer_split
    result = evaluate_gate(strong.predict, stump.predict, holdout, "y",
                           GateConfig(metrics=("roc_auc", "log_loss")), "classification",
                           candidate_proba=strong.predict_proba,
                           champion_proba=stump.predict_proba, classes=[0, 1])
    assert result.passed
    loss = result.metrics["log_loss"]
    assert not loss.higher_is_better
    assert loss.candidate is not None
    assert loss.champion is not None
    assert loss.candidate < loss.champion
    assert "(lower is better)" in result.reasons[1]
    with pytest.raises(InvalidInput, match="roc_auc need class probabilities"):
        evaluate_gate(strong.predict, stump.predict, holdout, "y",
                      GateConfig(metrics=("roc_auc",)), "classification")


@pytest.fixture(scope="module")
def diabetes_split() -> Split:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=142, random_state=0)
    return X_train, y_train, X_test.assign(progression=y_test.to_numpy())


def test_rmse_counts_lower_as_better(diabetes_split: Split) -> None:
    X, y, holdout = diabetes_split
    ridge = Ridge(alpha=0.1).fit(X, y)
    mean = DummyRegressor().fit(X, y)
    config = GateConfig(metrics=("rmse",), min_rows=100)

    better = evaluate_gate(ridge.predict, mean.predict, holdout, "progression", config,
                           "regression")
    rmse = better.metrics["rmse"]
    assert better.passed
    assert rmse.candidate is not None
    assert rmse.champion is not None
    assert rmse.candidate < rmse.champion
    assert rmse.delta is not None
    assert rmse.delta < 0
    assert rmse.improvement == -rmse.delta
    assert better.reasons[0] == (
        f"rmse {rmse.candidate:.3f} vs champion {rmse.champion:.3f} (lower is better): "
        f"+{-rmse.delta:.3f} ≥ required +0.000")

    worse = evaluate_gate(mean.predict, ridge.predict, holdout, "progression", config,
                          "regression")
    assert not worse.passed
    assert f"-{-rmse.delta:.3f} < required" in worse.reasons[0]
    defaults = evaluate_gate(ridge.predict, mean.predict, holdout, "progression",
                             GateConfig(min_rows=100), "regression")
    assert list(defaults.metrics) == ["rmse", "mae"]


def test_a_model_that_raises_fails_the_gate_with_its_error(cancer_split: Split,
                                                          strong: Any) -> None:
    _, _, holdout = cancer_split

    def broken(frame: pd.DataFrame) -> Any:
        raise ValueError("X has 29 features, but the model expects 30")

    result = evaluate_gate(broken, strong.predict, holdout, "y", GateConfig(), "classification")
    assert not result.passed
    assert result.reasons == [
        "the candidate failed on the holdout: X has 29 features, but the model expects 30"]
    short = evaluate_gate(lambda frame: strong.predict(frame)[:10], strong.predict, holdout,
                          "y", GateConfig(), "classification")
    assert short.reasons == ["the candidate gave 10 predictions for 250 rows"]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"metrics": ["acuracy"]}, "unknown gate metric 'acuracy'; known: accuracy, precision"),
        ({"metrics": ["accuracy", "rmse"]}, "mix classification and regression metrics"),
        ({"metrics": ["f1", "f1"]}, "name a metric twice"),
        ({"metrics": 3}, "gate metrics must be a list of metric names"),
        ({"min_rows": 0}, "min_rows must be a whole number of 1 or more, not 0"),
        ({"min_rows": 10.5}, "min_rows must be a whole number"),
        ({"max_regression": -0.1}, "max_regression must be a number of 0 or more"),
        ({"min_improvement": "a lot"}, "min_improvement must be a number, not 'a lot'"),
        ({"min_improvement": float("nan")}, "min_improvement must be a number"),
        ({"min_rowz": 10}, "unknown gate setting 'min_rowz'; known: metrics, min_improvement"),
        (["accuracy"], "the gate settings must be a table of names to values, not list"),
    ],
)
def test_bad_gate_settings_are_refused_clearly(mapping: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_gate(mapping)


def test_settings_load_with_defaults_and_metrics_must_fit_the_task(cancer_split: Split,
                                                                  strong: Any) -> None:
    assert load_gate(None) == GateConfig()
    config = load_gate({"metrics": ["rmse"], "min_improvement": 1, "min_rows": 50})
    assert config == GateConfig(metrics=("rmse",), min_improvement=1.0, min_rows=50)
    _, _, holdout = cancer_split
    with pytest.raises(InvalidInput, match="gate metric\\(s\\) rmse do not apply to "
                       "classification; use accuracy, precision"):
        evaluate_gate(strong.predict, strong.predict, holdout, "y", config, "classification")
    with pytest.raises(InvalidInput, match="not task 'other'"):
        evaluate_gate(strong.predict, strong.predict, holdout, "y", GateConfig(), "other")
    with pytest.raises(InvalidInput, match="task 'ranking' is unknown"):
        evaluate_gate(strong.predict, strong.predict, holdout, "y", GateConfig(), "ranking")
    with pytest.raises(InvalidInput, match="the holdout has no labels column 'label'"):
        evaluate_gate(strong.predict, strong.predict, holdout, "label", GateConfig(),
                      "classification")


def test_docstring_examples() -> None:
    result = doctest.testmod(gate, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
