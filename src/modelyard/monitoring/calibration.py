"""Thresholds that mean the same false-alarm rate at every window size.

A fixed p-value flags everything on large windows (Evidently #50, whylogs #684) and a fixed
distance misses real shifts on small ones. :func:`calibrate` measures on the reference what a
method scores when nothing has changed, for windows of the size it will see:

1. draw ``n_boot`` chunks of ``window_rows`` rows and summarise each as a live window is
   summarised (a KLL sketch of ``k`` values, or category counts);
2. score each against the reference *without* the chunk's rows, sketched in one stream in its
   own order as a profile sketches it (NannyML #426: a chunk compared with a reference that
   contains it scores too low);
3. take the ⌈(1 - alpha)(n_boot + 1)⌉-th smallest score, so that P(score > threshold) ≤ alpha
   for a window from the reference's distribution (the permutation-test bound).

Both sides are sketched, so the sketches' rank error is inside the null distribution. Sketching
the reference side as one stream matters: a merge of many chunk sketches is more accurate than
one stream of the same rows (KS 99th percentile 0.021 vs 0.024 at 200k rows) and gave 2.7 %
false alarms instead of 1 %.

For numbers the draws are not made per column: a KLL sketch only compares values, so the sketch
of a column's values is the sketch of their ranks read through the sorted values. One table of
sketched ranks per shape (reference size, window size, k, draws; :mod:`~modelyard.monitoring.nulls`)
serves every column of that shape, and per column only the scores are computed (1 to 4 ms for
200 draws with KS and Wasserstein, which score them all at once, against 0.8 s to draw a table
of a 100k-row sample). A column with missing values is
calibrated at its finite share rounded down to eighths, so that columns missing 1 % and 10 % of
their values share one table; the smaller sample and windows can only raise its threshold.

``Threshold.scheme`` says how chunks were drawn:

- ``"holdout"`` (windows up to a quarter of the reference, N rows): each round holds out up to
  N/4 rows as disjoint chunks and sketches the rest, with at least 50 rounds so the reference
  sketch's own error is sampled too. The null compares 0.75 N to N rows with w where the live
  test compares N with w: slightly conservative. For categories a multivariate hypergeometric
  draw is the exact count vector of a random chunk, and the reference is the total minus it.
- ``"bootstrap"`` (larger windows, e.g. 1M rows against a 100k reference): a reference of N rows
  and a window of w rows are both drawn with replacement from the reference (each reference
  draw serving up to four windows, at least 50 of them), the pooled two-sample bootstrap
  (Efron & Tibshirani 1993, ch. 16; Praestgaard 1995 for KS), so the null carries both
  samples' noise at their live sizes. Limits: ties from resampling; a table
  sketches N + w rows per draw (about 10 s for 200 draws of 1M rows, once per shape); and the
  reference's own sampling error, the same for every window, now dominates, so one reference
  that happens to be unusual flags many windows. The cure is a larger reference.

What a calibrated threshold guarantees is the rate on average over references. One column's
rate also depends on: the Monte Carlo error of a 1 % quantile of ``n_boot`` scores (standard
deviation 0.7 points at 200 draws, 0.3 at 1,000); the reference's sampling error (small when it
has 20+ times the window's rows); and its sketch's rank error, shared by every window (pass
``reference_k`` and sketch the reference with a larger k, e.g. 2,000).

KLL compacts with a generator Python cannot seed (datasketches-cpp seeds it from the clock):
a seed fixes which rows are drawn, but a freshly drawn table gives numerical thresholds that vary
between runs (over 5 runs at 10k-row windows: KS by 5 %, normed Wasserstein by 19 %); a stored
table (``NullTables(directory)``) makes them repeat. Categorical ones are always identical.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from modelyard.errors import InvalidInput
from modelyard.monitoring.drift import (
    CATEGORICAL,
    METHODS,
    NUMERICAL,
    DriftMethod,
    Summary,
    kind_of,
)
from modelyard.monitoring.nulls import DEFAULT_TABLES, HOLDOUT_SHARE, NullTables, Shape
from modelyard.monitoring.weighted import WeightedItems


@dataclass(frozen=True)
class Threshold:
    """A calibrated threshold: a score above ``value`` is drift at false-alarm rate ``alpha``.

    ``value`` is ``max(calibrated quantile, min_effect)``; ``method`` is the configured method
    that was calibrated and must score; ``k`` and ``reference_k`` are the smallest KLL sizes of
    the current and reference sketches it holds for; ``scheme`` is how chunks were drawn.
    """

    value: float
    alpha: float
    window_rows: int
    n_boot: int
    method: DriftMethod
    seed: int
    k: int = 200
    reference_k: int = 200
    min_effect: float = 0.0
    scheme: str = "holdout"


@dataclass(frozen=True)
class DriftResult:
    """One column's verdict, as the report's JSON shows it."""

    method: str
    score: float
    threshold: float
    drift_detected: bool


def _safe_score(method: DriftMethod, reference: WeightedItems, current: WeightedItems) -> float:
    # A chunk of an almost-empty column may hold no value at all: no evidence of drift.
    return 0.0 if reference.is_empty() or current.is_empty() else method.score(reference, current)


def _numerical_null(
    values: NDArray[np.float64], method: DriftMethod, rows: int, n_boot: int,
    k: tuple[int, int], seed: int, tables: NullTables,
) -> tuple[list[float], str]:
    """Null scores and the scheme; ``k`` is the KLL size of the (reference, current) sketches.

    The draws come from a table of sketched ranks (:mod:`~modelyard.monitoring.nulls`) read
    through this column's sorted finite values.
    """
    finite = values[np.isfinite(values)]
    size, window = finite.size, rows
    if size < values.size:
        # Tables are shared by shape, so a column with missing values is calibrated at its
        # finite share rounded down to eighths: the reference sample and the windows shrink
        # alike, which can only raise the threshold (fewer values, more noise).
        share = size / values.size
        share = math.floor(share * 8) / 8 if share >= 1 / 8 else share
        size = min(size, max(1, math.floor(share * values.size)))
        window = max(1, round(share * rows))
        finite = np.random.default_rng(seed).choice(finite, size, replace=False)
    table = tables.get(Shape.of(size, window, n_boot, k[1], k[0], seed))
    ordered = np.sort(finite)
    merged = table.merged(ordered) if method.merges else None
    if merged is not None:  # every pair in one pass (KS, Wasserstein)
        return method._compare_merged(merged).tolist(), table.shape.scheme
    scores = [_safe_score(method, ref, cur) for ref, cur in table.pairs(ordered)]
    return scores, table.shape.scheme


def _categorical_null(
    counts: NDArray[np.int64], method: DriftMethod, rows: int, n_boot: int, rng: np.random.Generator
) -> list[float]:
    """``counts`` ends with the number of missing rows, which take space but are no category."""
    size, scores = int(counts.sum()), list[float]()
    for _ in range(n_boot):
        if rows * HOLDOUT_SHARE <= size:
            chunk = rng.multivariate_hypergeometric(counts, rows)
            reference = counts - chunk
        else:
            shares = counts / size
            reference, chunk = rng.multinomial(size, shares), rng.multinomial(rows, shares)
        ref, cur = reference[:-1].astype(np.float64), chunk[:-1].astype(np.float64)
        scores.append(method._compare_counts(ref, cur) if ref.sum() and cur.sum() else 0.0)
    return scores


def _category_counts(array: NDArray[Any]) -> NDArray[np.int64]:
    """Counts per category (any order), then the number of missing rows (None, NaN, NA)."""
    series = pd.Series(array, copy=False)
    missing = series.isna().to_numpy() if array.dtype.kind in "Of" else np.zeros(len(series), bool)
    labels = series[~missing].astype(str)
    if labels.empty:
        raise InvalidInput("the reference column has no non-missing values")
    counts = labels.value_counts(sort=False).sort_index().to_numpy()  # as np.unique orders
    return np.append(counts, np.count_nonzero(missing)).astype(np.int64)


def _resolve(method: str | DriftMethod) -> DriftMethod:
    if isinstance(method, DriftMethod):
        return method
    if method not in METHODS:
        raise InvalidInput(f"unknown drift method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method]()


def _order(alpha: float, n_boot: int) -> int:
    """Which smallest score is the threshold: ⌈(1 - alpha)(B + 1)⌉, robust to rounding."""
    return math.ceil((1 - alpha) * (n_boot + 1) - 1e-9)


def _check(window_rows: int, alpha: float, n_boot: int, k: int, min_effect: float) -> None:
    def is_int(value: object) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not is_int(window_rows) or window_rows < 1:
        raise InvalidInput(f"window_rows must be a positive integer, not {window_rows!r}")
    if not 0 < alpha < 1:
        raise InvalidInput(f"alpha must be between 0 and 1, not {alpha!r}")
    if not is_int(n_boot) or _order(alpha, n_boot) > n_boot:
        needed = math.ceil(1 / alpha - 1)
        raise InvalidInput(f"n_boot={n_boot!r} cannot resolve alpha={alpha}; use at least {needed}")
    if not is_int(k) or not 8 <= k <= 65535:
        raise InvalidInput(f"k must be an integer between 8 and 65535, not {k!r}")
    if not math.isfinite(min_effect) or min_effect < 0:
        raise InvalidInput(f"min_effect must be a non-negative number, not {min_effect!r}")


def calibrate(
    reference: NDArray[Any] | Sequence[Any],
    method: str | DriftMethod,
    window_rows: int,
    alpha: float = 0.01,
    n_boot: int = 200,
    seed: int = 0,
    k: int = 200,
    min_effect: float = 0.0,
    reference_k: int | None = None,
    tables: NullTables | None = None,
) -> Threshold:
    """Calibrate ``method``'s threshold for windows of ``window_rows`` rows from the reference.

    Parameters
    ----------
    reference
        The reference column: numbers (NaN and ±inf are rows without a value, as in a profile)
        or categories (strings, booleans or objects; ``None``/NaN are missing).
    method
        A name from :data:`~modelyard.monitoring.drift.METHODS` or a configured method.
    window_rows
        Rows in the live windows the threshold is for (a smaller window raises false alarms;
        a larger one is only less sensitive).
    alpha
        False-alarm rate per column and window.
    n_boot, seed
        Bootstrap chunks and the seed that draws them; ``n_boot`` must be at least 1/alpha - 1.
    k
        The KLL ``k`` of the live window sketches.
    min_effect
        A score below which a significant shift is not called drift.
    reference_k
        The KLL ``k`` of the reference sketch, if larger than ``k``.
    tables
        Where numerical null tables are kept (:class:`~modelyard.monitoring.nulls.NullTables`);
        by default the process's in-memory tables.

    Returns
    -------
    Threshold

    Notes
    -----
    The module docstring describes the null distribution and its limits.

    Examples
    --------
    >>> column = np.random.default_rng(0).choice(["a", "b", "c"], 5000)
    >>> threshold = calibrate(column, "chisquare", 500, n_boot=999, seed=4)
    >>> threshold.scheme, round(threshold.value, 1)  # the chi-square(2) 99 % point is 9.21
    ('holdout', 9.3)
    """
    drift = _resolve(method)
    reference_k = k if reference_k is None else reference_k
    _check(window_rows, alpha, n_boot, k, min_effect)
    _check(window_rows, alpha, n_boot, reference_k, min_effect)
    array = np.asarray(reference)
    if array.ndim != 1 or array.size == 0:
        raise InvalidInput(f"the reference must be a non-empty column, not shape {array.shape}")
    kind = NUMERICAL if array.dtype.kind in "iuf" else CATEGORICAL
    if array.dtype.kind not in "iufOUSb":
        raise InvalidInput(f"cannot calibrate drift on a column of dtype {array.dtype}")
    if kind not in drift.kinds:
        supported = " and ".join(sorted(drift.kinds))
        raise InvalidInput(f"{drift.name} compares {supported} columns; this column is {kind}")
    rng = np.random.default_rng(seed)
    if kind == NUMERICAL:
        values = array.astype(np.float64)
        if not np.isfinite(values).any():
            raise InvalidInput("the reference column has no finite values")
        scores, scheme = _numerical_null(values, drift, window_rows, n_boot, (reference_k, k),
                                         seed, DEFAULT_TABLES if tables is None else tables)
    else:
        counts = _category_counts(array)
        scores = _categorical_null(counts, drift, window_rows, n_boot, rng)
        scheme = "holdout" if window_rows * HOLDOUT_SHARE <= counts.sum() else "bootstrap"
    calibrated = sorted(scores)[_order(alpha, n_boot) - 1]
    return Threshold(
        value=max(calibrated, float(min_effect)), alpha=alpha, window_rows=int(window_rows),
        n_boot=int(n_boot), method=drift, seed=seed, k=int(k), reference_k=int(reference_k),
        min_effect=float(min_effect), scheme=scheme,
    )


def column_drift(reference: Summary, current: Summary, threshold: Threshold) -> DriftResult:
    """Score ``current`` against ``reference`` with the calibrated method and threshold.

    Drift is a score strictly above the threshold. Sketches with a smaller ``k`` than the
    calibration's have a larger error than the threshold allows for, and are refused.

    >>> threshold = Threshold(0.1, 0.01, 1000, 200, METHODS["linf"](), seed=0)
    >>> column_drift({"a": 500, "b": 500}, {"a": 300, "b": 700}, threshold)
    DriftResult(method='linf', score=0.2, threshold=0.1, drift_detected=True)
    """
    sides = (("reference", reference, threshold.reference_k), ("current", current, threshold.k))
    for side, summary, k in sides:
        if kind_of(summary, side) == NUMERICAL and getattr(summary, "k", k) < k:
            raise InvalidInput(
                f"the {side} sketch has k={getattr(summary, 'k', '?')} but the threshold was "
                f"calibrated for k={k}; recalibrate or sketch with a larger k"
            )
    score = threshold.method.score(reference, current)
    return DriftResult(threshold.method.name, score, threshold.value, score > threshold.value)


def dataset_drift(results: Iterable[DriftResult], share: float = 0.5) -> tuple[bool, float]:
    """Dataset drift: whether at least ``share`` of the columns drifted, and the drifted share.

    >>> dataset_drift([DriftResult("ks", 0.3, 0.1, True), DriftResult("ks", 0.0, 0.1, False)])
    (True, 0.5)
    """
    flags = [result.drift_detected for result in results]
    if not flags:
        raise InvalidInput("dataset drift needs at least one column")
    if not 0 < share <= 1:
        raise InvalidInput(f"share must be in (0, 1], not {share!r}")
    drifted = sum(flags) / len(flags)
    return drifted >= share, drifted
