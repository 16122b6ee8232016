"""What the column buffers' memory layout costs their writer and their two readers, in one
process: row by row (C order) against column by column (Fortran order, what they use).

    taskset -c 1 .venv/bin/python benchmarks/serving/column_layout.py [--rows 8000] [--width 64]

Readers, on ``--rows`` normal FP32 rows of ``--width`` features (a fold's worth at ~16k
requests a second): the fold sketching each column into a window profile, and the prediction
log making each an Arrow column; each also after 64 MB were read in between ("cold"), as in a
server, where the event loop runs between the fold's columns. Writer: a model thread copying
batches of 64 rows, or groups of 8 one-row requests, into the buffer. Best of ``--repeats``,
µs a row; the two layouts alternate so that a host's drift hits both.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from modelyard.monitoring.profile import TableProfile


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    n, width = args.rows, args.width
    rows = np.random.default_rng(0).normal(size=(n, width)).astype(np.float32)
    layouts = {"C": np.ascontiguousarray(rows), "F": np.asfortranarray(rows)}
    spill = np.ones(8_000_000)
    found: dict[tuple[str, str], list[float]] = {}

    def columns(matrix: np.ndarray) -> dict[str, np.ndarray]:
        return {f"c{i}": matrix[:, i] for i in range(width)}

    def write(order: str, size: int) -> float:
        buffer = np.empty((n, width), np.float32, order=order)
        pieces = [rows[i:i + 1].copy() for i in range(size)] if size <= 8 else [rows[:size]]
        step = sum(len(piece) for piece in pieces)
        return timed(lambda: [np.concatenate(pieces, out=buffer[k:k + step], casting="no")
                              for k in range(0, n - step + 1, step)])

    for _ in range(args.repeats):
        for order, matrix in layouts.items():
            stages = {
                "fold": lambda m=matrix: TableProfile().update(columns(m)),
                "log table": lambda m=matrix: pa.table(columns(m)),
            }
            for stage, work in stages.items():
                found.setdefault((stage, order), []).append(timed(work))
                spill.sum()
                found.setdefault((stage + ", cold", order), []).append(timed(work))
            found.setdefault(("write batches of 64 rows", order), []).append(write(order, 64))
            found.setdefault(("write groups of 8 one-row requests", order), []).append(
                write(order, 8))

    print(f"{n:,} rows of {width} FP32 features, best of {args.repeats}, µs a row")
    print("| stage | row by row (C) | column by column (F) |")
    print("|---|---:|---:|")
    for stage in dict.fromkeys(name for name, _ in found):
        c, f = (min(found[(stage, order)]) / n * 1e6 for order in ("C", "F"))
        print(f"| {stage} | {c:.3f} | {f:.3f} |")


if __name__ == "__main__":
    main()
