"""Profiles of whole tables: one mergeable sketch per column, the row count and the schema.

A profile is built chunk by chunk, so its memory does not grow with the table: a Parquet file
is read batch by batch, a CSV file ``chunk_rows`` lines at a time.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import struct
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, cast

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.monitoring._tables import (
    CATEGORICAL,
    FORMAT_VERSION,
    KINDS,
    NUMERICAL,
    PARQUET_SUFFIXES,
    Chunk,
    check_int,
    columns_of,
    corrupt,
    dtype_of,
    guarded,
    kind_of,
    open_source,
    pack,
    parquet_chunks,
    parquet_columns,
    rows_of,
    unpack,
    wider,
)
from modelyard.monitoring.sketches import (
    CategoricalSketch,
    CategoricalSummary,
    NumericSketch,
    NumericSummary,
)

Summary = NumericSummary | CategoricalSummary
_LENGTH = struct.Struct("<Q")


@dataclass
class ColumnProfile:
    """One column of a profile: name, kind (``numerical`` or ``categorical``), datatype by its
    Open Inference Protocol name (``FP64``, ``INT64``, ``BYTES`` …) and sketch."""

    name: str
    kind: str
    dtype: str
    sketch: NumericSketch | CategoricalSketch


class TableProfile:
    """Per-column sketches of a table, its row count and its schema; mergeable and versioned.

    Parameters
    ----------
    kinds : column name → ``"numerical"`` or ``"categorical"``, overriding the inference
        (numbers are numerical; booleans, strings, dates and the rest categorical).
    k : KLL accuracy of the numeric columns (see :class:`NumericSketch`).
    lg_max_k : frequent-items size of the categorical columns (see :class:`CategoricalSketch`).

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"age": [31, 45, None, 27], "plan": ["free", "pro", "free", None]})
    >>> profile = TableProfile().update(frame)
    >>> profile.rows, profile.schema
    (4, {'age': 'numerical', 'plan': 'categorical'})
    >>> summary = profile.result()
    >>> summary["age"].missing, summary["age"].max, summary["plan"].counts
    (1, 45.0, {'free': 2.0, 'pro': 1.0})
    >>> halves = TableProfile().update(frame.iloc[:2]).merge(TableProfile().update(frame.iloc[2:]))
    >>> halves.rows, halves.result()["plan"] == summary["plan"]
    (4, True)
    >>> TableProfile.from_bytes(profile.to_bytes()).result() == summary
    True
    """

    FORMAT_VERSION = FORMAT_VERSION
    _MAGIC = b"MYPROF"

    def __init__(
        self, kinds: Mapping[str, str] | None = None, k: int = 200, lg_max_k: int = 10
    ) -> None:
        self.kinds = dict(kinds or {})
        self.k = check_int("k", k, 8, 65535)
        self.lg_max_k = check_int("lg_max_k", lg_max_k, 3, 26)
        self._columns: list[ColumnProfile] | None = None
        self._rows = 0
        self._chunks = 0

    def __repr__(self) -> str:
        return f"TableProfile(rows={self._rows}, columns={len(self._columns or [])})"

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def chunks(self) -> int:
        """How many chunks were folded in (by :meth:`update`, directly or through merges)."""
        return self._chunks

    @property
    def columns(self) -> tuple[ColumnProfile, ...]:
        return tuple(self._columns or ())

    @property
    def schema(self) -> dict[str, str]:
        """Column name → kind, in table order."""
        return {column.name: column.kind for column in self._columns or ()}

    def __getitem__(self, name: str) -> ColumnProfile:
        for column in self._columns or ():
            if column.name == name:
                return column
        raise InvalidInput(f"the profile has no column {name!r}")

    def update(self, chunk: Chunk, between: Callable[[], object] | None = None) -> Self:
        """Add a chunk: a pandas DataFrame, a pyarrow Table or RecordBatch, a 2-D numpy array,
        or a dict of equally long 1-D numpy arrays by column name.

        ``between`` is called after each column. A background thread that shares a core with
        a server passes a call to ``os.sched_yield`` (the live collector's: at most every
        2 ms): the scheduler lets a thread that releases the GIL inside numpy run on for a
        whole time slice (a few ms), and the server waits that long for the core unless the
        thread gives it back between columns."""
        names, values = columns_of(chunk)
        if self._columns is None:
            self._columns = self._start(names, values)
        else:
            difference = _first_difference(
                [(column.name, "") for column in self._columns], [(name, "") for name in names]
            )
            if difference:
                raise InvalidInput(f"a chunk does not match the profile: {difference}")
        for column, data in zip(self._columns, values, strict=True):
            try:
                column.sketch.update(data)
            except InvalidInput as error:
                raise InvalidInput(f"column {column.name!r} is {column.kind}: {error}") from None
            column.dtype = wider(column.dtype, dtype_of(data))
            if between is not None:
                between()
        self._rows += rows_of(chunk)
        self._chunks += 1
        return self

    def _start(self, names: list[str], values: list[Any]) -> list[ColumnProfile]:
        if not names:
            raise InvalidInput("the table has no columns")
        unknown = [name for name in self.kinds if name not in names]
        if unknown:
            raise InvalidInput(f"kinds names columns the table lacks: {', '.join(unknown)}")
        for name, kind in self.kinds.items():
            if kind not in KINDS:
                raise InvalidInput(
                    f"the kind of column {name!r} must be 'numerical' or 'categorical', "
                    f"not {kind!r}"
                )
        columns = []
        for name, data in zip(names, values, strict=True):
            kind = self.kinds.get(name) or kind_of(data)
            columns.append(ColumnProfile(name, kind, dtype_of(data), self._sketch(kind)))
        return columns

    def _sketch(self, kind: str) -> NumericSketch | CategoricalSketch:
        return NumericSketch(self.k) if kind == NUMERICAL else CategoricalSketch(self.lg_max_k)

    def merge(self, other: TableProfile, *, union: bool = False) -> Self:
        """Fold ``other`` in; both must have the same column names, in order, and kinds.

        With ``union``, a column only one side has is kept, its values missing on the other
        side's rows (e.g. windows of requests that asked for different outputs).

        >>> import pandas as pd
        >>> a = TableProfile().update(pd.DataFrame({"x": [1.0, 2.0]}))
        >>> b = TableProfile().update(pd.DataFrame({"x": [3.0], "p": [0.5]}))
        >>> merged = a.merge(b, union=True)
        >>> merged.rows, merged.result()["p"].missing, merged.result()["x"].count
        (3, 2, 3)
        """
        if not isinstance(other, TableProfile):
            raise InvalidInput(f"a TableProfile cannot merge a {type(other).__name__}")
        if other is self:
            other = TableProfile.from_bytes(other.to_bytes())
        if other._columns is None:
            return self
        if union and self._columns is not None:
            names = {c.name for c in self._columns}
            for column in other._columns:
                if column.name not in names:
                    self._columns.append(self._missing_column(column, self._rows))
            other = other._aligned(self._columns)
        theirs_all = other.columns
        if self._columns is None:
            self._columns = [
                ColumnProfile(c.name, c.kind, c.dtype, self._sketch(c.kind)) for c in theirs_all
            ]
        difference = _first_difference(
            [(c.name, c.kind) for c in self._columns], [(c.name, c.kind) for c in theirs_all]
        )
        if difference:
            raise InvalidInput(f"cannot merge profiles of different schemas: {difference}")
        for mine, theirs in zip(self._columns, theirs_all, strict=True):
            if isinstance(mine.sketch, NumericSketch):  # the kinds agree, so the sketches do
                mine.sketch.merge(cast(NumericSketch, theirs.sketch))
            else:
                mine.sketch.merge(cast(CategoricalSketch, theirs.sketch))
            mine.dtype = wider(mine.dtype, theirs.dtype)
        self._rows += other._rows
        self._chunks += other._chunks
        return self

    def _missing_column(self, like: ColumnProfile, rows: int) -> ColumnProfile:
        sketch = self._sketch(like.kind)
        if rows:
            if isinstance(sketch, NumericSketch):
                sketch.update(np.full(rows, np.nan))
            else:
                sketch.update(np.full(rows, None, dtype=object))
        return ColumnProfile(like.name, like.kind, like.dtype, sketch)

    def _aligned(self, columns: list[ColumnProfile]) -> TableProfile:
        """A copy with exactly ``columns``' names, in their order; one it lacks is all missing."""
        copy = TableProfile.from_bytes(self.to_bytes())
        have = {c.name: c for c in copy._columns or ()}
        copy._columns = [have.get(c.name) or copy._missing_column(c, copy._rows)
                         for c in columns]
        return copy

    def result(self) -> dict[str, Summary]:
        """Column name → its summary, in table order."""
        return {column.name: column.sketch.result() for column in self._columns or ()}

    def to_bytes(self) -> bytes:
        columns = self._columns
        header = {
            "rows": self._rows, "chunks": self._chunks, "k": self.k, "lg_max_k": self.lg_max_k,
            "columns": None if columns is None else [[c.name, c.kind, c.dtype] for c in columns],
        }
        text = json.dumps(header).encode()
        parts = [_LENGTH.pack(len(text)), text]
        for column in columns or ():
            blob = column.sketch.to_bytes()
            parts += [_LENGTH.pack(len(blob)), blob]
        return pack(self._MAGIC, b"".join(parts))

    @classmethod
    def from_bytes(cls, data: bytes) -> TableProfile:
        """A profile from :meth:`to_bytes`; foreign, corrupt or too new data is InvalidInput."""
        payload = unpack(data, cls._MAGIC, "profile")
        try:
            blobs = _split(payload)
            header = json.loads(blobs.pop(0))
            profile = cls(k=int(header["k"]), lg_max_k=int(header["lg_max_k"]))
            profile._rows, profile._chunks = int(header["rows"]), int(header["chunks"])
            if header["columns"] is not None:
                profile._columns = [
                    ColumnProfile(str(name), kind, str(dtype), _read_sketch(kind, blob))
                    for (name, kind, dtype), blob in zip(header["columns"], blobs, strict=True)
                ]
                profile.kinds = profile.schema
        except Exception as error:
            raise corrupt("profile", error) from None
        return profile


def _split(payload: bytes) -> list[bytes]:
    blobs: list[bytes] = []
    at = 0
    while at < len(payload):
        (size,) = _LENGTH.unpack_from(payload, at)
        blobs.append(payload[at + _LENGTH.size : at + _LENGTH.size + size])
        at += _LENGTH.size + size
    if at != len(payload):
        raise ValueError("a part is cut short")
    return blobs


def _read_sketch(kind: str, blob: bytes) -> NumericSketch | CategoricalSketch:
    if kind == NUMERICAL:
        return NumericSketch.from_bytes(blob)
    if kind == CATEGORICAL:
        return CategoricalSketch.from_bytes(blob)
    raise ValueError(f"unknown column kind {kind!r}")


def _first_difference(mine: list[tuple[str, str]], theirs: list[tuple[str, str]]) -> str | None:
    """The first place two schemas (name, kind) differ, in words; None when they agree."""
    pairs = zip(mine, theirs, strict=False)
    for place, ((name, kind), (other_name, other_kind)) in enumerate(pairs, 1):
        if name != other_name:
            return f"column {place} is {name!r} in one and {other_name!r} in the other"
        if kind != other_kind:
            return f"column {name!r} is {kind} in one and {other_kind} in the other"
    if len(mine) != len(theirs):
        longer, where = (mine, "the first") if len(mine) > len(theirs) else (theirs, "the second")
        return f"column {longer[min(len(mine), len(theirs))][0]!r} is only in {where}"
    return None


def profile_table(
    source: Any,
    kinds: Mapping[str, str] | None = None,
    chunk_rows: int = 250_000,  # bounds peak memory to ~430 MB on 10M-row files
    k: int = 200,
    lg_max_k: int = 10,
    workers: int = 1,
) -> TableProfile:
    """Profile a table in chunks of at most ``chunk_rows`` rows, in bounded memory.

    ``source`` is a pandas DataFrame, a pyarrow Table, a 2-D numpy array (columns ``f0``,
    ``f1`` …) or the path of a Parquet file (read batch by batch) or a CSV file (read
    ``chunk_rows`` lines at a time). ``kinds`` overrides the inferred kind of named columns.

    ``workers`` > 1 profiles a Parquet file's columns in that many processes at once (this one
    and ``workers - 1`` forked ones, each reading only its columns; the parts are joined), for
    machines with cores to spare: sketching holds the GIL, so threads would not help. It forks,
    so call it from a command or a notebook, not from a threaded server. Other sources ignore it.

    >>> import numpy as np
    >>> profile = profile_table(np.arange(12.0).reshape(6, 2), chunk_rows=4)
    >>> profile.rows, profile.chunks, profile.result()["f1"].max
    (6, 2, 11.0)
    """
    check_int("workers", workers, 1, 64)
    if workers > 1 and isinstance(source, str | os.PathLike) \
            and str(source).lower().endswith(PARQUET_SUFFIXES) and Path(source).is_file():
        return _profile_parallel(Path(source), kinds or {}, chunk_rows, k, lg_max_k, workers)
    what, chunks = open_source(source, chunk_rows)
    profile = TableProfile(kinds=kinds, k=k, lg_max_k=lg_max_k)
    for chunk in chunks:
        try:
            profile.update(chunk)
        except InvalidInput as error:
            raise InvalidInput(f"{what}: {error}") from None
    if profile.rows == 0:
        raise InvalidInput(f"{what} has no rows")
    return profile


def _profile_columns(path: str, columns: list[str], kinds: Mapping[str, str], chunk_rows: int,
                     k: int, lg_max_k: int) -> bytes:
    """The profile of some of a Parquet file's columns, as bytes (what a worker sends back)."""
    what = f"'{path}'"
    profile = TableProfile(kinds=kinds, k=k, lg_max_k=lg_max_k)
    for chunk in guarded(what, parquet_chunks(Path(path), chunk_rows, columns)):
        try:
            profile.update(chunk)
        except InvalidInput as error:
            raise InvalidInput(f"{what}: {error}") from None
    return profile.to_bytes()


def _profile_parallel(path: Path, kinds: Mapping[str, str], chunk_rows: int, k: int,
                      lg_max_k: int, workers: int) -> TableProfile:
    names = parquet_columns(path)
    unknown = [name for name in kinds if name not in names]
    if unknown:
        raise InvalidInput(f"kinds names columns the table lacks: {', '.join(unknown)}")
    groups = [group for group in (names[i::workers] for i in range(workers)) if group]
    jobs = [(str(path), group, {n: kinds[n] for n in group if n in kinds}, chunk_rows, k,
             lg_max_k) for group in groups]
    if len(jobs) == 1:
        parts = [_profile_columns(*jobs[0])]
    else:
        # fork: the children start with this process's imports instead of re-importing them
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(len(jobs) - 1, mp_context=context) as pool:
            futures = [pool.submit(_profile_columns, *job) for job in jobs[1:]]
            parts = [_profile_columns(*jobs[0]), *(future.result() for future in futures)]
    profiles = [TableProfile.from_bytes(part) for part in parts]
    joined = TableProfile(kinds=kinds, k=k, lg_max_k=lg_max_k)
    by_name = {column.name: column for part in profiles for column in part.columns}
    joined._columns = [by_name[name] for name in names]
    joined._rows, joined._chunks = profiles[0].rows, profiles[0].chunks
    if joined.rows == 0:
        raise InvalidInput(f"'{path}' has no rows")
    return joined
