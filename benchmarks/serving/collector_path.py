"""Live monitoring's collector thread, alone: CPU per request for stacking and folding.

    taskset -c 1 .venv/bin/python benchmarks/serving/collector_path.py [--fold-requests 8000]
        [--folds 20] [--repeats 3] [--batch 8] [--profile]

What the data plane hands to :class:`modelyard.live.collector.Collector` for the ONNX MLP of
the peer bench — one-row requests, a ``{"X": float32[1, 64]}`` input and a ``label`` output —
is recorded in rounds of 160 requests, each round stacked as the collector's thread does every
10 ms (160 requests are 10 ms at 16k requests a second), and every ``--fold-requests``
requests folded into the window profile (65 columns: 64 inputs and the prediction). With
``--batch N`` the requests come as a batching model hands them over, N at a time
(``Collector.record_batch``: each request's own input, the batch's stacked input and outputs,
as the batcher made them). The prediction log is left out (the collector hands it the
stacked groups; its writer has its own thread), and so is storing the window.

It prints the collector's CPU per request (``process_time``, the recording loop's own cost
taken off), the median of ``--repeats``. ``--fold-requests`` stands for the fold interval
times the request rate: 4,000 for 0.25 s at 16k requests a second, 8,000 for 0.5 s.
``--profile`` prints cProfile's top entries instead. The server's own figure is
``thread_cpu.py compare``'s ``modelyard-collector`` line.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from modelyard.live.collector import Collector
from modelyard.serving.model import Prepared
from modelyard.store import Database

ROUND = 160  # requests stacked at once: 10 ms at 16k requests a second


class MlpModel:
    """What the collector reads of a served model (hashable, as a ServedModel is)."""

    name, version, columns = "mlp", 1, [f"f{i}" for i in range(64)]
    manifest = SimpleNamespace(classes=None)


def bench(collector: Collector, rows: list[np.ndarray], fold_requests: int, folds: int,
          batch: int = 1) -> float:
    """CPU seconds per request for recording, stacking and folding ``folds`` times."""
    model: Any = MlpModel()
    rounds = max(1, fold_requests // ROUND)
    labels = [np.array([i % 10]) for i in range(ROUND)]

    def fold(record: bool) -> None:
        for r in range(rounds):
            if batch > 1:
                for b in range(0, ROUND, batch):
                    parts = [Prepared({"X": rows[(r * ROUND + b + i) % len(rows)].copy()}, 1,
                                      None, f"id{b + i}") for i in range(batch)]
                    data = {"X": np.concatenate([part.data["X"] for part in parts])}
                    outputs = {"label": np.concatenate(labels[b:b + batch])}
                    if record:
                        collector.record_batch(model, parts, 1.7e9, 0.001, data, outputs)
                if record:
                    collector.stack()
                continue
            for i in range(ROUND):
                x = rows[(r * ROUND + i) % len(rows)].copy()  # each request its own arrays
                data, outputs = {"X": x}, {"label": labels[i].copy()}
                if record:
                    collector.record(model, f"id{i}", 1.7e9, 0.001, 1, data, outputs)
            if record:
                collector.stack()
        if record:
            collector.drain()

    fold(True)  # first window, scratch buffers
    started = time.process_time()
    for _ in range(folds):
        fold(True)
    spent = time.process_time() - started
    started = time.process_time()
    for _ in range(folds):
        fold(False)
    own = time.process_time() - started  # the requests' own arrays, made by the loop
    return (spent - own) / (folds * rounds * ROUND)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold-requests", type=int, default=8000)
    parser.add_argument("--folds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1, choices=(1, 8, 16, 32),
                        help="requests a batch (1: handed over one by one)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [rng.normal(size=(1, 64)).astype(np.float32) for _ in range(4096)]
    with tempfile.TemporaryDirectory() as folder:
        database = Database(f"sqlite:///{Path(folder) / 'bench.db'}")
        database.migrate()
        collector = Collector(database, replica="bench", log=lambda folded: None)
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            bench(collector, rows, args.fold_requests, args.folds, args.batch)
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(20)
            return
        figures = [bench(collector, rows, args.fold_requests, args.folds, args.batch)
                   for _ in range(args.repeats)]
        database.dispose()
    print(f"collector, {args.fold_requests:,} requests a fold, batches of {args.batch}: "
          f"{statistics.median(figures) * 1e6:.2f} µs a request "
          f"({', '.join(f'{f * 1e6:.2f}' for f in figures)})")


if __name__ == "__main__":
    main()
