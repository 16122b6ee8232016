"""One pass over a table: its profile, a uniform row sample, whole columns, and progress."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modelyard.errors import InvalidInput
from modelyard.monitoring._tables import Chunk, columns_of, open_source
from modelyard.monitoring.profile import TableProfile

Progress = Callable[[str, int, int | None], None]
"""``progress(step, rows_done, rows_total or None)``, called after every chunk."""

Score = Callable[[pd.DataFrame], pd.DataFrame]
"""Adds a model's outputs to a chunk of rows (see ``build_report``)."""


@dataclass
class Scan:
    """What one pass over a table leaves: its profile, a uniform sample, and kept columns."""

    what: str
    profile: TableProfile
    sample: pd.DataFrame
    kept: dict[str, np.ndarray] = field(default_factory=dict)


def total_rows(source: Any) -> int | None:
    """Rows in ``source`` when known without reading it (None for CSV)."""
    if isinstance(source, pd.DataFrame | pa.Table | np.ndarray):
        return len(source)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_file() and path.name.lower().endswith((".parquet", ".pq", ".parq")):
            try:
                return int(pq.ParquetFile(path).metadata.num_rows)
            except (pa.ArrowException, OSError):
                return None
    return None


def peek(source: Any, chunk_rows: int) -> tuple[str, list[str], Iterator[Chunk]]:
    """A description of ``source``, its column names, and all its chunks (the first re-yielded)."""
    what, chunks = open_source(source, chunk_rows)
    first = next(chunks, None)
    if first is None:
        raise InvalidInput(f"{what} has no rows")
    try:
        names, _ = columns_of(first)
    except InvalidInput as error:
        raise InvalidInput(f"{what}: {error}") from None

    def again() -> Iterator[Chunk]:
        yield first
        yield from chunks

    return what, names, again()


def _frame(chunk: Chunk, names: list[str]) -> pd.DataFrame:
    if isinstance(chunk, pd.DataFrame):
        return chunk
    if isinstance(chunk, pa.Table | pa.RecordBatch):
        frame: pd.DataFrame = chunk.to_pandas()
        return frame
    return pd.DataFrame(chunk, columns=names)


def _take(chunk: Chunk, rows: np.ndarray, names: list[str]) -> pd.DataFrame:
    if isinstance(chunk, pd.DataFrame):
        return chunk.iloc[rows].reset_index(drop=True)
    if isinstance(chunk, pa.Table | pa.RecordBatch):
        taken: pd.DataFrame = chunk.take(pa.array(rows)).to_pandas()
        return taken
    return pd.DataFrame(chunk[rows], columns=names)


def _column(chunk: Chunk, name: str, names: list[str]) -> np.ndarray:
    if isinstance(chunk, pd.DataFrame):
        return chunk[name].to_numpy()
    if isinstance(chunk, pa.Table | pa.RecordBatch):
        return np.asarray(chunk.column(name).to_numpy(zero_copy_only=False))
    return np.asarray(chunk[:, names.index(name)])


class _Reservoir:
    """A uniform sample without replacement of at most ``size`` rows, in bounded memory: every
    row draws a random key and the ``size`` smallest keys stay (priority sampling)."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        self.keys = np.empty(0)
        self.frame: pd.DataFrame | None = None

    def add(self, chunk: Chunk, names: list[str]) -> None:
        keys = self.rng.random(len(chunk))
        if len(self.keys) >= self.size:
            cutoff = self.keys.max()
            rows = np.flatnonzero(keys < cutoff)
        else:
            rows = np.arange(len(chunk))
        if rows.size > self.size:
            rows = rows[np.argsort(keys[rows], kind="stable")[: self.size]]
            rows.sort()
        if rows.size == 0:
            return
        taken = _take(chunk, rows, names)
        frame = taken if self.frame is None else pd.concat([self.frame, taken], ignore_index=True)
        keys = np.concatenate([self.keys, keys[rows]])
        if len(keys) > self.size:
            keep = np.sort(np.argsort(keys, kind="stable")[: self.size])
            frame, keys = frame.iloc[keep].reset_index(drop=True), keys[keep]
        self.frame, self.keys = frame, keys


def scan(
    source: Any,
    *,
    step: str,
    chunk_rows: int,
    sample_rows: int,
    rng: np.random.Generator,
    kinds: Mapping[str, str] | None = None,
    keep: Sequence[str] = (),
    score: Score | None = None,
    progress: Progress | None = None,
    k: int = 200,
) -> Scan:
    """Read ``source`` once in chunks: profile it, sample ``sample_rows`` rows uniformly, keep
    whole the columns named in ``keep`` (labels, predictions), and report progress.

    A :class:`TableProfile` is taken as it is: there are no rows to sample, score or keep.
    """
    if isinstance(source, TableProfile):
        if source.rows == 0:
            raise InvalidInput("the profile has no rows")
        return Scan(f"a profile of {source.rows:,} rows", source, pd.DataFrame())
    what, names, chunks = peek(source, chunk_rows)
    total = total_rows(source)
    profile: TableProfile | None = None
    reservoir = _Reservoir(sample_rows, rng)
    kept: dict[str, list[np.ndarray]] = {}
    done = 0
    for raw in chunks:
        chunk: Chunk = raw
        if score is not None:
            chunk = score(_frame(raw, names))
        chunk_names = columns_of(chunk)[0]
        if profile is None:
            known = {name: kind for name, kind in (kinds or {}).items() if name in chunk_names}
            profile = TableProfile(kinds=known, k=k)
        try:
            profile.update(chunk)
        except InvalidInput as error:
            raise InvalidInput(f"{what}: {error}") from None
        reservoir.add(chunk, chunk_names)
        for name in keep:
            if name in chunk_names:
                kept.setdefault(name, []).append(_column(chunk, name, chunk_names))
        done += len(chunk)
        if progress is not None:
            progress(step, done, total)
    if profile is None or reservoir.frame is None or profile.rows == 0:
        raise InvalidInput(f"{what} has no rows")
    columns = {name: np.concatenate(parts) for name, parts in kept.items()}
    return Scan(what, profile, reservoir.frame, columns)
