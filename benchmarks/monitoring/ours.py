"""modelyard's drift check on two Parquet files, on the public monitoring primitives.

    .venv/bin/python benchmarks/monitoring/ours.py REFERENCE CURRENT --rows N

Phases (seconds of each in the JSON):

- ``profile_reference`` / ``profile_current``: ``profile_table(path, workers=--workers)`` reads
  the file batch by batch (250k rows) and folds each batch into per-column sketches; nothing
  else is kept; with 2 workers a forked process sketches half of the columns;
- ``sample_reference``: a uniform sample of at most ``--calibration-rows`` reference rows (a
  second pass over the reference file, batch by batch), because :func:`calibrate` needs raw
  reference values;
- ``calibrate``: one threshold per column for windows of ``min(current rows,
  --calibration-window)`` rows, at the default alpha = 0.01, n_boot = 200, k = 200. Numerical
  columns read their null draws from tables of sketched ranks shared by every column of one
  shape (``modelyard.monitoring.nulls``), kept in ``--null-tables DIR`` when given; the JSON
  says how many tables the run drew (``null_tables_drawn``) and how long that took
  (``null_tables_seconds``, inside ``calibrate``): 0 when a previous run left them on disk;
- ``compare``: ``column_drift`` per column on the two profiles, then ``dataset_drift``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _runner import Run

import modelyard
from modelyard.monitoring import (
    calibrate,
    column_drift,
    dataset_drift,
    default_method,
    profile_table,
)
from modelyard.monitoring.nulls import NullTables
from modelyard.monitoring.sketches import NumericSketch


def uniform_sample(path: object, rows: int, seed: int = 0) -> pa.Table:
    """At most ``rows`` rows drawn uniformly without replacement, reading batch by batch."""
    with pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20) as file:
        total = file.metadata.num_rows
        wanted = np.sort(np.random.default_rng(seed).choice(total, min(rows, total), replace=False))
        parts, start = [], 0
        for batch in file.iter_batches(batch_size=250_000):
            end = start + batch.num_rows
            lo, hi = np.searchsorted(wanted, [start, end])
            if hi > lo:
                parts.append(batch.take(pa.array(wanted[lo:hi] - start)))
            start = end
    return pa.Table.from_batches(parts)


def summary(sketch: object) -> object:
    """What ``column_drift`` compares: the KLL sketch of a number, the counts of a category."""
    return sketch.kll if isinstance(sketch, NumericSketch) else sketch.counts()


def main() -> None:
    run = Run("modelyard", modelyard.__version__)
    args = run.args
    with run.phase("profile_reference"):
        reference = profile_table(args.reference, workers=args.workers)
    with run.phase("profile_current"):
        current = profile_table(args.current, workers=args.workers)
    with run.phase("sample_reference"):
        sample = uniform_sample(args.reference, args.calibration_rows)
    window = min(current.rows, args.calibration_window)
    tables = NullTables(args.null_tables)
    thresholds = {}
    with run.phase("calibrate"):
        for column in reference.columns:
            values = sample.column(column.name).to_numpy(zero_copy_only=False)
            if column.kind == "numerical":
                values = values.astype(np.float64)  # integer columns with nulls come as objects
            thresholds[column.name] = calibrate(
                values, default_method(column.kind), window, tables=tables
            )
    results = {}
    with run.phase("compare"):
        for column in reference.columns:
            results[column.name] = column_drift(
                summary(column.sketch),
                summary(current[column.name].sketch),
                thresholds[column.name],
            )
        drifted_dataset, share = dataset_drift(results.values())
    run.emit(
        [name for name, result in results.items() if result.drift_detected],
        columns=len(results),
        dataset_drift=drifted_dataset,
        drift_share=share,
        calibration={
            "sample_rows": sample.num_rows,
            "window_rows": window,
            "alpha": 0.01,
            "n_boot": 200,
            "k": 200,
        },
        null_tables_drawn=tables.simulated,
        null_tables_seconds=tables.simulated_seconds,
        per_column={
            name: {
                "method": r.method,
                "score": r.score,
                "threshold": r.threshold,
                "scheme": thresholds[name].scheme,
            }
            for name, r in results.items()
        },
    )


if __name__ == "__main__":
    main()
