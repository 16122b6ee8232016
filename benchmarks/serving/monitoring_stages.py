"""Live monitoring's work per request, stage by stage, in one process: figures that a noisy host
moves little.

    taskset -c 1 .venv/bin/python benchmarks/serving/monitoring_stages.py [--data constant]
        [--group 8] [--lone 0.05] [--fold-requests 5500] [--repeats 7]

What monitoring adds to a request of the peer bench's ONNX MLP (a ``{"X": float32[1, 64]}``
input, a ``label`` output; unbatched), each stage timed alone with ``process_time`` and the
best of ``--repeats`` printed, so that a host's stalls (10 to 40% on this machine within
minutes) do not pass for a cost:

1. model thread: a group of ``--group`` answered requests written into the column buffers
   (``live/columns.py``, ``Collector.accumulate``), with the fold's take of the buffers;
2. event loop: a request alone in its loop iteration handed over (``Collector.record``);
3. collector: one stacking round of 10 ms of such requests alone;
4. collector: folding ``--fold-requests`` requests, as the column buffers hold them, into a
   window profile (65 columns);
5. prediction log: the fold's requests made into one batch and stored in SQLite (index rows,
   blob, commit; WAL as the server runs it).

A share ``--lone`` of the requests comes alone and takes stages 2 and 3 instead of 1 (in a
server at c=16, counted on 2026-12-07: 45% of the hand-offs, 8.2 requests a hand-off, so
about 5% of the requests); the last line weighs them so.

``--data`` chooses the inputs: ``constant`` (the peer bench sends one row over and over),
``digits`` (17 levels, as ``load_digits``) or ``normal``. The sums are what the request path
and the monitoring threads would spend if nothing else ran; in a server the same work costs
more (its caches are shared with the loop and the model thread): compare with
``thread_cpu.py compare``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from collector_path import MlpModel

from modelyard.live.collector import Collector
from modelyard.live.columns import Buffers
from modelyard.live.handoff import stack_round
from modelyard.live.predlog import PredictionLog
from modelyard.live.stacked import Stacked
from modelyard.monitoring.profile import TableProfile
from modelyard.serving.model import Prepared
from modelyard.store import Database

WIDTH = len(MlpModel.columns)
ROUND = 150  # requests in a stacking round: ~10 ms at 15k requests a second


# the one row ``constant`` repeats, as the peer bench does (its ``samples.json`` row): each
# column then holds one value, which numpy sorts at ~0.2 ns a value against ~10 for 690
# distinct ones (AMD EPYC, numpy 2.4.6: its float32 sort here times the same as heapsort)
ROW = np.random.default_rng(1).normal(size=(1, WIDTH)).astype(np.float32)


def rows(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "constant":
        return np.tile(ROW, (n, 1))
    if kind == "digits":
        return (rng.integers(0, 17, size=(n, WIDTH)) / 16).astype(np.float32)
    return rng.normal(size=(n, WIDTH)).astype(np.float32)


def best(work: Callable[[], object], calls: int, repeats: int) -> float:
    """The best of ``repeats`` timings of ``calls`` calls, in CPU seconds a call."""
    work()
    found = []
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(calls):
            work()
        found.append((time.process_time() - started) / calls)
    return min(found)


def requests(model: Any, data: np.ndarray, first: int) -> tuple[list[Prepared], list[dict]]:
    parts = [Prepared({"X": data[i:i + 1].copy()}, 1, None, f"16d39b749b078c09-{first + i:012x}")
             for i in range(len(data))]
    return parts, [{"label": np.array([i % 10])} for i in range(len(data))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("constant", "digits", "normal"), default="constant")
    parser.add_argument("--group", type=int, default=8, help="requests an unbatched group holds")
    parser.add_argument("--lone", type=float, default=0.05,
                        help="share of requests that come alone in their loop iteration")
    parser.add_argument("--fold-requests", type=int, default=5500)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    model: Any = MlpModel()
    figures: dict[str, float] = {}

    parts, results = requests(model, rows(args.data, args.group, rng), 0)
    buffers = Buffers()
    written = iter(range(1, 10**9))

    def write() -> None:
        buffers.add(model, parts, results, 2.0)
        if next(written) % 700 == 0:  # the fold takes ~5,500 requests' buffers at once
            buffers.take()

    figures["model thread: write a group into the buffers"] = best(
        write, 2100, args.repeats) / args.group

    with tempfile.TemporaryDirectory() as folder:
        database = Database(f"sqlite:///{Path(folder) / 'bench.db'}")
        database.migrate()
        collector = Collector(database, replica="bench")
        lone, answer = requests(model, rows(args.data, 1, rng), 0)

        def hand_over() -> None:
            collector.record(model, lone[0].request_id, 1.7e9, 0.001, 1, lone[0].data,
                             answer[0])
            collector._buffer.clear()

        figures["event loop: hand a request alone over"] = best(hand_over, 5000, args.repeats)

        # one round: 10 ms of requests alone
        items: list[Any] = []
        for count in range(max(1, int(ROUND * args.lone))):
            lone, answer = requests(model, rows(args.data, 1, rng), count)
            items.append((model, lone[0].request_id, 1.7e9, 0.001, 1, lone[0].data, answer[0]))
        figures["collector: stacking round"] = best(
            lambda: stack_round(list(items)), 300, args.repeats) / len(items)

        # what the fold takes: the column buffers' group, laid out as they hold it
        n = args.fold_requests
        filled = Buffers()
        for first in range(0, n, args.group):
            filled.add(model, *requests(model, rows(args.data, min(args.group, n - first), rng),
                                        first), 2.0)
        [group] = filled.take()
        matrix = group.matrix
        profile = TableProfile()
        figures["collector: fold into the window profile"] = best(
            lambda: profile.update(group.profile_columns()), 5, args.repeats) / n

        log = PredictionLog(database, batch_size=1000)
        serial = iter(range(1, 10**9))

        def store() -> None:
            k = next(serial)
            log.submit_stacked(Stacked(
                "mlp", 1, [f"16d39b749b078c09-{k * n + i:012x}" for i in range(n)],
                group.at + k, group.latency_ms, None, matrix, group.raw, model.columns, "X",
                None))
            log.flush()

        figures["prediction log: batch and store"] = best(store, 5, args.repeats) / n
        database.dispose()

    print(f"ONNX MLP, one-row requests, {args.data} inputs, groups of {args.group}, "
          f"{args.lone:.0%} of requests alone, folds of {args.fold_requests:,}; "
          f"best of {args.repeats}")
    print("| stage | µs a request |")
    print("|---|---:|")
    for stage, seconds in figures.items():
        print(f"| {stage} | {seconds * 1e6:.2f} |")
    grouped, alone, rounds, *rest = figures.values()
    weighed = (1 - args.lone) * grouped + args.lone * (alone + rounds) + sum(rest)
    print(f"| all, {args.lone:.0%} of requests alone | {weighed * 1e6:.2f} |")


if __name__ == "__main__":
    main()
