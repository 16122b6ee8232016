"""Multivariate drift: false alarms stay at alpha, changes no single column shows are caught, and
the columns that carry a change come first."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from modelyard.errors import InvalidInput
from modelyard.monitoring.multivariate import (
    MultivariateResult,
    PCAReconstruction,
    domain_classifier,
    pca_reconstruction,
)

NAMES = [f"x{i}" for i in range(10)]


def gaussian(rows: int, rng: np.random.Generator, rho: float = 0.0, width: int = 10) -> Any:
    """Standard normal columns; x0 and x1 correlated ``rho``, every marginal N(0, 1)."""
    values = rng.normal(size=(rows, width))
    values[:, 1] = rho * values[:, 0] + np.sqrt(1 - rho**2) * values[:, 1]
    return pd.DataFrame(values, columns=NAMES[:width])


def mixed(rows: int, rng: np.random.Generator, missing: float = 0.1) -> Any:
    """Numbers with missing values, a correlated pair and a categorical column."""
    table = gaussian(rows, rng, rho=0.8, width=4)
    table.loc[rng.random(rows) < missing, "x2"] = np.nan
    table["city"] = rng.choice(["lyon", "oslo", "kyiv", "lima"], rows, p=[0.5, 0.3, 0.15, 0.05])
    return table


def allowed_alarms(draws: int, alpha: float) -> int:
    """Flags a correct alpha-level test exceeds only once in a thousand runs."""
    return int(stats.binom.ppf(0.999, draws, alpha))


def top(result: MultivariateResult, count: int) -> set[str]:
    return set(list(result.contributions)[:count])


@pytest.mark.slow
def test_domain_classifier_false_alarms_stay_at_alpha_at_every_size() -> None:
    rng = np.random.default_rng(1)
    flags, thresholds = 0, {}
    for draw in range(60):
        rows = (500, 1000, 2000)[draw % 3]
        result = domain_classifier(mixed(rows, rng), mixed(rows, rng), alpha=0.05, seed=draw)
        flags += result.drift_detected
        thresholds[rows] = result.threshold
    assert flags <= allowed_alarms(60, 0.05)
    assert thresholds[500] > thresholds[1000] > thresholds[2000] > 0.5


@pytest.mark.slow
def test_pca_false_alarms_stay_at_alpha_over_references() -> None:
    rng = np.random.default_rng(2)
    flags = 0
    for draw in range(60):
        rows = (500, 1000, 2000)[draw % 3]
        reference, current = mixed(2000, rng), mixed(rows, rng)
        flags += pca_reconstruction(reference, current, alpha=0.05, seed=draw).drift_detected
    assert flags <= allowed_alarms(60, 0.05)


def test_pca_fit_once_keeps_alpha_on_many_windows_of_any_size() -> None:
    """Live monitoring: one reference, windows of 50 to 5,000 rows, each size its own threshold."""
    rng = np.random.default_rng(3)
    detector = PCAReconstruction(alpha=0.05, seed=1).fit(mixed(20_000, rng))
    flags, thresholds = 0, {}
    for draw in range(120):
        rows = (50, 500, 5000)[draw % 3]
        result = detector.score(mixed(rows, rng))
        flags += result.drift_detected
        thresholds[rows] = result.threshold
    assert flags <= allowed_alarms(120, 0.05)
    assert thresholds[50] > thresholds[500] > thresholds[5000]


@pytest.fixture(scope="module")
def decorrelated() -> tuple[Any, Any]:
    """x0 and x1 correlated 0.9 in the reference; now each holds the same values, shuffled."""
    rng = np.random.default_rng(4)
    reference, current = gaussian(2000, rng, rho=0.9), gaussian(2000, rng)
    for name in ("x0", "x1"):
        current[name] = rng.permutation(reference[name].to_numpy())
    return reference, current


def test_a_correlation_change_leaves_both_columns_alone(decorrelated: tuple[Any, Any]) -> None:
    reference, current = decorrelated
    for name in ("x0", "x1"):
        assert stats.ks_2samp(reference[name], current[name]).statistic == 0
    assert reference["x0"].corr(reference["x1"]) > 0.85
    assert abs(current["x0"].corr(current["x1"])) < 0.05


@pytest.mark.parametrize("method", [domain_classifier, pca_reconstruction])
def test_both_methods_see_a_correlation_change_and_name_its_columns(
    method: Any, decorrelated: tuple[Any, Any]
) -> None:
    result = method(*decorrelated)
    assert result.drift_detected
    assert top(result, 2) == {"x0", "x1"}
    assert sum(result.contributions.values()) == pytest.approx(1.0)


def test_domain_classifier_finds_the_one_shifted_column_of_ten() -> None:
    rng = np.random.default_rng(5)
    reference, current = gaussian(1000, rng), gaussian(1000, rng)
    current["x7"] += 0.5
    result = domain_classifier(reference, current)
    assert result.drift_detected
    assert next(iter(result.contributions)) == "x7"
    assert list(result.contributions.values()) == sorted(result.contributions.values())[::-1]


def test_no_change_is_no_drift_with_categories_and_missing_values() -> None:
    rng = np.random.default_rng(6)
    reference, current = mixed(2000, rng), mixed(1000, rng)
    assert not domain_classifier(reference, current).drift_detected
    assert not pca_reconstruction(reference, current).drift_detected


def test_domain_classifier_sees_more_missing_values_and_a_new_category() -> None:
    rng = np.random.default_rng(7)
    reference = mixed(2000, rng)
    more_missing = domain_classifier(reference, mixed(1000, rng, missing=0.4))
    assert more_missing.drift_detected
    assert next(iter(more_missing.contributions)) == "x2"
    current = mixed(1000, rng)
    current.loc[current.index[:150], "city"] = "rome"
    new_city = domain_classifier(reference, current)
    assert new_city.drift_detected
    assert next(iter(new_city.contributions)) == "city"


def test_a_feed_that_stops_is_drift_not_an_error() -> None:
    rng = np.random.default_rng(8)
    reference, current = mixed(1000, rng), mixed(1000, rng)
    current["x3"] = np.nan
    result = domain_classifier(reference, current)
    assert result.drift_detected
    assert next(iter(result.contributions)) == "x3"


def test_pca_sees_a_broken_correlation_next_to_categories_and_missing_values() -> None:
    rng = np.random.default_rng(9)
    reference, current = mixed(3000, rng), mixed(1000, rng)
    current["x1"] = rng.normal(size=len(current))
    result = pca_reconstruction(reference, current)
    assert result.drift_detected
    assert top(result, 2) == {"x0", "x1"}


def test_a_seed_gives_the_same_result_every_time() -> None:
    rng = np.random.default_rng(10)
    reference, current = mixed(3000, rng), mixed(3000, rng)
    for method in (domain_classifier, pca_reconstruction):
        first = method(reference, current, max_rows=1000, seed=3)
        assert method(reference, current, max_rows=1000, seed=3) == first
        assert method(reference, current, max_rows=1000, seed=4).score != first.score
    detector = PCAReconstruction(seed=3).fit(reference)
    assert detector.score(current) == detector.score(current)


def test_sampling_bounds_the_rows_used_and_says_how_many() -> None:
    rng = np.random.default_rng(11)
    reference, current, small = mixed(30_000, rng), mixed(25_000, rng), mixed(300, rng)
    assert domain_classifier(reference, current, max_rows=2000).rows == (2000, 2000)
    assert domain_classifier(reference, small, max_rows=2000).rows == (2000, 300)
    detector = PCAReconstruction(max_rows=2000).fit(reference)
    assert detector.score(current).rows == (2000, 2000)
    assert detector.score(small).rows == (2000, 300)


def test_results_serialise_to_json() -> None:
    rng = np.random.default_rng(12)
    result = pca_reconstruction(mixed(500, rng), mixed(200, rng))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["method"] == "pca_reconstruction"
    assert data["rows"] == [500, 200]
    assert data["drift_detected"] is result.drift_detected
    assert list(data["contributions"]) == list(result.contributions)


def test_only_common_columns_are_compared() -> None:
    rng = np.random.default_rng(13)
    reference, current = gaussian(500, rng, width=4), gaussian(500, rng, width=3)
    current["extra"] = 1.0
    for method in (domain_classifier, pca_reconstruction):
        assert set(method(reference, current).contributions) == {"x0", "x1", "x2"}


def frames(rows: int = 100, **columns: Any) -> tuple[Any, Any]:
    rng = np.random.default_rng(14)
    return mixed(rows, rng).assign(**columns), mixed(rows, rng)


@pytest.mark.parametrize(
    ("reference", "current", "options", "message"),
    [
        (*frames(), {"alpha": 1.5}, "alpha must be between 0 and 1, not 1.5"),
        (*frames(), {"folds": 1}, "folds must be an integer from 2 to 100"),
        (frames()[0].to_numpy(), frames()[1], {}, "reference must be a pandas DataFrame"),
        (frames()[0], frames()[1].iloc[:0], {}, "the current data has no rows"),
        (pd.DataFrame(index=range(5)), frames()[1], {}, "the reference has no columns"),
        (frames()[0].add_prefix("ref_"), frames()[1], {}, "no column in common"),
        (*frames(x3=np.nan), {}, "column 'x3' has no values in the reference; drop it"),
        (*frames(x3=np.inf), {}, "column 'x3' has no values in the reference"),
        (frames()[0], frames()[1].iloc[:7], {}, "at least 10 rows a side .2 × folds.; the "
         "current data has 7"),
        (frames()[0], frames()[1].assign(x0="n/a"), {}, "column 'x0' is numerical in the "
         "reference, but in the current data 'n/a' is not a number"),
    ],
)
def test_domain_classifier_refuses_bad_input_in_one_clear_line(
    reference: Any, current: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as raised:
        domain_classifier(reference, current, **options)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("reference", "current", "options", "message"),
    [
        (*frames(), {"variance": 1.0}, "variance must be between 0 and 1, not 1.0"),
        (*frames(), {"alpha": 0.01, "n_boot": 50}, "n_boot=50 cannot resolve alpha=0.01; use "
         "at least 99"),
        (*frames(rows=15), {}, "needs at least 20 reference rows for 5 columns .* has 15"),
        (frames()[0][["x0"]], frames()[1], {}, "needs at least 2 columns"),
        (*frames(x2=None), {}, "column 'x2' has no values in the reference"),
        (frames()[0], frames()[1].iloc[:0], {}, "the current data has no rows"),
        (frames()[0][["city"]], frames()[1][["x0"]], {}, "no column in common .reference: "
         "city; current: x0."),
    ],
)
def test_pca_refuses_bad_input_in_one_clear_line(
    reference: Any, current: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        pca_reconstruction(reference, current, **options)


def test_pca_scores_only_after_fit_and_only_with_the_fitted_columns() -> None:
    reference, current = frames()
    with pytest.raises(InvalidInput, match=r"fit the PCA on a reference before scoring"):
        PCAReconstruction().score(current)
    detector = PCAReconstruction().fit(reference)
    with pytest.raises(InvalidInput, match=r"lacks 1 column\(s\) the PCA was fit on: city"):
        detector.score(current.drop(columns="city"))
