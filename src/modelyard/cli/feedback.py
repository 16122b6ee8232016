"""``modelyard feedback``: delayed labels from a file, joined to earlier predictions by id."""

from __future__ import annotations

from pathlib import Path

import typer

from modelyard.cli._common import JSON_OPTION, console, print_json, settings
from modelyard.errors import InvalidInput

_CHUNK = 10_000


def feedback(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="CSV or Parquet file of labels.", show_default=False),
    id_column: str = typer.Option("id", "--id-column", help="Column of request ids."),
    label_column: str = typer.Option("label", "--label-column", help="Column of labels."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Store labels for earlier predictions (idempotent: a repeated id is kept once)."""
    from modelyard.api.tables import read_table
    from modelyard.api.workspace import open_database
    from modelyard.live.feedback import FeedbackStore

    config = settings(ctx)
    frame = read_table(path)
    for column in (id_column, label_column):
        if column not in frame.columns:
            raise InvalidInput(
                f"{path} has no column {column!r}; it has {', '.join(map(str, frame.columns[:8]))}"
            )
    store = FeedbackStore(open_database(config.resolved_database_url, config.store))
    accepted = duplicates = 0
    unknown: list[str] = []
    for start in range(0, len(frame), _CHUNK):
        part = frame.iloc[start : start + _CHUNK]
        items = [{"id": str(i), "label": label.item() if hasattr(label, "item") else label}
                 for i, label in zip(part[id_column], part[label_column], strict=True)]
        result = store.ingest(items)
        accepted += result.accepted
        duplicates += result.duplicates
        unknown.extend(result.unknown_ids)
    summary = {"accepted": accepted, "duplicates": duplicates, "unknown_ids": unknown}
    if as_json:
        print_json(summary)
        return
    console.print(f"{accepted} labels stored, {duplicates} already known"
                  + (f", {len(unknown)} for ids no logged prediction has (kept: the prediction "
                     "may be sampled out or not flushed yet)" if unknown else ""))
