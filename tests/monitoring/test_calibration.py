"""Calibrated thresholds keep false alarms at alpha at every window size and still see shifts."""

from __future__ import annotations

import doctest
from typing import Any

import numpy as np
import pytest
from datasketches import kll_doubles_sketch
from scipy import stats

from modelyard.errors import InvalidInput
from modelyard.monitoring import calibration
from modelyard.monitoring.calibration import (
    DriftResult,
    Threshold,
    calibrate,
    column_drift,
    dataset_drift,
)
from modelyard.monitoring.drift import METHODS, PSI, default_method

ALPHA = 0.01
LABELS = np.array(["a", "b", "c", "d", "e", "f", "g", "h"])
SHARES = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02])


def sketch(values: Any, k: int = 200) -> Any:
    built = kll_doubles_sketch(k)
    built.update(np.ascontiguousarray(values, dtype=np.float64))
    return built


def counts(rows: int, shares: Any, rng: np.random.Generator, labels: Any = LABELS) -> Any:
    drawn = rng.multinomial(rows, shares)
    return {str(label): float(n) for label, n in zip(labels, drawn, strict=True) if n}


def tally(labels: Any) -> dict[str, float]:
    found, n = np.unique(labels, return_counts=True)
    return {str(label): float(count) for label, count in zip(found, n, strict=True)}


def allowed_alarms(windows: int, alpha: float = ALPHA) -> int:
    """Flags a correct 1 % test exceeds only once in a thousand runs (binomial bound)."""
    return int(stats.binom.ppf(0.999, windows, alpha))


def alarms(reference: Any, windows: list[Any], threshold: Threshold) -> int:
    return sum(column_drift(reference, window, threshold).drift_detected for window in windows)


def test_docstring_examples() -> None:
    result = doctest.testmod(calibration, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


@pytest.mark.parametrize("rows", [500, 10_000])
@pytest.mark.parametrize("method", ["ks", "wasserstein", "psi", "chisquare"])
def test_false_alarms_on_numbers_stay_at_alpha(method: str, rows: int) -> None:
    """One reference, 200 windows: the rate for *this* reference, which calibration sets only on
    average over references. Three things make one reference's rate differ from alpha, and the
    test keeps each small: the 1 % quantile of n_boot scores is itself random (sd 0.7 % of rate
    at 200 scores, 0.3 % at 1,000); the reference's own sampling error is shared by every window
    (small when it has 100 x the window's rows); so is its sketch's rank error (small at k=2000).
    """
    rng = np.random.default_rng(rows)
    reference = rng.normal(size=max(200_000, 100 * rows))
    threshold = calibrate(reference, method, rows, n_boot=1_000, seed=1, reference_k=2_000)
    assert threshold.scheme == "holdout"
    windows = [sketch(window) for window in rng.normal(size=(200, rows))]
    assert alarms(sketch(reference, 2_000), windows, threshold) <= allowed_alarms(200)


@pytest.mark.parametrize("rows", [500, 10_000])
@pytest.mark.parametrize("method", ["chisquare", "jensenshannon"])
def test_false_alarms_on_categories_stay_at_alpha(method: str, rows: int) -> None:
    rng = np.random.default_rng(rows)
    reference = rng.choice(LABELS, size=200_000, p=SHARES)
    threshold = calibrate(reference, method, rows, alpha=ALPHA, n_boot=1_000, seed=1)
    ref = tally(reference)
    windows = [counts(rows, SHARES, rng) for _ in range(400)]
    assert alarms(ref, windows, threshold) <= allowed_alarms(400)


def test_windows_larger_than_the_reference_bootstrap_both_sides() -> None:
    """Each trial draws its own reference: the rate over references is what the bootstrap sets."""
    rng = np.random.default_rng(5)
    flags = 0
    for trial in range(300):
        reference = rng.choice(LABELS, size=2_000, p=SHARES)
        threshold = calibrate(reference, "chisquare", 5_000, n_boot=99, seed=trial)
        assert threshold.scheme == "bootstrap"
        ref = tally(reference)
        flags += column_drift(ref, counts(5_000, SHARES, rng), threshold).drift_detected
    assert flags <= allowed_alarms(300)


@pytest.mark.slow
def test_numbers_in_windows_larger_than_the_reference_keep_alpha_over_references() -> None:
    rng = np.random.default_rng(6)
    flags = 0
    for trial in range(200):
        reference = rng.normal(size=1_000)
        threshold = calibrate(reference, "ks", 3_000, n_boot=99, seed=trial)
        window = sketch(rng.normal(size=3_000))
        flags += column_drift(sketch(reference), window, threshold).drift_detected
    assert flags <= allowed_alarms(200)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ks", "wasserstein"])
def test_false_alarms_stay_at_alpha_for_million_row_windows(method: str) -> None:
    """whylogs #684: at 1M rows the sketches' rank error, not sampling, sets the threshold."""
    rng = np.random.default_rng(7)
    reference = rng.normal(size=100_000)
    threshold = calibrate(reference, method, 1_000_000, seed=1, reference_k=2_000)
    assert threshold.scheme == "bootstrap"
    windows = [sketch(rng.normal(size=1_000_000)) for _ in range(50)]
    assert alarms(sketch(reference, 2_000), windows, threshold) <= allowed_alarms(50)


@pytest.fixture(scope="module")
def numbers() -> Any:
    """A 400k-row reference and its thresholds per window size, calibrated once."""
    values = np.random.default_rng(8).normal(size=400_000)
    method = default_method("numerical")
    return values, {rows: calibrate(values, method, rows, seed=2) for rows in (1_000, 100_000)}


@pytest.mark.parametrize(
    ("rows", "shift", "scale"),
    [(1_000, 0.5, 1.0), (1_000, 0.0, np.sqrt(1.5)), (100_000, 0.5, 1.0),
     (100_000, 0.0, np.sqrt(1.5)), (100_000, 0.1, 1.0)],
)
def test_default_numerical_method_detects_planted_shifts(
    numbers: Any, rows: int, shift: float, scale: float
) -> None:
    values, thresholds = numbers
    rng = np.random.default_rng(rows)
    reference, threshold = sketch(values), thresholds[rows]
    windows = [sketch(rng.normal(shift, scale, size=rows)) for _ in range(10)]
    assert alarms(reference, windows, threshold) == 10


@pytest.fixture(scope="module")
def categories() -> Any:
    return np.random.default_rng(9).choice(LABELS, size=400_000, p=SHARES)


DOUBLED = np.where(LABELS == "d", 0.2, SHARES * 0.8 / 0.9)  # "d" from 10 % to 20 %
UNSEEN = np.append(SHARES * 0.95, 0.05)  # 5 % of a category the reference never saw


@pytest.mark.parametrize("rows", [1_000, 100_000])
@pytest.mark.parametrize("method", ["jensenshannon", "chisquare", "psi"])
def test_categorical_methods_detect_planted_shifts(categories: Any, method: str, rows: int) -> None:
    threshold = calibrate(categories, method, rows, seed=3)
    rng = np.random.default_rng(rows)
    ref = tally(categories)
    windows = [counts(rows, DOUBLED, rng) for _ in range(10)]
    windows += [counts(rows, UNSEEN, rng, [*LABELS, "new"]) for _ in range(10)]
    assert alarms(ref, windows, threshold) == 20


def test_threshold_shrinks_with_the_window_but_keeps_the_sketch_error() -> None:
    reference = np.random.default_rng(10).normal(size=200_000)
    small, large = (calibrate(reference, "ks", rows, n_boot=99) for rows in (500, 50_000))
    assert small.value > 3 * large.value
    sampling_only = stats.kstwo.ppf(1 - ALPHA, 50_000) * np.sqrt(1 + 50_000 / 150_000)
    assert large.value > sampling_only  # a fixed p-value test would flag too often (whylogs #684)


def test_min_effect_raises_the_threshold_only_when_larger() -> None:
    reference = np.random.default_rng(11).normal(size=50_000)
    calibrated = calibrate(reference, "wasserstein", 5_000, n_boot=99)
    floored = calibrate(reference, "wasserstein", 5_000, n_boot=99, min_effect=0.5)
    assert floored.value == 0.5 > calibrated.value
    assert floored.min_effect == 0.5
    low = calibrate(reference, PSI(bins=20), 5_000, n_boot=99, min_effect=1e-9)
    assert low.value > 1e-9
    assert low.method == PSI(bins=20)


def test_a_seed_makes_calibration_repeatable() -> None:
    reference = np.random.default_rng(12).choice(LABELS, size=20_000, p=SHARES)
    assert calibrate(reference, "chisquare", 1_000, seed=4) == calibrate(
        reference, "chisquare", 1_000, seed=4
    )
    assert calibrate(reference, "chisquare", 1_000, seed=5).seed == 5
    numbers = np.random.default_rng(12).normal(size=20_000)
    first, second = (calibrate(numbers, "ks", 1_000, seed=4) for _ in range(2))
    # KLL's coin flips cannot be seeded from Python: the same chunks, slightly different sketches.
    assert first.value == pytest.approx(second.value, rel=0.15)  # measured spread: 5 %


def test_missing_values_take_rows_but_are_not_compared() -> None:
    rng = np.random.default_rng(13)
    numbers = rng.normal(size=20_000)
    numbers[::3] = np.nan
    assert calibrate(numbers, "ks", 1_000, n_boot=99).value > 0
    labels = rng.choice(LABELS, size=20_000, p=SHARES).astype(object)
    labels[::4] = None
    assert calibrate(labels, "jensenshannon", 1_000, n_boot=99).value > 0


def test_column_and_dataset_drift() -> None:
    threshold = Threshold(0.1, ALPHA, 1_000, 200, PSI(), seed=0)
    result = column_drift({"a": 500, "b": 500}, {"a": 200, "b": 800}, threshold)
    assert (result.method, result.threshold, result.drift_detected) == ("psi", 0.1, True)
    assert result.score == pytest.approx(0.3 * np.log(0.8 / 0.2) * 1.0, rel=1e-12)
    calm = column_drift({"a": 500, "b": 500}, {"a": 490, "b": 510}, threshold)
    assert not calm.drift_detected
    assert dataset_drift([result, calm]) == (True, 0.5)
    assert dataset_drift([result, calm, calm], share=0.5) == (False, pytest.approx(1 / 3))
    assert dataset_drift([DriftResult("ks", 0.0, 0.1, False)]) == (False, 0.0)
    with pytest.raises(InvalidInput, match="at least one column"):
        dataset_drift([])
    with pytest.raises(InvalidInput, match="share must be in"):
        dataset_drift([result], share=0)


def test_sketches_smaller_than_calibrated_are_refused() -> None:
    threshold = Threshold(0.1, ALPHA, 1_000, 200, METHODS["wasserstein"](), seed=0, k=200)
    values = np.random.default_rng(14).normal(size=5_000)
    with pytest.raises(InvalidInput, match="current sketch has k=100 but the threshold"):
        column_drift(sketch(values), sketch(values, k=100), threshold)
    assert not column_drift(sketch(values, k=400), sketch(values), threshold).drift_detected


@pytest.mark.parametrize(
    ("reference", "kwargs", "message"),
    [
        (np.array([]), {}, "non-empty column"),
        (np.zeros((3, 3)), {}, "non-empty column"),
        (np.full(100, np.nan), {}, "no finite values"),
        (np.array([None, None], dtype=object), {"method": "psi"}, "no non-missing values"),
        (np.array(["a", "b"] * 50), {"method": "ks"}, "ks compares numerical columns"),
        (np.arange(100).astype("datetime64[s]"), {}, "dtype datetime64"),
        (np.arange(100.0), {"method": "energy"}, "unknown drift method 'energy'"),
        (np.arange(100.0), {"window_rows": 0}, "window_rows must be a positive integer"),
        (np.arange(100.0), {"alpha": 1.5}, "alpha must be between 0 and 1"),
        (np.arange(100.0), {"n_boot": 50}, "n_boot=50 cannot resolve alpha=0.01; use at least 99"),
        (np.arange(100.0), {"k": 4}, "k must be an integer between 8"),
        (np.arange(100.0), {"min_effect": -1.0}, "min_effect must be a non-negative"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    reference: Any, kwargs: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"method": "wasserstein", "window_rows": 10, **kwargs}
    with pytest.raises(InvalidInput, match=message):
        calibrate(reference, **arguments)
