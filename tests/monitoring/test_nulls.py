"""Null tables: one simulation of sketched ranks serves every column of a shape, and persists."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
from datasketches import kll_doubles_sketch

from modelyard.monitoring import nulls, weighted
from modelyard.monitoring.calibration import calibrate
from modelyard.monitoring.drift import METHODS
from modelyard.monitoring.nulls import NullTables, Shape, simulate
from modelyard.monitoring.weighted import WeightedItems


@pytest.mark.parametrize("module", [nulls, weighted])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0
    assert result.attempted > 0


@pytest.mark.parametrize("family", ["normal", "poisson"])
def test_weighted_items_answer_every_query_as_the_kll_sketch_does(family: str) -> None:
    rng = np.random.default_rng(3)
    for rows in (1, 150, 40_000):
        values = rng.normal(size=rows) if family == "normal" else rng.poisson(3, rows) * 1.0
        sketch = kll_doubles_sketch(200)
        sketch.update(values)
        items = WeightedItems.of(sketch)
        points = np.unique(np.concatenate([rng.choice(values, 25), [-9.0, 9.0]])).tolist()
        ranks = [0.0, 0.5, 1.0, *rng.random(25).tolist()]
        assert items.n == sketch.n
        for inclusive in (True, False):
            assert np.allclose(items.get_cdf(points, inclusive), sketch.get_cdf(points, inclusive))
            assert np.allclose(items.get_pmf(points, inclusive), sketch.get_pmf(points, inclusive))
            assert items.get_quantiles(ranks, inclusive) == sketch.get_quantiles(ranks, inclusive)


def test_a_table_read_through_sorted_values_is_the_sketch_of_those_values() -> None:
    """Without compaction (k above the rows) both sides are exact: the pair is the raw split."""
    shape = Shape.of(size=400, rows=50, n_boot=20, k=1_000, reference_k=1_000, seed=0)
    values = np.sort(np.random.default_rng(1).lognormal(size=400))
    for reference, window in simulate(shape).pairs(values):
        assert (reference.n, window.n) == (350, 50)
        joined = np.sort(np.concatenate([reference.items, window.items]))
        assert np.array_equal(joined, values)  # a holdout: each value on exactly one side


def test_ks_thresholds_are_the_same_for_any_continuous_column_of_a_shape() -> None:
    """KS is rank-based, so one table gives every continuous column the same threshold."""
    rng = np.random.default_rng(2)
    tables = NullTables()
    normal = calibrate(rng.normal(size=20_000), "ks", 2_000, tables=tables)
    skewed = calibrate(rng.lognormal(3, 2, size=20_000), "ks", 2_000, tables=tables)
    assert tables.simulated == 1
    assert normal.value == pytest.approx(skewed.value, abs=1e-12)


def test_tables_on_disk_are_reused_by_a_new_process(tmp_path: Path) -> None:
    values = np.random.default_rng(4).exponential(size=10_000)
    first = NullTables(tmp_path)
    before = calibrate(values, "wasserstein", 1_000, n_boot=99, tables=first)
    again = NullTables(tmp_path)  # as a restarted monitor or the next report would
    after = calibrate(values, "wasserstein", 1_000, n_boot=99, tables=again)
    assert (first.simulated, again.simulated) == (1, 0)
    assert after.value == before.value
    assert len(list(tmp_path.glob("*.npz"))) == 1


def test_an_unreadable_table_on_disk_is_drawn_again(tmp_path: Path) -> None:
    shape = Shape.of(size=2_000, rows=100, n_boot=99, k=200, reference_k=200, seed=0)
    (tmp_path / f"{shape.key}.npz").write_bytes(b"not a table")
    tables = NullTables(tmp_path)
    assert len(tables.get(shape)) == 99
    assert tables.simulated == 1
    assert len(NullTables(tmp_path).get(shape)) == 99  # and the good one replaced it


def test_memory_keeps_at_most_capacity_tables() -> None:
    tables = NullTables(capacity=2)
    shapes = [Shape.of(size=500, rows=rows, n_boot=99, k=200, reference_k=200, seed=0)
              for rows in (10, 20, 30)]
    for shape in shapes:
        tables.get(shape)
    tables.get(shapes[0])  # pushed out by the third, so drawn again
    assert tables.simulated == 4


def test_columns_with_missing_values_share_tables_by_eighths_of_their_finite_share() -> None:
    rng = np.random.default_rng(5)
    tables = NullTables()
    for missing in (0.02, 0.05, 0.1):
        column = rng.normal(size=20_000)
        column[rng.random(20_000) < missing] = np.nan
        calibrate(column, "wasserstein", 2_000, tables=tables)
    assert tables.simulated == 1  # all between 7/8 and 1 of the rows have a value


@pytest.mark.parametrize("method", ["ks", "wasserstein"])
@pytest.mark.parametrize(("size", "rows"), [(2_000, 100), (600, 2_048)])  # holdout, bootstrap
def test_all_pairs_at_once_score_as_each_pair_alone(method: str, size: int, rows: int) -> None:
    """Calibration scores KS and Wasserstein over a table's pairs in one pass: the same
    scores, ties (repeated values, ranks drawn twice) included."""
    drift = METHODS[method]()
    table = simulate(Shape.of(size=size, rows=rows, n_boot=60, k=200, reference_k=200, seed=3))
    rng = np.random.default_rng(5)
    for values in (rng.normal(size=size), rng.poisson(2, size) * 1.0, np.full(size, 7.0)):
        ordered = np.sort(values)
        merged = table.merged(ordered)
        assert merged is not None
        alone = [drift.score(reference, window) for reference, window in table.pairs(ordered)]
        assert np.allclose(drift._compare_merged(merged), alone, rtol=1e-12, atol=1e-15)
        assert len(set(alone)) > 1 or values[0] == values[-1]  # (pairs that differ)
