"""Reading users' tables (Parquet, CSV, JSON lines) and writing small ones as JSON records."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from modelyard.errors import InvalidInput, first_line

_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".parquet": pd.read_parquet,
    ".pq": pd.read_parquet,
    ".csv": pd.read_csv,
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".feather": pd.read_feather,
}


def read_table(path: Path) -> pd.DataFrame:
    """A DataFrame from a Parquet, CSV, JSON-lines or Feather file, chosen by its suffix."""
    if not path.exists():
        raise InvalidInput(f"data file not found: {path}")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise InvalidInput(
            f"cannot read {path}: use a {', '.join(sorted(_READERS))} file"
        )
    try:
        frame = reader(path)
    except Exception as exc:  # each reader raises its own family of errors
        reason = first_line(str(exc)) or type(exc).__name__
        raise InvalidInput(f"cannot read {path}: {reason}") from None
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput(f"{path} does not hold a table")
    return frame


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts (numpy scalars and NaN become plain JSON values)."""
    result: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return result
