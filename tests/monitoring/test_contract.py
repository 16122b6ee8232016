"""One contract over every sketch and profile (STYLE.md, "A uniform contract for the math").

For data split in two, ``A.update(x1).merge(B.update(x2))`` agrees with ``C.update(x1 + x2)``:
exactly for counts, extremes and moments (moments to 1e-9), within the stated error for what a
sketch approximates — KLL quantiles within ``rank_error`` of the true rank, frequent-item
counts within ``count_error`` below the true count, HyperLogLog within three standard errors.
Serialization round-trips to an equal result; ``update`` and ``merge`` return ``self``.

DataSketches does not let Python seed KLL's compactions, so "the same seed gives the same
result" is checked as: the same data gives identical counts, extremes, moments, frequent items
and distinct counts, and quantiles within ``rank_error`` of the truth each time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelyard.monitoring import (
    OTHER,
    CategoricalSketch,
    CategoricalSummary,
    NumericSketch,
    NumericSummary,
    TableProfile,
)

ROWS = 20_000


def numbers(rng: np.random.Generator) -> np.ndarray:
    values = rng.normal(1_000.0, 3.0, ROWS)
    values[rng.random(ROWS) < 0.03] = np.nan
    values[rng.random(ROWS) < 0.01] = np.inf
    values[rng.random(ROWS) < 0.01] = -np.inf
    return values


def labels(rng: np.random.Generator, distinct: int) -> pd.Series:
    drawn = np.minimum(rng.zipf(1.3, ROWS), distinct)
    values = pd.Series([f"c{v}" for v in drawn], dtype=object)
    values[rng.random(ROWS) < 0.05] = None
    return values


def table(rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame({
        "amount": numbers(rng),
        "count": rng.poisson(4.0, ROWS),
        "plan": rng.choice(["free", "pro", "team"], ROWS),
        "city": labels(rng, 5_000),
        "active": rng.random(ROWS) < 0.3,
    })


def check_numeric(got: NumericSummary, want: NumericSummary, values: Any, error: float) -> None:
    x = np.asarray(values, dtype=np.float64)
    finite = np.sort(x[np.isfinite(x)])
    truth = (x.size, int(np.isnan(x).sum()), int((x == np.inf).sum()), int((x == -np.inf).sum()))
    for summary in (got, want):
        assert (summary.count, summary.missing, summary.pos_inf, summary.neg_inf) == truth
        assert (summary.min, summary.max) == (finite[0], finite[-1])
        assert summary.mean == pytest.approx(finite.mean(), rel=1e-9)
        assert summary.std == pytest.approx(finite.std(ddof=1), rel=1e-9)
        assert summary.quantiles.keys() == got.quantiles.keys()
        for rank, value in summary.quantiles.items():
            below = np.searchsorted(finite, value, "left") / finite.size
            upto = np.searchsorted(finite, value, "right") / finite.size
            assert max(below - rank, rank - upto, 0.0) <= error, (rank, value)
    assert got.mean == pytest.approx(want.mean, rel=1e-9)
    assert got.std == pytest.approx(want.std, rel=1e-9)


def check_categorical(
    got: CategoricalSummary, want: CategoricalSummary, values: Any, lg_max_k: int, lg_k_hll: int
) -> None:
    series = pd.Series(values).astype(object)
    present = series[series.notna()].map(str)
    truth = present.value_counts()
    for summary in (got, want):
        assert (summary.count, summary.missing) == (series.size, series.size - present.size)
        assert sum(summary.counts.values()) == present.size
        assert summary.count_error <= 3.5 / 2**lg_max_k * present.size
        for label, count in summary.counts.items():
            if label != OTHER:
                assert truth[label] - summary.count_error <= count <= truth[label]
        heavy = truth[truth > summary.count_error].index
        assert set(heavy) <= set(summary.counts)
        if summary.count_error == 0:
            assert summary.distinct == truth.size
        else:
            assert summary.distinct == pytest.approx(truth.size, rel=3 * 1.04 / 2 ** (lg_k_hll / 2))


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], Any]
    data: Callable[[np.random.Generator], Any]
    check: Callable[[Any, Any, Any], None]
    deterministic: bool  # no KLL in it, so the same data gives an identical result

    def __str__(self) -> str:
        return self.name


def check_table(got: dict[str, Any], want: dict[str, Any], frame: pd.DataFrame) -> None:
    assert list(got) == list(want) == list(frame.columns)
    for name, summary in got.items():
        if isinstance(summary, NumericSummary):
            check_numeric(summary, want[name], frame[name], NumericSketch().rank_error)
        else:
            check_categorical(summary, want[name], frame[name], 10, 12)


CASES = [
    Case(
        "numeric", NumericSketch, numbers,
        lambda got, want, x: check_numeric(got, want, x, NumericSketch().rank_error), False,
    ),
    Case(
        "numeric-k64", lambda: NumericSketch(k=64), numbers,
        lambda got, want, x: check_numeric(got, want, x, NumericSketch(k=64).rank_error), False,
    ),
    Case(
        "categorical-few", CategoricalSketch, lambda rng: labels(rng, 12),
        lambda got, want, x: check_categorical(got, want, x, 10, 12), True,
    ),
    Case(
        "categorical-many", lambda: CategoricalSketch(lg_max_k=6, lg_k_hll=10),
        lambda rng: labels(rng, 5_000),
        lambda got, want, x: check_categorical(got, want, x, 6, 10), True,
    ),
    Case("table", TableProfile, table, check_table, False),
]


def concat(first: Any, second: Any) -> Any:
    if isinstance(first, pd.DataFrame | pd.Series):
        return pd.concat([first, second], ignore_index=True)
    return np.concatenate([first, second])


def halves(data: Any, at: int) -> tuple[Any, Any]:
    if isinstance(data, pd.DataFrame | pd.Series):
        return data.iloc[:at], data.iloc[at:]
    return data[:at], data[at:]


@pytest.fixture(params=CASES, ids=str)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


@pytest.mark.parametrize("seed", [0, 1])
def test_merge_equals_update_on_the_concatenation(case: Case, seed: int) -> None:
    data = case.data(np.random.default_rng(seed))
    first, second = halves(data, 7_000)
    merged = case.make().update(first).merge(case.make().update(second)).result()
    case.check(merged, case.make().update(data).result(), data)


def test_update_and_merge_return_self(case: Case) -> None:
    data = case.data(np.random.default_rng(2))
    sketch, other = case.make(), case.make()
    assert sketch.update(data) is sketch
    assert sketch.merge(other.update(data)) is sketch


def test_serialization_round_trips(case: Case) -> None:
    data = case.data(np.random.default_rng(3))
    sketch = case.make().update(data)
    restored = type(sketch).from_bytes(sketch.to_bytes())
    assert restored.result() == sketch.result()
    assert type(sketch).from_bytes(restored.to_bytes()).result() == sketch.result()
    more = case.data(np.random.default_rng(4))
    both = concat(data, more)
    case.check(restored.update(more).result(), sketch.update(more).result(), both)


def test_an_empty_one_merges_as_nothing(case: Case) -> None:
    data = case.data(np.random.default_rng(5))
    sketch = case.make().update(data)
    assert case.make().merge(case.make()).result() == case.make().result()
    case.check(case.make().merge(sketch).result(), sketch.result(), data)
    case.check(sketch.merge(case.make()).result(), case.make().update(data).result(), data)


def test_the_same_data_gives_the_same_result(case: Case) -> None:
    data = case.data(np.random.default_rng(6))
    first, second = case.make().update(data).result(), case.make().update(data).result()
    case.check(first, second, data)
    if case.deterministic:
        assert first == second
