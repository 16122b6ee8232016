"""What NumericSketch and CategoricalSketch count, and how they refuse what they cannot."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelyard.errors import InvalidInput
from modelyard.monitoring import (
    OTHER,
    QUANTILE_RANKS,
    CategoricalSketch,
    NumericSketch,
)


def test_missing_nan_and_infinities_are_counted_apart() -> None:
    values = np.array([1.0, np.nan, np.inf, -np.inf, -np.inf, 2.0])
    summary = NumericSketch().update(values).result()
    assert (summary.count, summary.missing, summary.pos_inf, summary.neg_inf) == (6, 1, 1, 2)
    assert (summary.finite, summary.min, summary.max, summary.mean) == (2, 1.0, 2.0, 1.5)


@pytest.mark.parametrize(
    "values",
    [
        pd.Series([1.0, None, 3.0, np.nan]),
        pd.Series([1, None, 3, pd.NA], dtype="Int64"),
        np.array([1, None, "3", np.nan], dtype=object),
        pa.array([1.0, None, 3.0, float("nan")]),
        pa.chunked_array([[1, None], [3, None]]),
        [1.0, None, 3.0, None],
    ],
    ids=["float", "Int64", "object", "arrow", "chunked", "list"],
)
def test_none_nan_na_and_null_are_all_missing(values: object) -> None:
    summary = NumericSketch().update(values).result()
    assert (summary.count, summary.missing, summary.finite, summary.mean) == (4, 2, 2, 2.0)


def test_a_column_without_finite_values_says_so() -> None:
    summary = NumericSketch().update(np.array([np.nan, np.inf])).result()
    assert (summary.count, summary.missing, summary.pos_inf) == (2, 1, 1)
    assert (summary.min, summary.max, summary.mean, summary.std) == (None, None, None, None)
    assert summary.quantiles == {}
    assert np.isnan(NumericSketch().cdf([1.0])).all()


def test_below_k_values_quantiles_and_cdf_are_exact() -> None:
    values = np.random.default_rng(0).normal(size=150)
    sketch = NumericSketch().update(values[:70]).merge(NumericSketch().update(values[70:]))
    want = np.quantile(values, QUANTILE_RANKS, method="inverted_cdf")
    assert list(sketch.result().quantiles.values()) == want.tolist()
    points = np.array([0.5, -3.0, 0.5, 10.0, values[3]])
    exact = [(values <= p).mean() for p in points]
    assert sketch.cdf(points).tolist() == pytest.approx(exact, abs=1e-12)
    assert (sketch.n, sketch.kll.n) == (150, 150)


def test_rank_error_is_klls() -> None:
    assert NumericSketch().rank_error == pytest.approx(0.0133, abs=5e-4)
    assert NumericSketch(k=1024).rank_error < NumericSketch().rank_error


@pytest.mark.parametrize("gap", [None, np.nan, 1e308], ids=["finite", "with-nan", "overflowing"])
def test_the_callers_values_are_left_as_they_were(gap: float | None) -> None:
    # The sketch is fed sorted runs; the sorting must happen on a copy, never on the caller's data.
    values = np.random.default_rng(3).normal(size=20_000)
    if gap is not None:
        values[::7] = gap
    before = values.copy()
    sketch = NumericSketch().update(values)
    np.testing.assert_array_equal(values, before)
    finite = before[np.isfinite(before)]
    assert sketch.n == finite.size
    median = sketch.quantiles([0.5])[0]
    assert abs(np.mean(finite <= median) - 0.5) <= sketch.rank_error


@pytest.mark.parametrize("gap", [None, np.nan], ids=["finite", "with-nan"])
def test_float32_columns_sketch_as_their_exact_float64_values(gap: float | None) -> None:
    # Served FP32 tensors reach the sketch as strided float32 columns, sorted as float32: the
    # summary must be that of the same values as float64 (KLL's own coin aside), and the
    # matrix untouched.
    matrix = np.random.default_rng(5).normal(size=(3_000, 4)).astype(np.float32)
    if gap is not None:
        matrix[::11, 1] = gap
    before = matrix.copy()
    sketch = NumericSketch().update(matrix[:, 1])
    np.testing.assert_array_equal(matrix, before)
    values = matrix[:, 1].astype(np.float64)
    finite = values[np.isfinite(values)]
    summary = sketch.result()
    assert (summary.count, summary.missing) == (values.size, values.size - finite.size)
    assert (summary.min, summary.max) == (finite.min(), finite.max())
    assert summary.mean == pytest.approx(finite.mean(), rel=1e-9)
    points = np.quantile(finite, [0.05, 0.25, 0.5, 0.75, 0.95])
    exact = np.array([(finite <= p).mean() for p in points])
    assert np.abs(sketch.cdf(points) - exact).max() <= sketch.rank_error


def test_moments_stay_exact_far_from_zero_over_many_chunks() -> None:
    values = 1e9 + np.random.default_rng(1).normal(0.0, 1e-3, 100_000)
    sketch = NumericSketch()
    for chunk in np.array_split(values, 37):
        sketch.update(chunk)
    summary = sketch.result()
    assert summary.mean == pytest.approx(values.mean(), rel=1e-12)
    assert summary.std == pytest.approx(values.std(ddof=1), rel=1e-6)


def test_merging_a_sketch_with_itself_counts_twice() -> None:
    sketch = NumericSketch().update([1.0, 2.0, np.nan])
    summary = sketch.merge(sketch).result()
    assert (summary.count, summary.missing, summary.mean) == (6, 2, 1.5)


@pytest.mark.parametrize("size", [4_096, 6_000, 1_000_000])
def test_large_batches_keep_counts_extremes_and_ranks(size: int) -> None:
    # Batches of 4,096 values or more reach KLL compacted in sorted runs (each kept value
    # stands for four): every count and both extremes stay exact, ranks stay within KLL's error
    # through a merge and a byte round trip.
    rng = np.random.default_rng(size)
    values = rng.lognormal(size=size)
    sketch = NumericSketch().update(values[: size // 2])
    sketch.merge(NumericSketch().update(values[size // 2 :]))
    sketch = NumericSketch.from_bytes(sketch.to_bytes())
    summary = sketch.result()
    assert (sketch.n, summary.count) == (size, size)
    assert (summary.min, summary.max) == (values.min(), values.max())
    assert (summary.quantiles[0.0], summary.quantiles[1.0]) == (values.min(), values.max())
    points = np.quantile(values, [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
    exact = np.array([(values <= p).mean() for p in points])
    assert np.abs(sketch.cdf(points) - exact).max() <= sketch.rank_error
    median = sketch.quantiles([0.5])[0]
    assert abs((values <= median).mean() - 0.5) <= sketch.rank_error


def test_merged_sketches_are_read_with_their_weights() -> None:
    # DataSketches reports weight 1 for every item of some merged KLL sketches; the drift
    # methods read items and weights, so they must get the sketch's real ones.
    from modelyard.monitoring.drift import Wasserstein
    from modelyard.monitoring.weighted import WeightedItems

    rng = np.random.default_rng(7)
    halves = [NumericSketch().update(rng.normal(size=1_000)) for _ in range(2)]
    merged = halves[0].merge(halves[1]).kll
    items = WeightedItems.of(merged)
    assert items.n == merged.n == 2_000
    points = np.linspace(-2.5, 2.5, 11).tolist()
    assert items.get_cdf(points, True) == pytest.approx(merged.get_cdf(points, True), abs=1e-12)
    same = NumericSketch().update(rng.normal(size=2_000)).kll
    shifted = NumericSketch().update(rng.normal(0.5, 1.0, size=2_000)).kll
    assert Wasserstein().score(same, merged) < 0.15 < Wasserstein().score(shifted, merged)


def test_a_word_in_a_numeric_column_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"'x' is not a number \(1 such values\)"):
        NumericSketch().update(np.array(["1.5", "x", None], dtype=object))
    with pytest.raises(InvalidInput, match="'n/a' is not a number"):
        NumericSketch().update(pa.array(["1", "n/a"]))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda: NumericSketch(k=4), "k must be an integer from 8"),
        (lambda: NumericSketch().update(np.zeros((2, 2))), "1-D"),
        (lambda: NumericSketch().cdf([np.nan]), "without NaN"),
        (lambda: NumericSketch().quantiles([1.5]), "from 0 to 1"),
        (lambda: NumericSketch().merge(CategoricalSketch()), "cannot merge a Categorical"),
        (lambda: CategoricalSketch(lg_max_k=2), "lg_max_k must be"),
        (lambda: CategoricalSketch().merge(NumericSketch()), "cannot merge a Numeric"),
    ],
)
def test_bad_arguments_are_invalid_input(bad: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        bad()  # type: ignore[operator]


def test_categories_are_labels_of_any_type() -> None:
    sketch = CategoricalSketch().update(pd.Series([1, 1.0, True, "a", None, np.nan], dtype=object))
    summary = sketch.result()
    assert (summary.count, summary.missing, summary.count_error) == (6, 2, 0.0)
    assert summary.counts == {"1": 3.0, "a": 1.0}  # pandas counts 1, 1.0 and True as one value


def test_pandas_and_arrow_categories_count_the_same() -> None:
    values = ["b", "a", None, "b", "c", None, "b"]
    from_pandas = CategoricalSketch().update(pd.Series(values, dtype="category")).result()
    from_arrow = CategoricalSketch().update(pa.array(values).dictionary_encode()).result()
    from_numpy = CategoricalSketch().update(np.array(values, dtype=object)).result()
    assert from_pandas == from_arrow == from_numpy
    assert from_pandas.counts == {"b": 3.0, "a": 1.0, "c": 1.0}
    assert (from_pandas.missing, from_pandas.distinct) == (2, 3.0)


def test_unused_pandas_categories_are_not_counted() -> None:
    values = pd.Series(pd.Categorical(["x", "x"], categories=["x", "y"]))
    assert CategoricalSketch().update(values).counts() == {"x": 2.0}


def test_beyond_the_map_the_rest_is_other_and_distinct_is_estimated() -> None:
    values = np.array([f"id{i}" for i in range(5_000)] + ["hot"] * 5_000, dtype=object)
    sketch = CategoricalSketch(lg_max_k=6).update(values)
    counts = sketch.counts()
    assert sum(counts.values()) == 10_000
    assert counts[OTHER] > 0
    assert 5_000 - sketch.count_error <= counts["hot"] <= 5_000
    assert 0 < sketch.count_error <= 3.5 / 64 * 10_000
    assert sketch.distinct() == pytest.approx(5_001, rel=0.05)


def test_many_chunks_of_few_labels_stay_exact() -> None:
    rng = np.random.default_rng(2)
    sketch = CategoricalSketch()
    values = rng.choice(["a", "b", "c"], 30_000)
    for chunk in np.array_split(values, 10):
        sketch.update(chunk)
    truth = pd.Series(values).value_counts()
    assert sketch.counts() == {label: float(n) for label, n in truth.items()}
    assert sketch.items.total_weight == 30_000
    assert sketch.hll.get_estimate() == pytest.approx(3.0, abs=0.01)


@pytest.mark.parametrize("sketch_type", [NumericSketch, CategoricalSketch])
def test_foreign_corrupt_and_newer_bytes_are_refused(sketch_type: type) -> None:
    kind = "numeric" if sketch_type is NumericSketch else "categorical"
    blob = sketch_type().update(["1", "2", "3"]).to_bytes()
    with pytest.raises(InvalidInput, match=f"is not a modelyard {kind} sketch: it lacks"):
        sketch_type.from_bytes(b"definitely not a sketch")
    other = CategoricalSketch if sketch_type is NumericSketch else NumericSketch
    with pytest.raises(InvalidInput, match=f"is not a modelyard {kind} sketch"):
        sketch_type.from_bytes(other().to_bytes())
    damaged = blob[:-5] + bytes([blob[-5] ^ 0xFF]) + blob[-4:]
    with pytest.raises(InvalidInput, match="checksum does not match"):
        sketch_type.from_bytes(damaged)
    with pytest.raises(InvalidInput, match="checksum does not match"):
        sketch_type.from_bytes(blob[:-3])
    newer = blob[:6] + struct.pack("<H", 2) + blob[8:]
    with pytest.raises(InvalidInput, match="format version 2, newer .* upgrade modelyard"):
        sketch_type.from_bytes(newer)
    with pytest.raises(InvalidInput, match="read from bytes, not from a str"):
        sketch_type.from_bytes("text")
