"""A quantile sketch held as sorted items and their weights, read as a KLL sketch is read.

A KLL sketch answers every query from its retained items and their weights (a power of two per
level). :class:`WeightedItems` holds the same pairs in numpy arrays and answers ``get_cdf``,
``get_pmf`` and ``get_quantiles`` with the same inclusive/exclusive rules as
``datasketches.kll_doubles_sketch``, vectorised. The drift methods read it through the same
:class:`~modelyard.monitoring.drift.QuantileSketch` protocol; calibration builds thousands of them
from its null tables (:mod:`~modelyard.monitoring.nulls`), where calling the C++ sketch through
Python lists would cost more than the scores.

>>> from datasketches import kll_doubles_sketch
>>> sketch = kll_doubles_sketch(200); sketch.update(np.array([3.0, 1.0, 2.0, 2.0]))
>>> items = WeightedItems.of(sketch)
>>> items.get_cdf([2.0], True) == sketch.get_cdf([2.0], True)
True
>>> items.get_quantiles([0.5]), sketch.get_quantiles([0.5])
([2.0], [2.0])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
from numpy.typing import NDArray

from modelyard.errors import InvalidInput

Floats = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class WeightedItems:
    """Items in ascending order with their weights; ``n`` is the total weight.

    ``items`` must be sorted ascending (equal items may repeat, as in a KLL sketch's sorted
    view) and ``weights`` positive, of the same length.
    """

    items: Floats
    weights: Floats
    _cumulative: Floats = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.items.shape != self.weights.shape or self.items.ndim != 1:
            raise InvalidInput("items and weights must be two 1-d arrays of the same length")
        object.__setattr__(self, "_cumulative", np.cumsum(self.weights, dtype=np.float64))

    @classmethod
    def of(cls, sketch: Iterable[tuple[float, int]]) -> WeightedItems:
        """The items and weights a sketch retains (anything iterating ``(item, weight)``)."""
        pairs = np.fromiter(chain.from_iterable(sketch), dtype=np.float64).reshape(-1, 2)
        order = np.argsort(pairs[:, 0], kind="stable")
        items, weights = pairs[order, 0].copy(), pairs[order, 1].copy()
        total = getattr(sketch, "n", None)
        if isinstance(total, int) and items.size and weights.sum() != total:
            return cls._reweighed(sketch, items, total)
        return cls(items, weights)

    @classmethod
    def _reweighed(cls, sketch: object, items: Floats, total: int) -> WeightedItems:
        """Weights from the sketch's own ranks. DataSketches 5.2's iterator reports weight 1
        for every item of some merged KLL sketches (those whose lowest level is empty): their
        items then read as a sample drawn level by level, not as the stream. The ranks
        (``get_cdf``) stay right, and the weight of each distinct item is the step in them."""
        distinct = np.unique(items)
        ranks = np.asarray(sketch.get_cdf(distinct.tolist(), True),  # type: ignore[attr-defined]
                           dtype=np.float64)[:-1]
        cumulative = np.rint(ranks * total)
        return cls(distinct, np.diff(cumulative, prepend=0.0))

    @property
    def n(self) -> int:
        return int(self._cumulative[-1]) if self._cumulative.size else 0

    def is_empty(self) -> bool:
        return self.items.size == 0

    def __iter__(self) -> Iterator[tuple[float, int]]:
        return zip(self.items.tolist(), self.weights.astype(np.int64).tolist(), strict=True)

    def _mass_below(self, points: Floats, inclusive: bool) -> Floats:
        """Weight of the items below each point (at or below it when ``inclusive``)."""
        index = np.searchsorted(self.items, points, side="right" if inclusive else "left")
        below = np.zeros(index.shape, dtype=np.float64)
        taken = index > 0
        below[taken] = self._cumulative[index[taken] - 1]
        return below

    def cdf(self, points: Floats, inclusive: bool = True) -> Floats:
        """``P(X ≤ x)`` (``P(X < x)`` when not inclusive) at each point, as an array."""
        ranks: Floats = self._mass_below(points, inclusive) / self._cumulative[-1]
        return ranks

    def get_cdf(self, split_points: Sequence[float], inclusive: bool = False) -> list[float]:
        ranks = self.cdf(np.asarray(split_points, dtype=np.float64), inclusive)
        return [*ranks.tolist(), 1.0]

    def get_pmf(self, split_points: Sequence[float], inclusive: bool = False) -> list[float]:
        ranks = np.concatenate([[0.0], self.cdf(np.asarray(split_points, np.float64), inclusive),
                                [1.0]])
        return np.diff(ranks).tolist()  # type: ignore[no-any-return]

    def get_quantiles(self, ranks: Sequence[float], inclusive: bool = False) -> list[float]:
        """The item at each normalised rank, by the rule of DataSketches' sorted view."""
        wanted = np.asarray(ranks, dtype=np.float64) * self._cumulative[-1]
        if inclusive:
            index = np.searchsorted(self._cumulative, np.ceil(wanted), side="left")
        else:
            index = np.searchsorted(self._cumulative, wanted, side="right")
        return self.items[np.minimum(index, self.items.size - 1)].tolist()  # type: ignore[no-any-return]


Ints = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class MergedPairs:
    """Many (reference, current) pairs of weighted items, each pair's items of both sides in
    one ascending run and the pairs one after another: every pair's two step CDFs at once.

    KS and Wasserstein read a pair at the union of its two sides' items; here that union is
    laid out for all pairs, so a score over all of them is a few numpy passes rather than a
    Python call a pair (a calibration's 200 null pairs of one column: see
    :meth:`~modelyard.monitoring.nulls.NullTable.merged`).

    ``items``: the pairs' merged items; ``starts``: where each pair begins in them;
    ``pair``: each position's pair; ``difference``: ``F_ref - F_cur`` counting the pair's items
    up to and including each position (the CDFs' difference at that item when it is the last of
    its equal items); ``ref_items``, ``ref_weights``, ``ref_pair`` and ``ref_n``: the reference
    sides alone, for their moments. Every pair has items on both sides.
    """

    items: Floats
    starts: Ints
    pair: Ints
    difference: Floats
    ref_items: Floats
    ref_weights: Floats
    ref_pair: Ints
    ref_n: Floats

    @property
    def count(self) -> int:
        return len(self.starts)

    def gaps(self) -> Floats:
        """From each position's item to the next item of its pair (0 at each pair's end)."""
        gaps = np.zeros_like(self.items)
        gaps[:-1] = np.diff(self.items)
        gaps[self.starts[1:] - 1] = 0.0
        return gaps

    def sums(self, values: Floats) -> Floats:
        """Each pair's sum of ``values`` (one per merged position)."""
        return np.bincount(self.pair, weights=values, minlength=self.count).astype(np.float64)

    def maxima(self, values: Floats) -> Floats:
        """Each pair's largest of ``values`` (one per merged position)."""
        return np.maximum.reduceat(values, self.starts)

    def reference_moments(self) -> tuple[Floats, Floats]:
        """Each reference side's weighted mean and population standard deviation."""
        weights, pair = self.ref_weights, self.ref_pair
        mean = np.bincount(pair, weights * self.ref_items, self.count) / self.ref_n
        spread = np.bincount(pair, weights * (self.ref_items - mean[pair]) ** 2, self.count)
        return mean, np.sqrt(spread / self.ref_n)
