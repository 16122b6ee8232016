"""CBPE estimates accuracy on shifted data without labels, within 2 points and inside its band,
and says when probabilities cannot be calibrated."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.errors import InvalidInput
from modelyard.monitoring.cbpe import CBPE, Estimate
from modelyard.monitoring.performance import classification_metrics

from .conftest import Scenario, shifted


def forest() -> RandomForestClassifier:
    return RandomForestClassifier(60, min_samples_leaf=5, n_jobs=1, random_state=0)


@pytest.fixture(scope="module")
def binary_shift() -> Scenario:
    x, y = make_classification(20_000, n_features=8, n_informative=4, n_redundant=0,
                               class_sep=0.7, random_state=1)
    return shifted(x, y, forest(), (8000, 5000), feature=3, strength=4)


@pytest.fixture(scope="module")
def multiclass_shift() -> Scenario:
    x, y = make_classification(20_000, n_features=8, n_informative=5, n_redundant=0,
                               n_classes=4, random_state=1)
    return shifted(x, y, forest(), (8000, 5000), feature=0, strength=-4)


@pytest.fixture(scope="module")
def digits() -> Scenario:
    x, y = load_digits(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return shifted(x, y, model, (600, 600), feature=36, strength=1.5)


def band(estimate: Estimate) -> tuple[float, float, float]:
    """The estimate's value, lower and upper bound, which a defined estimate has."""
    assert estimate.value is not None
    assert estimate.lower is not None
    assert estimate.upper is not None
    return estimate.value, estimate.lower, estimate.upper


def fitted(scenario: Scenario, **options: Any) -> CBPE:
    return CBPE(**options).fit(scenario.reference_proba, scenario.reference_labels,
                               scenario.classes)


# --- CBPE: the check from issue 5


def test_cbpe_estimates_accuracy_on_covariate_shifted_data_within_two_points(
    binary_shift: Scenario,
) -> None:
    estimate = fitted(binary_shift).estimate(binary_shift.current_proba)["accuracy"]
    value, lower, upper = band(estimate)
    truth = binary_shift.true_accuracy
    assert abs(truth - binary_shift.reference_accuracy) > 0.03  # the shift moved accuracy
    raw_guess = binary_shift.current_proba.max(axis=1).mean()
    assert abs(raw_guess - truth) > 0.04  # and the forest's own probabilities are off
    assert abs(value - truth) <= 0.02
    assert lower <= truth <= upper
    assert estimate.warnings == ()


def test_cbpe_estimates_multiclass_accuracy_on_covariate_shifted_data_within_two_points(
    multiclass_shift: Scenario,
) -> None:
    estimate = fitted(multiclass_shift).estimate(multiclass_shift.current_proba)["accuracy"]
    value, lower, upper = band(estimate)
    truth = multiclass_shift.true_accuracy
    assert abs(truth - multiclass_shift.reference_accuracy) > 0.03
    assert abs(value - truth) <= 0.02
    assert lower <= truth <= upper


@pytest.mark.parametrize("dataset", ["breast_cancer", "digits"])
def test_cbpe_bands_hold_the_true_metrics_on_small_real_datasets(
    dataset: str, request: pytest.FixtureRequest
) -> None:
    scenario: Scenario = request.getfixturevalue(dataset)
    estimates = fitted(scenario).estimate(scenario.current_proba)
    truth = classification_metrics(scenario.current_labels, proba=scenario.current_proba,
                                   classes=scenario.classes)
    for name, estimate in estimates.items():
        _, lower, upper = band(estimate)
        assert estimate.rows == len(scenario.current_labels)
        assert lower <= truth[name] <= upper, name  # type: ignore[literal-required]


def test_cbpe_band_narrows_with_the_window(binary_shift: Scenario) -> None:
    cbpe = fitted(binary_shift, metrics=("accuracy", "roc_auc"))
    small = cbpe.estimate(binary_shift.current_proba[:200])
    large = cbpe.estimate(binary_shift.current_proba)
    for name in ("accuracy", "roc_auc"):
        _, small_lower, small_upper = band(small[name])
        _, large_lower, large_upper = band(large[name])
        assert large_upper - large_lower < (small_upper - small_lower) / 2


def test_cbpe_band_covers_the_realised_accuracy_of_calibrated_windows() -> None:
    """Labels drawn from the probabilities themselves: 95 % bands hold the realised accuracy
    of at least 95 % of windows (more, as they also allow for the calibration's error)."""
    rng = np.random.default_rng(1)
    reference = rng.beta(2, 2, 5000)
    cbpe = CBPE(metrics=("accuracy",)).fit(reference, rng.random(5000) < reference, [0, 1])
    held = 0
    for _ in range(100):
        window = rng.beta(2, 2, 400)
        correct = (rng.random(400) < window) == (window > 0.5)
        _, lower, upper = band(cbpe.estimate(window)["accuracy"])
        held += lower <= correct.mean() <= upper
    assert held >= 93


def test_cbpe_uses_the_model_s_own_predictions(binary_shift: Scenario) -> None:
    """A model with a tuned threshold: the estimate follows its predictions, not the argmax."""
    proba = binary_shift.current_proba
    predicted = np.where(proba[:, 1] > 0.3, 1, 0)
    value, lower, upper = band(fitted(binary_shift).estimate(proba, y_pred=predicted)["accuracy"])
    truth = np.mean(predicted == binary_shift.current_labels)
    assert abs(value - truth) <= 0.02
    assert lower <= truth <= upper


# --- CBPE: when probabilities cannot be calibrated


def test_a_reference_with_one_class_cannot_calibrate(breast_cancer: Scenario) -> None:
    benign = breast_cancer.reference_labels == 1
    cbpe = CBPE().fit(breast_cancer.reference_proba[benign], breast_cancer.reference_labels[benign],
                      [0, 1])
    estimates = cbpe.estimate(breast_cancer.current_proba)
    assert cbpe.method_ == "none"
    expected = "probabilities cannot be calibrated: the reference holds only class 1"
    assert all(estimate.warnings == (expected,) for estimate in estimates.values())
    # It falls back to the raw probabilities.
    raw = breast_cancer.current_proba.max(axis=1).mean()
    assert estimates["accuracy"].value == pytest.approx(raw)


def test_constant_probabilities_cannot_calibrate() -> None:
    labels = np.arange(200) % 2
    cbpe = CBPE(metrics=("accuracy", "roc_auc")).fit(np.full(200, 0.7), labels, [0, 1])
    estimates = cbpe.estimate(np.full(50, 0.7))
    message = "probabilities cannot be calibrated: the model gives every reference row the same"
    assert all(e.warnings[0].startswith(message) for e in estimates.values())
    assert estimates["roc_auc"].value == pytest.approx(0.5)


def test_a_tiny_reference_cannot_calibrate() -> None:
    cbpe = CBPE().fit([0.2, 0.9, 0.4, 0.8], ["no", "yes", "no", "yes"], ["no", "yes"])
    assert cbpe.warnings_ == (
        "probabilities cannot be calibrated: the reference has 4 rows and 2 of class 'no'; "
        "calibration needs 50 rows and 5 of each class",
    )


def test_probabilities_no_monotone_map_can_fix_are_flagged() -> None:
    """The chance of class 1 rises and falls twice as the score rises: no map repairs that."""
    rng = np.random.default_rng(0)
    score = rng.uniform(size=3000)
    labels = rng.random(3000) < 0.5 + 0.45 * np.sin(4 * np.pi * score)
    cbpe = CBPE().fit(score, labels, [False, True])
    (warning,) = cbpe.estimate(score[:100])["accuracy"].warnings
    assert warning.startswith("probabilities cannot be calibrated: on held-out reference rows")


def test_an_undefined_estimate_says_why() -> None:
    rng = np.random.default_rng(0)
    score = rng.uniform(size=1000)
    cbpe = CBPE(metrics=("precision", "recall")).fit(score, rng.random(1000) < score, [0, 1])
    estimates = cbpe.estimate(np.full(20, 0.1))  # no row predicted positive
    assert estimates["precision"].value is None
    assert estimates["precision"].warnings == (
        "precision is undefined on this window: no row is predicted as the positive class",
    )
    assert estimates["recall"].value == 0.0


# --- CBPE: input, determinism and storage


def test_cbpe_refuses_bad_input_clearly(breast_cancer: Scenario) -> None:
    proba, labels = breast_cancer.reference_proba, breast_cancer.reference_labels
    with pytest.raises(InvalidInput, match="reference_proba has 150 rows but the labels have 149"):
        CBPE().fit(proba, labels[:-1], [0, 1])
    with pytest.raises(InvalidInput, match=r"reference_labels holds labels .* \[0, 1\]: 7"):
        CBPE().fit(proba[:2], [0, 7], [0, 1])
    with pytest.raises(InvalidInput, match="metrics must be among accuracy"):
        CBPE(metrics=("accuracy", "mape")).fit(proba, labels, [0, 1])
    with pytest.raises(InvalidInput, match="calibration must be one of auto, isotonic"):
        CBPE(calibration="beta").fit(proba, labels, [0, 1])
    with pytest.raises(InvalidInput, match="confidence must be between 0 and 1, not 95"):
        CBPE(confidence=95).fit(proba, labels, [0, 1])
    with pytest.raises(InvalidInput, match="this CBPE is not fitted"):
        CBPE().estimate(proba)
    cbpe = CBPE().fit(proba, labels, [0, 1])
    with pytest.raises(InvalidInput, match=r"one column per class \(2\)"):
        cbpe.estimate(np.full((3, 3), 1 / 3))
    with pytest.raises(InvalidInput, match="current_proba rows must sum to 1; row 0 sums to 1.3"):
        cbpe.estimate([[0.5, 0.8]])
    with pytest.raises(InvalidInput, match="current_proba holds NaN"):
        cbpe.estimate([np.nan, 0.3])
    with pytest.raises(InvalidInput, match="y_pred has 1 rows but current_proba 2"):
        cbpe.estimate([0.1, 0.3], y_pred=[0])


def test_cbpe_is_deterministic_given_a_seed(digits: Scenario) -> None:
    first = fitted(digits, seed=3).estimate(digits.current_proba)
    assert fitted(digits, seed=3).estimate(digits.current_proba) == first


def test_cbpe_round_trips_through_json(multiclass_shift: Scenario) -> None:
    cbpe = fitted(multiclass_shift, calibration="isotonic")
    stored = json.loads(json.dumps(cbpe.to_dict()))
    restored = CBPE.from_dict(stored)
    assert restored.method_ == "isotonic"
    window = multiclass_shift.current_proba[:500]
    assert restored.estimate(window) == cbpe.estimate(window)
    with pytest.raises(InvalidInput, match="not a serialised CBPE: missing or wrong 'metrics'"):
        CBPE.from_dict({"format": 1})
    with pytest.raises(InvalidInput, match="not a serialised CBPE: malformed calibration maps"):
        CBPE.from_dict(stored | {"maps": stored["maps"][:3]})


def test_estimates_serialise_to_json(breast_cancer: Scenario) -> None:
    estimate = fitted(breast_cancer).estimate(breast_cancer.current_proba)["f1"]
    assert isinstance(estimate, Estimate)
    data = json.loads(json.dumps(estimate.to_dict()))
    assert data["metric"] == "f1"
    assert data["lower"] <= data["value"] <= data["upper"]
    assert data["confidence"] == 0.95
