"""Plumbing of the monitoring math: reading tables in bounded chunks, turning their columns into
what the sketches count, and the binary framing of serialized sketches and profiles.

Every source — a pandas DataFrame, a pyarrow Table or RecordBatch, a 2-D numpy array, a Parquet
or CSV file — becomes a stream of chunks of at most ``chunk_rows`` rows; a chunk is split into
named columns, each a numpy array, a pandas Series or a pyarrow (Chunked)Array.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelyard.errors import InvalidInput, first_line
from modelyard.types import datatype_of

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
KINDS = (NUMERICAL, CATEGORICAL)
FORMAT_VERSION = 1  # of serialized sketches and profiles

Chunk = Any  # pd.DataFrame | pa.Table | pa.RecordBatch | 2-D np.ndarray | {name: 1-D array}
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_PARQUET = PARQUET_SUFFIXES
_CSV = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst", ".csv.zip")
_READ_ERRORS = (pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError, OSError)
_HEADER = struct.Struct("<HI")  # format version, CRC-32 of the payload


def open_source(source: Any, chunk_rows: int) -> tuple[str, Iterator[Chunk]]:
    """A description of ``source`` for messages, and its chunks (read lazily, one at a time)."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidInput(f"chunk_rows must be a positive integer, not {chunk_rows!r}")
    if isinstance(source, pd.DataFrame):
        frames = (source.iloc[i : i + chunk_rows] for i in _starts(source, chunk_rows))
        return "the DataFrame", frames
    if isinstance(source, pa.Table | pa.RecordBatch):
        return "the Arrow table", (source.slice(i, chunk_rows) for i in _starts(source, chunk_rows))
    if isinstance(source, np.ndarray):
        if source.ndim != 2:
            raise InvalidInput(f"a numpy table must be 2-D (rows × columns), not {source.ndim}-D")
        return "the array", (source[i : i + chunk_rows] for i in _starts(source, chunk_rows))
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        what = f"'{path}'"
        name = path.name.lower()
        if not path.is_file():
            raise InvalidInput(f"{what} does not exist or is not a file")
        if name.endswith(_PARQUET):
            return what, _guarded(what, parquet_chunks(path, chunk_rows))
        if name.endswith(_CSV):
            return what, _guarded(what, _csv_chunks(path, chunk_rows))
        raise InvalidInput(f"cannot tell the format of {what}: name it *.parquet or *.csv")
    raise InvalidInput(
        f"cannot profile a {type(source).__name__}: expected a pandas DataFrame, a pyarrow "
        "Table, a 2-D numpy array, or the path of a Parquet or CSV file"
    )


def _starts(table: Any, chunk_rows: int) -> range:
    return range(0, len(table), chunk_rows)


def parquet_chunks(path: Path, chunk_rows: int,
                   columns: list[str] | None = None) -> Iterator[Chunk]:
    """Record batches of ``chunk_rows`` rows (of ``columns`` only, when given)."""
    # pre_buffer would keep every row group read so far in memory until the file is closed
    # buffer_size: read column chunks page by page, so a batch, not a row group, sets the memory
    with pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20) as file:
        _warm_up(file)
        yield from file.iter_batches(batch_size=chunk_rows, columns=columns)


_WARM = threading.Event()


def _warm_up(file: Any) -> None:
    """Once per process, decode a thousand values of one column before the real read.

    Arrow's decoding threads, on its default allocator (mimalloc), pay about 0.2 s on the first
    large read of a process (1M rows x 25 columns: 0.28 s the first time, 0.07 s after); a
    10-ms small read first takes that away (0.08 s). Measured in benchmarks/RESULTS.md, run I.
    """
    if _WARM.is_set() or file.metadata.num_rows == 0 or file.metadata.num_columns == 0:
        return
    _WARM.set()
    with contextlib.suppress(StopIteration):
        next(file.iter_batches(batch_size=1000, columns=[file.schema_arrow.names[0]]))


def parquet_columns(path: Path) -> list[str]:
    """The column names of a Parquet file, from its footer."""
    try:
        with pq.ParquetFile(path) as file:
            return list(file.schema_arrow.names)
    except _READ_ERRORS as error:
        raise InvalidInput(f"'{path}' cannot be read: {first_line(str(error))}") from None


def guarded(what: str, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """Reading errors become one clear line; errors raised by the consumer pass untouched."""
    return _guarded(what, chunks)


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    try:
        # low_memory=False: one dtype per column and chunk, without a mixed-types warning.
        with pd.read_csv(path, chunksize=chunk_rows, low_memory=False) as reader:
            yield from reader
    except pd.errors.EmptyDataError:
        return


def _guarded(what: str, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """Reading errors become one clear line; errors raised by the consumer pass untouched."""
    try:
        yield from chunks
    except _READ_ERRORS as error:
        raise InvalidInput(f"{what} cannot be read: {first_line(str(error))}") from None


def columns_of(chunk: Chunk) -> tuple[list[str], list[Any]]:
    """The column names of a chunk and its columns, in order."""
    if isinstance(chunk, pd.DataFrame):
        names = [str(name) for name in chunk.columns]
        columns: list[Any] = [chunk.iloc[:, i] for i in range(chunk.shape[1])]
    elif isinstance(chunk, pa.Table | pa.RecordBatch):
        names = [str(name) for name in chunk.schema.names]
        columns = list(chunk.columns)
    elif isinstance(chunk, np.ndarray) and chunk.ndim == 2:
        names = [f"f{i}" for i in range(chunk.shape[1])]
        columns = [chunk[:, i] for i in range(chunk.shape[1])]
    elif isinstance(chunk, dict) and all(
            isinstance(v, np.ndarray) and v.ndim == 1 for v in chunk.values()):
        names = [str(name) for name in chunk]
        columns = list(chunk.values())
        if len({len(column) for column in columns}) > 1:
            raise InvalidInput("the columns of a chunk must all have the same length")
    else:
        raise InvalidInput(
            f"cannot profile a chunk of type {type(chunk).__name__}: expected a pandas "
            "DataFrame, a pyarrow Table or RecordBatch, a 2-D numpy array or a dict of 1-D "
            "numpy arrays"
        )
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise InvalidInput(f"column names must be unique; repeated: {', '.join(twice)}")
    return names, columns


def rows_of(chunk: Chunk) -> int:
    """How many rows a chunk that :func:`columns_of` takes holds."""
    if isinstance(chunk, dict):
        return len(next(iter(chunk.values()))) if chunk else 0
    return len(chunk)


def kind_of(values: Any) -> str:
    """Numbers are numerical; booleans, strings, dates and everything else are categorical."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        kind = values.type
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        return NUMERICAL if numeric or pa.types.is_decimal(kind) else CATEGORICAL
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype) or getattr(dtype, "kind", "") == "c":
        return CATEGORICAL
    return NUMERICAL if pd.api.types.is_numeric_dtype(dtype) else CATEGORICAL


def dtype_of(values: Any) -> str:
    """The column's datatype by its Open Inference Protocol name (``FP64``, ``BYTES`` …)."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        try:
            return datatype_of(np.dtype(values.type.to_pandas_dtype()))
        except (NotImplementedError, TypeError):
            return "BYTES"
    return datatype_of(values.dtype)


def wider(first: str, second: str) -> str:
    """One datatype for a column whose chunks disagree (an int column gains NaNs in a CSV)."""
    if first == second:
        return first
    numbers = ("INT", "UINT", "FP")
    return "FP64" if first.startswith(numbers) and second.startswith(numbers) else "BYTES"


def as_floats(values: Any) -> npt.NDArray[np.float64]:
    """A 1-D float64 array; missing values become NaN; a value that is no number is an error."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        kind = values.type
        checks = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal,
                  pa.types.is_boolean, pa.types.is_null)
        if not any(check(kind) for check in checks):
            return _parse_numbers(values.to_pandas())
        cast = pc.cast(values, pa.float64())  # nulls become NaN in to_numpy
        return np.asarray(cast.to_numpy(zero_copy_only=False), dtype=np.float64)
    if isinstance(values, pd.Series):
        if pd.api.types.is_numeric_dtype(values.dtype) and values.dtype.kind != "c":
            if values.dtype == np.float64:
                return np.asarray(values.to_numpy(), dtype=np.float64)
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        return _parse_numbers(values)
    array = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if array.ndim != 1:
        raise InvalidInput(f"expected a 1-D array of values, got {array.ndim}-D")
    if array.dtype.kind in "fiub":
        return array.astype(np.float64, copy=False)
    return _parse_numbers(pd.Series(array, dtype=object))


def _parse_numbers(series: pd.Series) -> npt.NDArray[np.float64]:
    numbers = pd.to_numeric(series, errors="coerce")
    wrong = numbers.isna().to_numpy() & series.notna().to_numpy()
    if wrong.any():
        sample = series.to_numpy()[np.argmax(wrong)]
        raise InvalidInput(f"{sample!r} is not a number ({int(wrong.sum())} such values)")
    return np.asarray(numbers.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def value_counts(values: Any) -> tuple[int, int, list[str], list[int]]:
    """Rows, missing rows, and each present label with its count — counted by pandas or Arrow."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        counted = pc.value_counts(values)
        keys: Sequence[Any] = counted.field("values").to_pylist()
        counts: Sequence[int] = counted.field("counts").to_pylist()
        rows = len(values)
    else:
        if not isinstance(values, pd.Series):
            array = np.asarray(values)
            if array.ndim != 1:
                raise InvalidInput(f"expected a 1-D array of values, got {array.ndim}-D")
            values = pd.Series(array)
        series = values
        try:
            counted_series = series.value_counts(dropna=True, sort=False)
        except TypeError as error:
            raise InvalidInput(f"values cannot be counted: {first_line(str(error))}") from None
        counted_series = counted_series[counted_series.to_numpy() > 0]  # unused categories
        keys, counts, rows = counted_series.index.tolist(), counted_series.tolist(), len(series)
    labels: list[str] = []
    weights: list[int] = []
    for key, count in zip(keys, counts, strict=True):
        if key is None or (isinstance(key, float) and key != key):
            continue  # Arrow's null and NaN count as missing, as pandas counts them
        labels.append(label_of(key))
        weights.append(int(count))
    return rows, rows - sum(weights), labels, weights


def label_of(value: Any) -> str:
    """A category's label: ``str(value)``, with ``1.0`` read as ``1`` (CSV turns ints with gaps
    into floats).

    >>> label_of("a"), label_of(3), label_of(3.0), label_of(2.5), label_of(True)
    ('a', '3', '3', '2.5', 'True')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def pack(magic: bytes, payload: bytes) -> bytes:
    """Magic bytes, format version and checksum in front of a payload."""
    return magic + _HEADER.pack(FORMAT_VERSION, zlib.crc32(payload)) + payload


def unpack(data: Any, magic: bytes, what: str) -> bytes:
    """The payload behind :func:`pack`'s header, or a clear :class:`InvalidInput`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput(f"a {what} is read from bytes, not from a {type(data).__name__}")
    blob = bytes(data)
    start = len(magic) + _HEADER.size
    if len(blob) < start or not blob.startswith(magic):
        raise InvalidInput(f"the data is not a modelyard {what}: it lacks the {what} header")
    version, checksum = _HEADER.unpack_from(blob, len(magic))
    if version > FORMAT_VERSION:
        raise InvalidInput(
            f"this {what} has format version {version}, newer than the version {FORMAT_VERSION} "
            "this modelyard reads: upgrade modelyard to read it"
        )
    payload = blob[start:]
    if version < 1 or zlib.crc32(payload) != checksum:
        raise InvalidInput(
            f"the data is not a modelyard {what}: its checksum does not match, "
            "so it is corrupt or truncated"
        )
    return payload


def corrupt(what: str, error: Exception) -> InvalidInput:
    return InvalidInput(f"the data is not a modelyard {what}: {first_line(str(error))}")


def check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer from {low} to {high}, not {value!r}")
    return value
