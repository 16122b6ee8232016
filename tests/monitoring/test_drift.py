"""Drift methods computed from sketches agree with SciPy on the raw rows, and refuse bad input."""

from __future__ import annotations

import dataclasses
import doctest
from typing import Any

import numpy as np
import pytest
from datasketches import kll_doubles_sketch
from scipy import stats
from scipy.spatial.distance import jensenshannon

from modelyard.errors import InvalidInput
from modelyard.monitoring import drift
from modelyard.monitoring.drift import (
    METHODS,
    PSI,
    ChiSquare,
    Hellinger,
    JensenShannon,
    KolmogorovSmirnov,
    LInfinity,
    Wasserstein,
    default_method,
)

RANK_ERROR = kll_doubles_sketch(200).normalized_rank_error(False)  # 1.33 % at k = 200
CATEGORICAL = [name for name, method in METHODS.items() if "categorical" in method.kinds]


def sketch(values: Any, k: int = 200) -> Any:
    built = kll_doubles_sketch(k)
    built.update(np.asarray(values, dtype=np.float64))
    return built


def binned_shares(reference: Any, current: Any, bins: int) -> tuple[Any, Any]:
    """The shares the binned methods see: bins cut at the reference's quantiles."""
    edges = np.unique(reference.get_quantiles((np.arange(1, bins) / bins).tolist())).tolist()
    return np.asarray(reference.get_pmf(edges)), np.asarray(current.get_pmf(edges))


def test_docstring_examples() -> None:
    result = doctest.testmod(drift, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted >= len(METHODS)


@pytest.mark.parametrize("rows", [1_000, 10_000, 100_000])
@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_ks_is_within_twice_the_rank_error_of_scipy(rows: int, shift: float) -> None:
    rng = np.random.default_rng(rows)
    for _ in range(5):
        reference, current = rng.normal(size=rows), rng.normal(shift, size=rows)
        exact = stats.ks_2samp(reference, current).statistic
        score = KolmogorovSmirnov().score(sketch(reference), sketch(current))
        assert abs(score - exact) <= 2 * RANK_ERROR


def test_sketches_below_k_values_are_exact() -> None:
    rng = np.random.default_rng(1)
    reference, current = rng.normal(size=150), rng.normal(0.4, 1.3, size=180)
    ref, cur = sketch(reference), sketch(current)
    ks = stats.ks_2samp(reference, current).statistic
    w1 = stats.wasserstein_distance(reference, current) / np.std(reference)
    assert KolmogorovSmirnov().score(ref, cur) == pytest.approx(ks, rel=1e-12)
    assert Wasserstein().score(ref, cur) == pytest.approx(w1, rel=1e-9)


@pytest.mark.parametrize("rows", [10_000, 100_000])
def test_normed_wasserstein_is_within_a_few_percent_of_scipy(rows: int) -> None:
    """KLL's rank noise integrates to ~0.015 (in standard deviations) at k = 200, whatever
    the shift: a few percent of a 0.5-sd shift, a larger share of a small one.

    The sketches compact at random, so the error is a random variable: over 300 pairs of
    sketches of the same 100k-row samples (0.5-sd shift) it had mean 0.012, 99th percentile
    0.038 and maximum 0.047; once in a full run it reached 0.054. The bounds sit well past
    that tail and still catch a scaling or interpolation mistake, which errs by tenths."""
    rng = np.random.default_rng(rows)
    for shift, scale in [(0.5, 1.0), (0.5, 1.0), (0.0, np.sqrt(1.5)), (0.1, 1.0), (0.0, 1.0)]:
        reference, current = rng.normal(size=rows), rng.normal(shift, scale, size=rows)
        exact = stats.wasserstein_distance(reference, current) / np.std(reference)
        score = Wasserstein().score(sketch(reference), sketch(current))
        assert score == pytest.approx(exact, abs=0.08)
        if shift == 0.5:
            assert score == pytest.approx(exact, rel=0.16)


def test_chisquare_equals_scipys_contingency_test_on_exact_counts() -> None:
    rng = np.random.default_rng(2)
    labels = [f"c{i}" for i in range(8)]
    for _ in range(20):
        ref = rng.multinomial(5_000, rng.dirichlet(np.ones(8)))
        cur = rng.multinomial(700, rng.dirichlet(np.ones(8)))
        table = np.vstack([ref, cur])
        expected = stats.chi2_contingency(table[:, table.sum(axis=0) > 0], correction=False)
        reference = dict(zip(labels, ref, strict=True))
        score = ChiSquare().score(reference, dict(zip(labels, cur, strict=True)))
        assert score == pytest.approx(expected.statistic, rel=1e-12)


def test_chisquare_is_two_sample_not_goodness_of_fit() -> None:
    reference, current = {"a": 60, "b": 40}, {"a": 40, "b": 60}
    two_sample = stats.chi2_contingency([[60, 40], [40, 60]], correction=False).statistic
    one_sample = stats.chisquare([40, 60], [60, 40]).statistic  # reference shares as exact
    assert ChiSquare().score(reference, current) == pytest.approx(two_sample)
    assert one_sample == pytest.approx(2 * two_sample, rel=0.25)


def test_categories_on_one_side_only() -> None:
    reference, current = {"a": 120.0, "b": 30.0, "c": 50.0}, {"a": 60.0, "b": 40.0, "d": 5.0}
    table = np.array([[120, 30, 50, 0], [60, 40, 0, 5]])
    chi2 = stats.chi2_contingency(table, correction=False).statistic
    assert ChiSquare().score(reference, current) == pytest.approx(chi2, rel=1e-12)
    p, q = table[0] / table[0].sum(), table[1] / table[1].sum()
    js = jensenshannon(p, q, base=2)
    assert JensenShannon().score(reference, current) == pytest.approx(js, rel=1e-12)
    assert LInfinity().score(reference, current) == pytest.approx(np.max(np.abs(p - q)))
    hellinger = np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2) / 2)
    assert Hellinger().score(reference, current) == pytest.approx(hellinger, rel=1e-12)
    p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    assert PSI().score(reference, current) == pytest.approx(np.sum((q - p) * np.log(q / p)))


def test_disjoint_categories_are_as_far_apart_as_the_bounded_methods_allow() -> None:
    reference, current = {"a": 10, "b": 30}, {"c": 7}
    assert JensenShannon().score(reference, current) == pytest.approx(1.0)
    assert Hellinger().score(reference, current) == pytest.approx(1.0)
    assert LInfinity().score(reference, current) == pytest.approx(1.0)
    assert np.isfinite(PSI().score(reference, current))


@pytest.mark.parametrize("bins", [10, 20])
def test_binned_methods_read_the_same_shares_as_scipy(bins: int) -> None:
    rng = np.random.default_rng(bins)
    ref, cur = sketch(rng.normal(size=50_000)), sketch(rng.normal(0.2, 1.1, size=20_000))
    p, q = binned_shares(ref, cur, bins)
    assert p == pytest.approx(np.full(bins, 1 / bins), abs=2 * RANK_ERROR)
    assert JensenShannon(bins=bins).score(ref, cur) == pytest.approx(
        jensenshannon(p, q, base=2), rel=1e-12
    )
    assert LInfinity(bins=bins).score(ref, cur) == pytest.approx(np.max(np.abs(p - q)))
    chi2 = stats.chi2_contingency(np.vstack([p * ref.n, q * cur.n]), correction=False)
    assert ChiSquare(bins=bins).score(ref, cur) == pytest.approx(chi2.statistic, rel=1e-12)
    assert PSI(bins=bins).score(ref, cur) == pytest.approx(np.sum((q - p) * np.log(q / p)))


@pytest.mark.parametrize("name", list(METHODS))
def test_identical_inputs_score_zero(name: str) -> None:
    method = METHODS[name]()
    values = np.random.default_rng(3).lognormal(size=20_000)
    same = sketch(values)
    assert method.score(same, same) == pytest.approx(0.0, abs=1e-12)
    # Two sketches of the same rows differ by their rank error (measured maxima over 6 runs:
    # ks 0.015, wasserstein 0.047 on this heavy tail, js 0.032, hellinger 0.028, linf 0.010,
    # psi 0.003, chisquare 69 — above the fixed 1 % critical value of 36.2, whylogs #684: only
    # a calibrated threshold puts the sketch's error into the null distribution).
    again = method.score(sketch(values), sketch(values))
    bound = {"ks": 2 * RANK_ERROR, "wasserstein": 0.1, "psi": 0.01, "chisquare": 200.0}
    assert 0.0 <= again <= bound.get(name, 0.06)
    if name in CATEGORICAL:
        counts = {"a": 10.0, "b": 5.0, "__other__": 2.0}
        assert method.score(counts, dict(counts)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_has_the_same_shape(name: str) -> None:
    cls = METHODS[name]
    method = cls()
    assert method.name == name
    assert method.kinds <= {"numerical", "categorical"}
    assert cls.__doc__ is not None
    assert ">>>" in cls.__doc__
    with pytest.raises(dataclasses.FrozenInstanceError):
        method.bins = 3  # type: ignore[misc]
    rng = np.random.default_rng(4)
    ref, cur = sketch(rng.normal(size=5_000)), sketch(rng.normal(0.5, size=5_000))
    assert method.score(ref, cur) == method.score(ref, cur) > 0


def test_default_methods() -> None:
    assert default_method("numerical") == "wasserstein"
    assert default_method("categorical") == "jensenshannon"
    for kind in ("numerical", "categorical"):
        assert kind in METHODS[default_method(kind)].kinds
    with pytest.raises(InvalidInput, match="unknown column kind 'text'"):
        default_method("text")


def test_bad_input_is_refused_with_a_clear_message() -> None:
    ref = sketch([1.0, 2.0, 3.0])
    with pytest.raises(InvalidInput, match="current sketch is empty"):
        KolmogorovSmirnov().score(ref, kll_doubles_sketch(200))
    with pytest.raises(InvalidInput, match="reference has no category counts"):
        ChiSquare().score({}, {"a": 1})
    with pytest.raises(InvalidInput, match="numerical reference with a categorical current"):
        PSI().score(ref, {"a": 1})
    with pytest.raises(InvalidInput, match="ks compares numerical columns, not categorical"):
        KolmogorovSmirnov().score({"a": 1}, {"a": 2})
    with pytest.raises(InvalidInput, match="wasserstein compares numerical columns"):
        Wasserstein().score({"a": 1}, {"a": 2})
    with pytest.raises(InvalidInput, match="KLL quantile sketch .* not ndarray"):
        KolmogorovSmirnov().score(np.arange(3.0), np.arange(3.0))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="current counts must be finite, non-negative"):
        JensenShannon().score({"a": 1}, {"a": -1})
    with pytest.raises(InvalidInput, match="current counts must be finite"):
        JensenShannon().score({"a": 1}, {"a": 0})
    with pytest.raises(InvalidInput, match="counts must be numbers"):
        JensenShannon().score({"a": 1}, {"a": "many"})  # type: ignore[dict-item]
    with pytest.raises(InvalidInput, match="bins must be an integer of at least 2"):
        PSI(bins=1).score(ref, ref)
    with pytest.raises(InvalidInput, match="needs finite values"):
        Wasserstein().score(ref, sketch([1.0, np.inf]))
