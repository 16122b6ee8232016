"""Label-based metrics agree with scikit-learn and say why a value is missing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.errors import InvalidInput
from modelyard.monitoring.performance import classification_metrics, regression_metrics

from .conftest import Scenario


def test_binary_metrics_agree_with_scikit_learn_on_breast_cancer(breast_cancer: Scenario) -> None:
    names = np.array(["malignant", "benign"])  # benign is classes[1], the positive class
    truth = names[breast_cancer.current_labels]
    proba = breast_cancer.current_proba
    predicted = names[proba.argmax(axis=1)]
    found = classification_metrics(truth, proba=proba, classes=names)
    positive = {"pos_label": "benign"}
    assert found["rows"] == truth.size
    assert found["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted))
    assert found["precision"] == pytest.approx(skm.precision_score(truth, predicted, **positive))
    assert found["recall"] == pytest.approx(skm.recall_score(truth, predicted, **positive))
    assert found["f1"] == pytest.approx(skm.f1_score(truth, predicted, **positive))
    assert found["roc_auc"] == pytest.approx(skm.roc_auc_score(truth == "benign", proba[:, 1]))
    assert found["log_loss"] == pytest.approx(skm.log_loss(truth == "benign", proba[:, 1]))
    assert found["notes"] == {}
    # A binary model's 1-D probability of classes[1] and explicit predictions say the same.
    assert classification_metrics(truth, predicted, proba[:, 1], names) == found


@pytest.mark.parametrize("average", ["macro", "weighted", "micro"])
def test_multiclass_metrics_agree_with_scikit_learn_on_wine(average: str) -> None:
    x, y = load_wine(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x[::2], y[::2])
    truth, proba, predicted = y[1::2], model.predict_proba(x[1::2]), model.predict(x[1::2])
    found = classification_metrics(truth, proba=proba, average=average)
    assert found["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted))
    for name, score in (("precision", skm.precision_score), ("recall", skm.recall_score),
                        ("f1", skm.f1_score)):
        assert found[name] == pytest.approx(score(truth, predicted, average=average))  # type: ignore[literal-required]
    expected_auc = skm.roc_auc_score(truth, proba, multi_class="ovr", average=average)
    assert found["roc_auc"] == pytest.approx(expected_auc)
    assert found["log_loss"] == pytest.approx(skm.log_loss(truth, proba))


def test_metrics_say_why_a_value_is_missing() -> None:
    one_class = classification_metrics([1, 1, 1], proba=[[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]],
                                       classes=[0, 1])
    assert one_class["roc_auc"] is None
    assert one_class["notes"]["roc_auc"] == "y_true holds only class 1"
    assert one_class["log_loss"] == pytest.approx(skm.log_loss([1, 1, 1], [0.8, 0.4, 0.9],
                                                               labels=[0, 1]))
    never_positive = classification_metrics(["a", "b"], ["a", "a"], classes=["a", "b"])
    assert never_positive["precision"] is None
    assert never_positive["notes"]["precision"] == "no row is predicted as class 'b'"
    assert never_positive["recall"] == 0.0
    assert never_positive["notes"]["roc_auc"] == "needs proba"
    # A small window without class 2: ROC AUC averages over the classes it has.
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.3, 0.4, 0.3]])
    partial = classification_metrics([0, 1, 0, 1], proba=proba, classes=[0, 1, 2])
    assert partial["roc_auc"] == pytest.approx(1.0)
    assert partial["notes"]["roc_auc"] == "averaged over the 2 of 3 classes in y_true"


def test_regression_metrics_agree_with_scikit_learn_on_diabetes() -> None:
    x, y = load_diabetes(return_X_y=True)
    predicted = Ridge().fit(x[::2], y[::2]).predict(x[1::2])
    found = regression_metrics(y[1::2], predicted)
    assert found["rows"] == y[1::2].size
    assert found["mae"] == pytest.approx(skm.mean_absolute_error(y[1::2], predicted))
    assert found["rmse"] == pytest.approx(skm.root_mean_squared_error(y[1::2], predicted))
    assert found["r2"] == pytest.approx(skm.r2_score(y[1::2], predicted))
    constant = regression_metrics([3.0, 3.0], [2.0, 4.0])
    assert constant["r2"] is None
    assert constant["notes"] == {"r2": "y_true must have at least two distinct values"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (([0, 1, 1], [0, 1]), "y_pred has 2 rows but y_true has 3"),
        (([0, 1], None, [[0.5, 0.4], [0.5, 0.5]]), "proba rows must sum to 1; row 0 sums to 0.9"),
        (([0, 1], None, [[0.2, 0.3, 0.5]] * 2, [0, 1]), r"one column per class \(2\)"),
        (([0, 1], None, [[0.2, 0.8]] * 3), "proba has 3 rows but the labels have 2"),
        (([0, 1], None, [[np.nan, 1.0]] * 2), "proba holds NaN"),
        (([0, 2], [0, 1], None, [0, 1]), r"y_true holds labels that are not among the classes "
                                          r"\[0, 1\]: 2"),
        (([0.0, np.nan], [0, 1]), r"y_true holds missing values \(NaN\)"),
        (([0, 1],), "need y_pred, proba or both"),
        (([0, 1], [0, 1], None, None, "binary-ish"), "average must be one of"),
        (([0, 1, 2], None, [[0.5, 0.5]] * 3), "proba has 2 columns but the labels hold 3"),
        (([1, 1], [1, 1]), r"the labels hold one class only \(1\); pass classes \(the model's"),
    ],
)
def test_bad_classification_input_is_refused_clearly(arguments: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        classification_metrics(*arguments)


def test_bad_regression_input_is_refused_clearly() -> None:
    with pytest.raises(InvalidInput, match="y_pred has 1 rows but y_true has 2"):
        regression_metrics([1.0, 2.0], [1.0])
    with pytest.raises(InvalidInput, match=r"y_pred holds missing values \(NaN\)"):
        regression_metrics([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(InvalidInput, match="y_true must hold numbers"):
        regression_metrics(["a", "b"], [1.0, 2.0])
