"""The always-valid A/B test: peeking does not inflate false positives, and real gaps are found."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import integrate, stats

from modelyard.errors import InvalidInput
from modelyard.rollout import stats as ab
from modelyard.rollout.stats import ABResult, SequentialTest, always_valid_p

ALPHA = 0.05
RUNS = 200
LOOKS = 50


def allowed(runs: int = RUNS, alpha: float = ALPHA) -> int:
    """Runs a correct alpha-level procedure exceeds only once in a thousand (binomial bound)."""
    return int(stats.binom.ppf(0.999, runs, alpha))


def running_totals(
    rate: float, per_look: int, rng: np.random.Generator, looks: int = LOOKS
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Successes and samples after each look, for ``RUNS`` runs of one arm."""
    successes = rng.binomial(per_look, rate, size=(RUNS, looks)).cumsum(axis=1)
    return successes, per_look * np.arange(1, looks + 1)


def final_results(
    a: tuple[NDArray[np.int64], NDArray[np.int64]],
    b: tuple[NDArray[np.int64], NDArray[np.int64]],
    **options: float,
) -> list[ABResult]:
    """Every run looked at after every batch; the result at its last look."""
    results = []
    for run in range(RUNS):
        test = SequentialTest(**options)  # type: ignore[arg-type]
        for look in range(a[1].size):
            result = test.update(int(a[0][run, look]), int(a[1][look]),
                                 int(b[0][run, look]), int(b[1][look]))
        results.append(result)
    return results


def naive_z_rejections(
    a: tuple[NDArray[np.int64], NDArray[np.int64]], b: tuple[NDArray[np.int64], NDArray[np.int64]]
) -> int:
    """Runs in which a fixed-sample two-sided pooled z-test is significant at any look."""
    (s_a, n_a), (s_b, n_b) = a, b
    pooled = (s_a + s_b) / (n_a + n_b)
    with np.errstate(invalid="ignore", divide="ignore"):  # no variance yet: no rejection
        z = (s_b / n_b - s_a / n_a) / np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return int((np.abs(z) > stats.norm.ppf(1 - ALPHA / 2)).any(axis=1).sum())


def test_docstring_examples() -> None:
    result = doctest.testmod(ab, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


@pytest.mark.parametrize(("counts", "tau"), [
    ((300, 1000, 360, 1000), 0.02), ((30, 100, 21, 100), 0.05), ((50, 5000, 20, 500), 0.01),
])
def test_the_p_value_is_one_over_the_mixture_likelihood_ratio(
    counts: tuple[int, int, int, int], tau: float
) -> None:
    # The closed form against the definition: the likelihood ratio averaged over N(0, tau^2).
    s_a, n_a, s_b, n_b = counts
    pooled = (s_a + s_b + 1) / (n_a + n_b + 2)
    sd = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    d = s_b / n_b - s_a / n_a
    ratio, _ = integrate.quad(
        lambda theta: stats.norm.pdf(d, theta, sd) / stats.norm.pdf(d, 0, sd)
        * stats.norm.pdf(theta, 0, tau), -12 * tau, 12 * tau, points=[0, d],
    )
    assert always_valid_p(*counts, tau=tau) == pytest.approx(min(1.0, 1 / ratio), rel=1e-6)


def test_the_interval_ends_where_the_test_of_that_difference_reaches_alpha() -> None:
    s_a, n_a, s_b, n_b, tau = 600, 2000, 720, 2000, 0.02
    result = SequentialTest(alpha=ALPHA, tau=tau).update(s_a, n_a, s_b, n_b)
    pooled = (s_a + s_b + 1) / (n_a + n_b + 2)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    for end in (result.lower, result.upper):
        gap = result.difference - end
        spread = variance + tau**2
        log_lambda = 0.5 * math.log(variance / spread) + tau**2 * gap**2 / (2 * variance * spread)
        assert math.exp(-log_lambda) == pytest.approx(ALPHA, rel=1e-9)


def test_looking_fifty_times_keeps_false_positives_at_alpha() -> None:
    rng = np.random.default_rng(20)
    a, b = running_totals(0.3, 100, rng), running_totals(0.3, 100, rng)
    declared = sum(r.decision != "no_difference_yet" for r in final_results(a, b))
    naive = naive_z_rejections(a, b)
    assert declared <= allowed()
    # The point of the test: the z-test read at every look finds many differences that are not.
    assert naive > allowed()
    assert naive >= 3 * RUNS * ALPHA


def test_an_unbalanced_split_at_a_low_rate_keeps_false_positives_at_alpha() -> None:
    rng = np.random.default_rng(21)
    a, b = running_totals(0.02, 180, rng), running_totals(0.02, 20, rng)
    results = final_results(a, b)
    assert sum(r.decision != "no_difference_yet" for r in results) <= allowed()
    assert sum(r.p_value <= ALPHA for r in results) <= allowed()


def test_a_real_difference_is_found_within_a_few_thousand_samples() -> None:
    rng = np.random.default_rng(22)
    a, b = running_totals(0.30, 100, rng, looks=40), running_totals(0.36, 100, rng, looks=40)
    results = final_results(a, b)  # 4,000 samples per arm at the last look
    decisions = [r.decision for r in results]
    assert decisions.count("b_better") >= 0.9 * RUNS
    assert decisions.count("a_better") == 0
    assert all(r.upper - r.lower < 0.08 for r in results)
    missed = sum(not r.lower <= 0.06 <= r.upper for r in results)
    assert missed <= allowed()  # the interval covers the true gap at every look at once


def test_when_lower_is_better_the_lower_rate_wins() -> None:
    test = SequentialTest(higher_is_better=False)
    assert test.update(50, 2000, 150, 2000).decision == "a_better"
    test = SequentialTest(higher_is_better=False)
    assert test.update(150, 2000, 50, 2000).decision == "b_better"


def test_the_p_value_never_rises_and_a_decision_is_kept() -> None:
    test = SequentialTest()
    first = test.update(300, 1000, 420, 1000)
    assert first.decision == "b_better"
    # The gap then closes; the test stopped at the first look, as a sequential test does.
    later = test.update(1500, 5000, 1540, 5000)
    assert later.p_value == first.p_value
    assert later.decision == "b_better"
    assert later.lower == first.lower
    assert later.upper < first.upper


@pytest.mark.parametrize("counts", [
    (0, 0, 0, 0), (0, 0, 5, 10), (7, 10, 0, 0), (100, 100, 100, 100), (0, 500, 0, 500),
])
def test_no_samples_or_no_variance_is_no_difference_yet(counts: tuple[int, int, int, int]) -> None:
    result = SequentialTest().update(*counts)
    assert result.decision == "no_difference_yet"
    assert result.p_value == 1.0
    assert always_valid_p(*counts) == 1.0
    assert -1 <= result.lower <= 0 <= result.upper <= 1


def test_an_arm_without_samples_has_no_rate() -> None:
    result = SequentialTest().update(0, 0, 5, 10)
    assert math.isnan(result.rate_a)
    assert result.rate_b == 0.5
    assert (result.lower, result.upper) == (-1.0, 1.0)


def test_all_failures_against_all_successes_is_a_difference() -> None:
    result = SequentialTest().update(0, 200, 200, 200)
    assert result.decision == "b_better"
    assert result.lower > 0.5


def test_identical_outcomes_still_leave_an_interval() -> None:
    # Every outcome so far is a failure: the variance is not zero, the interval not a point.
    result = SequentialTest().update(0, 500, 0, 500)
    assert 0 < result.upper < 0.1
    assert result.lower == -result.upper


@pytest.mark.parametrize(("counts", "message"), [
    ((11, 10, 0, 10), "arm a has 11 successes in only 10 samples"),
    ((0, 10, 21, 20), "arm b has 21 successes in only 20 samples"),
    ((-1, 10, 0, 10), "successes_a must be a whole number of zero or more, not -1"),
    ((0, -10, 0, 10), "n_a must be a whole number of zero or more, not -10"),
    ((0, 10, 0, 10.0), "n_b must be a whole number of zero or more, not 10.0"),
    ((0, 10, True, 10), "successes_b must be a whole number of zero or more, not True"),
])
def test_impossible_counts_are_refused(counts: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        always_valid_p(*counts)
    with pytest.raises(InvalidInput, match=message):
        SequentialTest().update(*counts)


def test_looks_must_hold_running_totals() -> None:
    test = SequentialTest()
    test.update(30, 100, 30, 100)
    with pytest.raises(InvalidInput, match="n_a went down from 100 to 50: each look must hold"):
        test.update(15, 50, 60, 200)
    with pytest.raises(InvalidInput, match="failures of b went down from 70 to 0"):
        test.update(30, 100, 100, 100)
    assert test.update(31, 110, 33, 110).n_a == 110  # a refused look leaves the test as it was


@pytest.mark.parametrize(("options", "message"), [
    ({"alpha": 0}, "alpha must be between 0 and 1, not 0"),
    ({"alpha": 1.5}, "alpha must be between 0 and 1, not 1.5"),
    ({"tau": 0}, "tau must be a positive number, not 0"),
    ({"tau": float("inf")}, "tau must be a positive number, not inf"),
])
def test_bad_settings_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        SequentialTest(**options)  # type: ignore[arg-type]
