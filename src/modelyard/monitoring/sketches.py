"""Mergeable summaries of one column, built on Apache DataSketches.

A :class:`NumericSketch` keeps exact counts, extremes and moments plus a KLL quantile sketch
(Karnin, Lang & Liberty 2016); a :class:`CategoricalSketch` keeps frequent items with counts
(Misra-Gries, as in Anderson et al. 2017) and a HyperLogLog distinct count (Flajolet et al.
2007). Both follow one contract: ``update(values)`` and ``merge(other)`` return ``self``,
``result()`` gives a frozen summary, ``to_bytes()``/``from_bytes()`` round-trip exactly.

KLL compacts with random coin flips that DataSketches does not let Python seed: two sketches of
the same data agree on counts, extremes and moments exactly and on quantiles within
:attr:`NumericSketch.rank_error` (exactly while at most ``k`` values were seen).
"""

from __future__ import annotations

import math
import random
import struct
import threading
from dataclasses import dataclass
from typing import Any, Self

import datasketches as ds  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import numpy.typing as npt

from modelyard.errors import InvalidInput
from modelyard.monitoring._tables import as_floats, check_int, corrupt, pack, unpack, value_counts

OTHER = "__other__"
_SCRATCH = threading.local()  # one float buffer per thread, grown to the largest batch
_SCRATCH_MAX = 1 << 20  # items (8 MB) a thread keeps between updates at most
QUANTILE_RANKS = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
_NUMERIC = struct.Struct("<5Q4d")
_CATEGORICAL = struct.Struct("<2Q2BQ")


@dataclass(frozen=True)
class NumericSummary:
    """What a :class:`NumericSketch` knows about a numeric column.

    ``count`` counts every value; ``missing`` the None/NaN/null ones (pandas and CSV cannot tell
    them apart, so neither does a profile); ``pos_inf``/``neg_inf`` the infinite ones. ``min``,
    ``max``, ``mean``, ``std`` (sample, ``ddof=1``) and ``quantiles`` (rank → value, at
    :data:`QUANTILE_RANKS`) describe the finite values and are None/empty without any.
    """

    count: int
    missing: int
    pos_inf: int
    neg_inf: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    quantiles: dict[float, float]

    @property
    def finite(self) -> int:
        return self.count - self.missing - self.pos_inf - self.neg_inf


class NumericSketch:
    """Counts, extremes, moments and a KLL quantile sketch of a numeric column.

    Parameters
    ----------
    k : KLL accuracy; ``k = 200`` gives a normalized rank error of about 1.3% (99% confidence).

    Examples
    --------
    >>> import numpy as np
    >>> a = NumericSketch().update(np.array([1.0, 2.0, np.nan, np.inf]))
    >>> b = NumericSketch().update([3.0, 4.0])
    >>> summary = a.merge(b).result()
    >>> summary.count, summary.missing, summary.pos_inf, summary.mean, summary.quantiles[0.5]
    (6, 1, 1, 2.5, 2.0)
    >>> a.cdf([2.0, 3.5]).tolist()
    [0.5, 0.75]
    >>> NumericSketch.from_bytes(a.to_bytes()).result() == summary
    True
    """

    _MAGIC = b"MYNUMS"

    def __init__(self, k: int = 200) -> None:
        self.k = check_int("k", k, 8, 65535)
        self._kll = ds.kll_doubles_sketch(k)
        self._coarse: Any = None  # values of weight 2**_LEVELS not yet in _kll (feed_sorted)
        self._count = self._missing = self._pos_inf = self._neg_inf = self._finite = 0
        self._mean = self._m2 = 0.0
        self._min, self._max = math.inf, -math.inf

    def __repr__(self) -> str:
        return f"NumericSketch(k={self.k}, count={self._count})"

    @property
    def kll(self) -> Any:
        """The ``datasketches.kll_doubles_sketch`` of the finite values."""
        return self._settled()

    @property
    def n(self) -> int:
        """How many finite values the quantile sketch has seen."""
        return int(self._settled().n)

    @property
    def rank_error(self) -> float:
        """KLL's normalized rank error (single-sided, 99% confidence) for cdf and quantiles."""
        return float(self._settled().normalized_rank_error(False))

    def _settled(self) -> Any:
        """The KLL sketch with the coarse values folded in: each of weight ``2**_LEVELS``, so
        merged that many times over (a sketch merged with a copy of itself holds every value
        twice — KLL's own way of weighing them)."""
        coarse = self._coarse
        if coarse is not None:
            for _ in range(_LEVELS):
                coarse.merge(ds.kll_doubles_sketch.deserialize(coarse.serialize()))
            self._kll.merge(coarse)
            self._coarse = None
        return self._kll

    def update(self, values: Any) -> Self:
        """Add values (numpy array, pandas Series, Arrow array or a sequence), vectorised.

        The common case — every value finite — copies the values into one reused scratch buffer,
        sums them, sorts the copy in runs for the KLL sketch (see :func:`feed_sorted`), then
        centres it in place for the sum of squares; the extremes come from the sorted runs.
        Other batches take the masked path. A float32 array (a served FP32 tensor's column) is
        sorted before it is widened: numpy sorts 4,000 float32 values in ~11 ns a value against
        ~21 for float64 (AMD EPYC, numpy 2.4), and widening keeps every value and their order.
        """
        narrow = type(values) is np.ndarray and values.dtype == np.float32 and values.ndim == 1
        x = values if narrow else as_floats(values)
        total = x.size
        if total == 0:
            return self
        work = _scratch(total)
        if narrow:  # sorted as float32 (twice as fast), then widened exactly: the same order
            half = _scratch(total, np.float32)
            np.copyto(half, x)
            _sort_runs(half)
            np.copyto(work, half)
        else:
            np.copyto(work, x)  # DataSketches takes only contiguous, writeable arrays
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, or a sum past 1e308
            mean = float(work.sum()) / total
        if math.isfinite(mean):
            # sorted in runs, so the runs' ends are the extremes
            self._coarse = feed_sorted(self._kll, work, self._coarse, self.k, sorted_=narrow)
            step = _run_length(total)
            low = float(work[::step].min())
            high = max(float(work[step - 1::step].max()), float(work[-1]))
            work -= mean
            self._count += total
            self._add_moments(total, mean, float(work @ work), low, high)
            return self
        if narrow:
            x = as_floats(x)
        finite = np.isfinite(x)
        n = int(np.count_nonzero(finite))
        if n < total:
            nan = int(np.count_nonzero(np.isnan(x)))
            pos_inf = int(np.count_nonzero(x == np.inf))
            self._missing += nan
            self._pos_inf += pos_inf
            self._neg_inf += total - n - nan - pos_inf
            x = x[finite]
        self._count += total
        if n:
            # Our own copy, to sort for the sketch: ``x[finite]`` already is one; a batch whose
            # finite values overflowed the sum may still be the caller's array.
            x = np.array(x, dtype=np.float64) if n == total else x
            low, high = float(x.min()), float(x.max())
            scale = max(abs(low), abs(high)) or 1.0
            with np.errstate(over="ignore", invalid="ignore"):  # squares past 1e308 are inf
                mean = float((x / scale).mean()) * scale  # a sum past 1e308 would be inf
                centred = x - mean
                self._add_moments(n, mean, float(centred @ centred), low, high)
            self._coarse = feed_sorted(self._kll, x, self._coarse, self.k)
        return self

    def _add_moments(self, n: int, mean: float, m2: float, low: float, high: float) -> None:
        """Chan, Golub & LeVeque (1979): pooled mean and sum of squared deviations."""
        if n == 0:
            return
        if self._finite == 0:
            self._mean, self._m2 = mean, m2
        else:
            total = self._finite + n
            delta = mean - self._mean
            self._mean += delta * n / total
            self._m2 += m2 + delta * delta * self._finite * n / total
        self._finite += n
        self._min, self._max = min(self._min, low), max(self._max, high)

    def merge(self, other: NumericSketch) -> Self:
        """Fold ``other`` in, as if its values had been passed to :meth:`update`."""
        if not isinstance(other, NumericSketch):
            raise InvalidInput(f"a NumericSketch cannot merge a {type(other).__name__}")
        if other is self:
            other = NumericSketch.from_bytes(other.to_bytes())
        self._settled().merge(other._settled())
        self._count += other._count
        self._missing += other._missing
        self._pos_inf += other._pos_inf
        self._neg_inf += other._neg_inf
        self._add_moments(other._finite, other._mean, other._m2, other._min, other._max)
        return self

    def result(self) -> NumericSummary:
        n = self._finite
        ranks = self.quantiles(QUANTILE_RANKS).tolist() if n else []
        return NumericSummary(
            count=self._count, missing=self._missing,
            pos_inf=self._pos_inf, neg_inf=self._neg_inf,
            min=self._min if n else None, max=self._max if n else None,
            mean=self._mean if n else None,
            std=math.sqrt(self._m2 / (n - 1)) if n > 1 else None,
            quantiles=dict(zip(QUANTILE_RANKS, ranks, strict=False)),
        )

    def cdf(self, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Share of finite values ≤ each point, within :attr:`rank_error`; NaN when empty."""
        at = np.asarray(points, dtype=np.float64)
        if at.ndim != 1 or np.isnan(at).any():
            raise InvalidInput("cdf points must be a 1-D array of numbers, without NaN")
        kll = self._settled()
        if kll.is_empty():
            return np.full(at.shape, np.nan)
        split, where = np.unique(at, return_inverse=True)
        ranks = np.asarray(kll.get_cdf(split.tolist(), True), dtype=np.float64)
        return ranks[:-1][where]

    def quantiles(self, ranks: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The values at normalized ranks in [0, 1] (inclusive: the smallest x with
        cdf(x) ≥ rank), within :attr:`rank_error`; NaN when empty."""
        at = np.asarray(ranks, dtype=np.float64)
        if at.ndim != 1 or not ((at >= 0.0) & (at <= 1.0)).all():
            raise InvalidInput("quantile ranks must be a 1-D array of numbers from 0 to 1")
        kll = self._settled()
        if kll.is_empty():
            return np.full(at.shape, np.nan)
        found = np.asarray(kll.get_quantiles(at.tolist(), True), dtype=np.float64)
        # the extremes are exact here, while values compacted away may have held them in KLL
        return np.where(at == 0.0, self._min, np.where(at == 1.0, self._max, found))

    def to_bytes(self) -> bytes:
        fields = _NUMERIC.pack(
            self._count, self._missing, self._pos_inf, self._neg_inf, self._finite,
            self._mean, self._m2, self._min, self._max,
        )
        return pack(self._MAGIC, fields + bytes(self._settled().serialize()))

    @classmethod
    def from_bytes(cls, data: bytes) -> NumericSketch:
        payload = unpack(data, cls._MAGIC, "numeric sketch")
        try:
            fields = _NUMERIC.unpack_from(payload)
            kll = ds.kll_doubles_sketch.deserialize(payload[_NUMERIC.size :])
            if int(kll.n) != fields[4]:
                raise ValueError("its quantile sketch disagrees with its counts")
        except Exception as error:
            raise corrupt("numeric sketch", error) from None
        sketch = cls(int(kll.k))
        sketch._kll = kll
        sketch._count, sketch._missing, sketch._pos_inf, sketch._neg_inf = fields[:4]
        sketch._finite, sketch._mean, sketch._m2, sketch._min, sketch._max = fields[4:]
        return sketch


_RUN = 4096
_LEVELS = 2  # a full run goes to KLL as every 4th of its values, each of weight 4
_COIN = random.Random()


def feed_sorted(kll: Any, work: npt.NDArray[np.float64], coarse: Any = None,
                k: int = 200, sorted_: bool = False) -> Any:
    """Sort ``work`` in place in runs of at most 4,096 and hand it to the KLL sketch ``kll``;
    returns the sketch of coarse values (``coarse``, or a new one) that the caller must fold
    into ``kll``, each value ``2**_LEVELS`` times, before reading it
    (``NumericSketch._settled``).

    KLL's error bound holds for any order of the stream, and its compactions sort their buffer:
    on runs already sorted (numpy's SIMD sort: ~3 ns a value on one host, 11 to 21 on another)
    the sketch takes ~10 ns a value instead of ~26. In a batch of 4,096 values or more (cut in
    runs of equal length, 2,048 to 4,096), each run is then compacted here the way KLL
    compacts its own buffers: every other value from a random start, twice, so a quarter of
    its values reach the sketch, each standing for four (a batch of 1M values: 19 → 12 ns a
    value). Each such compaction moves any rank by at most 3 values of the run's 2,048 or
    more, up or down with equal odds, against KLL's own ~1.3% of all values. Smaller batches
    are not compacted here.

    The order and the compaction change the error a little: the mean over 10 sketches of the
    largest rank error at 99 quantiles of a normal sample, fed in batches of 6,000, is 0.0053
    (sorted runs) and 0.0047 (sorted and compacted runs) for 100k values, 0.0061 and 0.0054 for
    1M; stream order gave 0.0069 for 100k. The null tables (:mod:`~modelyard.monitoring.nulls`)
    keep simulating stream order: a simulation fed in sorted runs at a 100k-row sample is
    quieter than a real 1M-row profile, and set thresholds that flagged three unshifted columns
    in two benchmark runs. ``work`` must be ours to reorder; ``sorted_`` says its runs are
    sorted already (:func:`_sort_runs`).
    """
    step = _run_length(work.size)
    for start in range(0, work.size, step):
        run = work[start:start + step]
        if not sorted_:
            run.sort()
        if work.size < _RUN:
            kll.update(run)
            continue
        cut = run.size - run.size % (1 << _LEVELS)
        if cut < run.size:
            kll.update(run[cut:])
        picks = _COIN.getrandbits(_LEVELS)
        for level in range(_LEVELS):
            run = run[(picks >> level) & 1:cut:2]
            cut = run.size
        if coarse is None:
            coarse = ds.kll_doubles_sketch(k)
        coarse.update(np.ascontiguousarray(run))
    return coarse


def _run_length(size: int) -> int:
    """The length of :func:`feed_sorted`'s runs for a batch of ``size`` values: equal runs of
    at most ``_RUN`` (the last one may be shorter)."""
    runs = max(1, -(-size // _RUN))
    return max(1, -(-size // runs))


def _sort_runs(values: npt.NDArray[Any]) -> None:
    """Sort ``values`` in place in :func:`feed_sorted`'s runs."""
    step = _run_length(values.size)
    for start in range(0, values.size, step):
        values[start:start + step].sort()


def _scratch(size: int, dtype: type[np.floating[Any]] = np.float64) -> npt.NDArray[Any]:
    """A writeable buffer of ``size`` items (float64 or float32), reused by every update on
    this thread (a fresh 2 MB array per column and batch costs page faults, not just a
    copy)."""
    if size > _SCRATCH_MAX:  # a one-off huge batch gets its own array, not a kept one
        return np.empty(size, dtype=dtype)
    name = "buffer" if dtype is np.float64 else "narrow"
    buffer: npt.NDArray[Any] | None = getattr(_SCRATCH, name, None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(max(size, 1024), dtype=dtype)
        setattr(_SCRATCH, name, buffer)
    return buffer[:size]


@dataclass(frozen=True)
class CategoricalSummary:
    """What a :class:`CategoricalSketch` knows about a categorical column.

    ``counts`` maps each frequent label to its count (a lower bound, at most ``count_error``
    below the truth; exact while ``count_error`` is 0), the rest pooled under ``"__other__"``,
    so the counts add up to ``count - missing``. ``distinct`` is exact while ``count_error`` is
    0 and a HyperLogLog estimate after that.
    """

    count: int
    missing: int
    distinct: float
    counts: dict[str, float]
    count_error: float


class CategoricalSketch:
    """Frequent items with counts, a distinct count, and exact totals of a categorical column.

    Values become labels with ``str`` (``1.0`` reads as ``1``); None, NaN and nulls are
    missing. Each call counts its values with pandas or Arrow first and feeds the sketches
    one weighted update per distinct label, so its cost grows with the labels, not the rows.

    Parameters
    ----------
    lg_max_k : log2 of the frequent-items map size; up to 0.75 * 2**lg_max_k labels are
        counted exactly, beyond that counts are within ``3.5 / 2**lg_max_k`` of the total.
    lg_k_hll : log2 of the HyperLogLog registers (relative error about ``1.04 / 2**(lg/2)``).

    Examples
    --------
    >>> a = CategoricalSketch().update(["red", "blue", "red", None])
    >>> b = CategoricalSketch().update(["green", "red"])
    >>> summary = a.merge(b).result()
    >>> summary.counts, summary.missing, summary.distinct
    ({'red': 3.0, 'blue': 1.0, 'green': 1.0}, 1, 3.0)
    >>> CategoricalSketch.from_bytes(a.to_bytes()).result() == summary
    True
    """

    _MAGIC = b"MYCATS"

    def __init__(self, lg_max_k: int = 10, lg_k_hll: int = 12) -> None:
        self.lg_max_k = check_int("lg_max_k", lg_max_k, 3, 26)
        self.lg_k_hll = check_int("lg_k_hll", lg_k_hll, 4, 21)
        self._items = ds.frequent_strings_sketch(lg_max_k)
        self._hll = ds.hll_sketch(lg_k_hll, ds.tgt_hll_type.HLL_4)
        self._count = self._missing = 0

    def __repr__(self) -> str:
        return f"CategoricalSketch(lg_max_k={self.lg_max_k}, count={self._count})"

    @property
    def items(self) -> Any:
        """The ``datasketches.frequent_strings_sketch`` of the labels."""
        return self._items

    @property
    def hll(self) -> Any:
        """The ``datasketches.hll_sketch`` of the labels."""
        return self._hll

    def update(self, values: Any) -> Self:
        """Add values (numpy array, pandas Series, Arrow array or a sequence)."""
        rows, missing, labels, weights = value_counts(values)
        for label, weight in zip(labels, weights, strict=True):
            self._items.update(label, weight)
            self._hll.update(label)
        self._count += rows
        self._missing += missing
        return self

    def merge(self, other: CategoricalSketch) -> Self:
        """Fold ``other`` in, as if its values had been passed to :meth:`update`."""
        if not isinstance(other, CategoricalSketch):
            raise InvalidInput(f"a CategoricalSketch cannot merge a {type(other).__name__}")
        if other is self:
            other = CategoricalSketch.from_bytes(other.to_bytes())
        self._items.merge(other._items)
        union = ds.hll_union(self.lg_k_hll)
        union.update(self._hll)
        union.update(other._hll)
        self._hll = union.get_result(ds.tgt_hll_type.HLL_4)
        self._count += other._count
        self._missing += other._missing
        return self

    def _frequent(self) -> tuple[list[tuple[str, int]], int]:
        """Every label the sketch tracks with its guaranteed count, and the bound on the rest."""
        rows = self._items.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        found = sorted(((str(row[0]), int(row[2])) for row in rows), key=lambda p: (-p[1], p[0]))
        return found, int(rows[0][3] - rows[0][2]) if rows else 0

    @property
    def count_error(self) -> float:
        """How far below the truth a count may be (0 while every label is counted exactly)."""
        return float(self._frequent()[1])

    def counts(self) -> dict[str, float]:
        """Counts of the frequent labels, the rest under ``"__other__"``; they add up to the
        non-missing values."""
        return self._counts(self._frequent()[0])

    def _counts(self, found: list[tuple[str, int]]) -> dict[str, float]:
        counts = {label: float(weight) for label, weight in found}
        rest = self._count - self._missing - sum(weight for _, weight in found)
        if rest > 0:
            counts[OTHER] = counts.get(OTHER, 0.0) + float(rest)
        return counts

    def distinct(self) -> float:
        """Distinct labels: exact while every label is tracked, else HyperLogLog's estimate."""
        return self._distinct(*self._frequent())

    def _distinct(self, found: list[tuple[str, int]], error: int) -> float:
        return float(len(found)) if error == 0 else float(self._hll.get_estimate())

    def result(self) -> CategoricalSummary:
        found, error = self._frequent()
        return CategoricalSummary(
            count=self._count, missing=self._missing, distinct=self._distinct(found, error),
            counts=self._counts(found), count_error=float(error),
        )

    def to_bytes(self) -> bytes:
        items = bytes(self._items.serialize())
        sizes = (self.lg_max_k, self.lg_k_hll, len(items))
        fields = _CATEGORICAL.pack(self._count, self._missing, *sizes)
        return pack(self._MAGIC, fields + items + bytes(self._hll.serialize_compact()))

    @classmethod
    def from_bytes(cls, data: bytes) -> CategoricalSketch:
        payload = unpack(data, cls._MAGIC, "categorical sketch")
        try:
            count, missing, lg_max_k, lg_k_hll, size = _CATEGORICAL.unpack_from(payload)
            start = _CATEGORICAL.size
            items = ds.frequent_strings_sketch.deserialize(payload[start : start + size])
            hll = ds.hll_sketch.deserialize(payload[start + size :])
            sketch = cls(lg_max_k, lg_k_hll)
        except Exception as error:
            raise corrupt("categorical sketch", error) from None
        sketch._items, sketch._hll, sketch._count, sketch._missing = items, hll, count, missing
        return sketch
