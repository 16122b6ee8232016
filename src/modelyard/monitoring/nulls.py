"""Null tables: what a numerical method scores when nothing changed, simulated once per shape.

A KLL sketch only ever compares its items; it never reads their values. Sketching a column's
values is therefore the same as sketching their *ranks* and reading each retained rank back as
the value of that rank: ``sketch(v[r]) == v[sketch(r)]`` item for item, ties included (equal
values are interchangeable in a compaction). The null distribution a calibration needs (reference
and window sketches drawn from the reference sample, see :mod:`~modelyard.monitoring.calibration`)
so splits into:

1. a *table*, which depends only on the shape: ``n_boot`` pairs of (reference, window) sketches of
   ranks ``0 … size-1``, drawn by the holdout or bootstrap scheme; it costs one pass of KLL
   updates per pair (about 0.6 s for 200 pairs of a 100k-row sample) and is the same for every
   column and every reference of that shape;
2. per column, a lookup: the table's ranks index the column's sorted sample values, and the
   method scores the :class:`~modelyard.monitoring.weighted.WeightedItems` pairs (about 0.05 ms
   a pair), or, for KS and Wasserstein, all pairs at once (:meth:`NullTable.merged`: each
   pair's two sides merged in rank order, worked out once per table; 1 to 4 ms for 200 pairs
   against 6 to 18 ms one by one).

:class:`NullTables` keeps tables in memory (least recently used first out) and, given a
directory, on disk, so that a second report, a restarted monitor or another column of the same
shape reuses them. A table is a sample of the null, like the scores it replaces: KLL compacts
with a generator seeded from the clock, so two simulations of one shape differ by the Monte Carlo
error the calibration module documents, and a stored table makes repeated runs identical.

>>> tables = NullTables()
>>> table = tables.get(Shape("holdout", size=1_000, rows=100, n_boot=20, k=200, reference_k=200,
...                          seed=0))
>>> len(table), tables.simulated
(20, 1)
>>> reference, window = next(table.pairs(np.arange(1_000.0) / 1_000))
>>> reference.n, window.n
(900, 100)
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
from datasketches import kll_doubles_sketch  # type: ignore[import-untyped, unused-ignore]
from numpy.typing import NDArray

from modelyard.errors import InvalidInput
from modelyard.monitoring.weighted import MergedPairs, WeightedItems

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the simulation or the file layout changes
HOLDOUT_SHARE = 4  # windows up to 1/4 of the reference are held out; larger ones bootstrap


@dataclass(frozen=True)
class Shape:
    """What a table depends on: the scheme, the reference and window sizes, sketch sizes, draws.

    ``size`` counts the reference sample's finite values, ``rows`` a window's.
    """

    scheme: str
    size: int
    rows: int
    n_boot: int
    k: int
    reference_k: int
    seed: int

    @classmethod
    def of(cls, size: int, rows: int, n_boot: int, k: int, reference_k: int,
           seed: int) -> Shape:
        """The shape, with the scheme a reference of ``size`` and windows of ``rows`` call for."""
        scheme = "holdout" if rows * HOLDOUT_SHARE <= size else "bootstrap"
        return cls(scheme, size, rows, n_boot, k, reference_k, seed)

    @property
    def key(self) -> str:
        return "null-v{}-{}-n{}-w{}-b{}-k{}-r{}-s{}".format(FORMAT, *astuple(self))


class NullTable:
    """``n_boot`` (reference, window) pairs of sketched ranks, each sorted ascending."""

    def __init__(self, shape: Shape, arrays: dict[str, NDArray[np.int64]]) -> None:
        self.shape = shape
        self._arrays = arrays
        self._merged: _Merge | None = None  # (worked out on the first merged() call)
        self._merge_known = False
        self._merging = threading.Lock()

    def __len__(self) -> int:
        return len(self._arrays["ref_offsets"]) - 1

    def pairs(self, values: NDArray[np.float64]) -> Iterator[tuple[WeightedItems, WeightedItems]]:
        """Each pair with ranks read as ``values`` (the sorted sample, ``shape.size`` long)."""
        if values.shape != (self.shape.size,):
            raise InvalidInput(f"a table of {self.shape.size} ranks needs as many sorted values, "
                               f"not {values.shape}")
        a = self._arrays
        for i in range(len(self)):
            yield (_read(values, a["ref_items"], a["ref_weights"], a["ref_offsets"], i),
                   _read(values, a["cur_items"], a["cur_weights"], a["cur_offsets"], i))

    def merged(self, values: NDArray[np.float64]) -> MergedPairs | None:
        """All pairs at once with ranks read as ``values`` (as :meth:`pairs`), for the methods
        that score every pair in one pass; None when a pair has no item on one side.

        Where each rank goes, and the CDFs' difference along each pair, depend on the ranks
        only: they are worked out once per table and serve every column."""
        if values.shape != (self.shape.size,):
            raise InvalidInput(f"a table of {self.shape.size} ranks needs as many sorted values, "
                               f"not {values.shape}")
        with self._merging:
            if not self._merge_known:
                self._merged, self._merge_known = _Merge.of(self._arrays), True
        merge = self._merged
        if merge is None:
            return None
        return MergedPairs(
            items=values[merge.ranks], starts=merge.starts, pair=merge.pair,
            difference=merge.difference, ref_items=values[self._arrays["ref_items"]],
            ref_weights=merge.ref_weights, ref_pair=merge.ref_pair, ref_n=merge.ref_n)


@dataclass(frozen=True)
class _Merge:
    """What :meth:`NullTable.merged` needs of a table whatever the column (see there)."""

    ranks: NDArray[np.int64]
    starts: NDArray[np.int64]
    pair: NDArray[np.int64]
    difference: NDArray[np.float64]
    ref_weights: NDArray[np.float64]
    ref_pair: NDArray[np.int64]
    ref_n: NDArray[np.float64]

    @classmethod
    def of(cls, arrays: dict[str, NDArray[np.int64]]) -> _Merge | None:
        """None when a pair has no item on one side (its CDF would be undefined)."""
        count = len(arrays["ref_offsets"]) - 1
        sides = []
        for side in ("ref", "cur"):
            lengths = np.diff(arrays[f"{side}_offsets"])
            if not np.all(lengths > 0):
                return None
            sides.append((np.repeat(np.arange(count), lengths), lengths))
        (ref_pair, ref_lengths), (cur_pair, cur_lengths) = sides
        ref_weights, cur_weights = arrays["ref_weights"], arrays["cur_weights"]
        ref_n = np.bincount(ref_pair, ref_weights, count).astype(np.float64)
        cur_n = np.bincount(cur_pair, cur_weights, count)
        pair = np.concatenate([ref_pair, cur_pair])
        ranks = np.concatenate([arrays["ref_items"], arrays["cur_items"]])
        # by pair, then rank (a reference item before an equal current one: the difference
        # in between is never read, see MergedPairs)
        order = np.lexsort((ranks, pair))
        ranks, pair = ranks[order], pair[order]
        is_ref = order < len(ref_pair)
        weights = np.concatenate([ref_weights, cur_weights])[order]
        # each side's weight up to each position, from the pair's start (sums of integers:
        # exact, as the sketches' own ranks are)
        below_ref = np.cumsum(np.where(is_ref, weights, 0)) - np.repeat(
            np.cumsum(ref_n) - ref_n, ref_lengths + cur_lengths)
        below_cur = np.cumsum(np.where(is_ref, 0, weights)) - np.repeat(
            np.cumsum(cur_n) - cur_n, ref_lengths + cur_lengths)
        difference = below_ref / ref_n[pair] - below_cur / cur_n[pair]
        starts = np.concatenate([[0], np.cumsum(ref_lengths + cur_lengths)[:-1]])
        return cls(ranks, starts.astype(np.int64), pair, difference,
                   ref_weights.astype(np.float64), ref_pair, ref_n)


def _read(values: NDArray[np.float64], items: NDArray[np.int64], weights: NDArray[np.int64],
          offsets: NDArray[np.int64], i: int) -> WeightedItems:
    part = slice(offsets[i], offsets[i + 1])
    return WeightedItems(values[items[part]], weights[part].astype(np.float64))


def _sketch_ranks(ranks: NDArray[np.int64], k: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    sketch = kll_doubles_sketch(k)
    sketch.update(ranks.astype(np.float64))
    pairs = WeightedItems.of(sketch)
    return pairs.items.astype(np.int64), pairs.weights.astype(np.int64)


def simulate(shape: Shape) -> NullTable:
    """Draw the table: the schemes of :mod:`~modelyard.monitoring.calibration`, on ranks.

    The sample's rows are exchangeable, so the reference's stream order is a random permutation
    of the ranks; a held-out chunk is a stretch of it and the reference the rest, in order.
    """
    rng = np.random.default_rng(shape.seed)
    size, rows = shape.size, shape.rows
    refs: list[tuple[NDArray[np.int64], NDArray[np.int64]]] = []
    curs: list[tuple[NDArray[np.int64], NDArray[np.int64]]] = []
    if shape.scheme == "bootstrap":
        # Each resampled reference serves up to four windows, with at least 50 references so
        # that the reference's own noise is sampled as often as the holdout scheme samples it.
        per_round = max(1, shape.n_boot // 50)
        while len(curs) < shape.n_boot:
            reference = _sketch_ranks(rng.integers(0, size, size), shape.reference_k)
            for _ in range(min(per_round, shape.n_boot - len(curs))):
                refs.append(reference)
                curs.append(_sketch_ranks(rng.integers(0, size, rows), shape.k))
    else:
        # Up to a quarter of the reference is held out per round, so its sketch keeps >= 75 % of
        # the rows; at least 50 rounds so that the reference sketch's own error is sampled too.
        per_round = max(1, min(size // (HOLDOUT_SHARE * rows), shape.n_boot // 50))
        while len(curs) < shape.n_boot:
            chunks = min(per_round, shape.n_boot - len(curs))
            stream = rng.permutation(size)
            # One stream in the reference's own order, as a profile sketches it: a merge of chunk
            # sketches is more accurate than one stream and would set the threshold too low.
            reference = _sketch_ranks(stream[chunks * rows:], shape.reference_k)
            for part in np.split(stream[:chunks * rows], chunks):
                refs.append(reference)
                curs.append(_sketch_ranks(part, shape.k))
    arrays: dict[str, NDArray[np.int64]] = {}
    for side, sketches in (("ref", refs), ("cur", curs)):
        arrays[f"{side}_items"] = np.concatenate([items for items, _ in sketches])
        arrays[f"{side}_weights"] = np.concatenate([weights for _, weights in sketches])
        lengths = [len(items) for items, _ in sketches]
        arrays[f"{side}_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return NullTable(shape, arrays)


class NullTables:
    """Tables by shape: in memory (at most ``capacity``) and, with a ``directory``, on disk.

    Safe to share between threads. ``simulated`` counts tables drawn rather than found and
    ``simulated_seconds`` the time that took.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, capacity: int = 16) -> None:
        self.directory = None if directory is None else Path(directory)
        self.capacity = capacity
        self.simulated = 0
        self.simulated_seconds = 0.0
        self._tables: OrderedDict[Shape, NullTable] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, shape: Shape) -> NullTable:
        with self._lock:
            table = self._tables.get(shape)
            if table is None:
                table = self._load(shape)
            if table is None:
                start = time.perf_counter()
                table = simulate(shape)
                self.simulated += 1
                self.simulated_seconds += time.perf_counter() - start
                self._store(table)
            self._tables[shape] = table
            self._tables.move_to_end(shape)
            while len(self._tables) > self.capacity:
                self._tables.popitem(last=False)
            return table

    def _path(self, shape: Shape) -> Path | None:
        return None if self.directory is None else self.directory / f"{shape.key}.npz"

    def _load(self, shape: Shape) -> NullTable | None:
        path = self._path(shape)
        if path is None or not path.exists():
            return None
        try:
            with np.load(path) as stored:
                return NullTable(shape, {name: stored[name] for name in stored.files})
        except (OSError, ValueError, KeyError) as error:
            log.warning("null table %s is unreadable (%s); drawing it again", path, error)
            return None

    def _store(self, table: NullTable) -> None:
        path = self._path(table.shape)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written aside and renamed, so a reader never sees half a table.
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as out:
                np.savez(out, allow_pickle=False, **table._arrays)
            os.replace(out.name, path)
        except OSError as error:
            log.warning("cannot keep null table %s: %s", path, error)


DEFAULT_TABLES = NullTables()
"""The process's tables when a caller passes none: in memory only."""
