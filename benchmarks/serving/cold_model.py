"""A model's one-row call back to back, and with a server's gaps between calls.

    taskset -c 1 env OMP_NUM_THREADS=1 \\
        ~/.cache/peer-bench/.venvs/models/bin/python benchmarks/serving/cold_model.py [--calls 400]

The peer bench's c=1 overhead is a server's p50 at c=1 minus the model's call timed back to back
in one thread (``inprocess.py``: ``timeit``, so the model's code and data stay in the core's
caches). A server at c=1 calls the model once per request, and between two calls it reads,
answers and waits for the next request. This times the peer bench's HGB model
(``work/models/hgb.joblib``, 100 trees) and ONNX MLP three ways: back to back; with 0.2 ms of
other work (a fresh 256 KB buffer, a busy wait) and 0.2 ms of sleep between calls; and the
same, with each call handed to another thread through a queue as a server's inference thread
gets it. The difference between the first and the others is the part of the c=1 overhead that
comes from the model itself running colder, whatever server calls it. Prints the median per
call of each.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

GAP_S = 0.0002


def timed(call: Callable[[], object], calls: int, gap_s: float, thread: bool) -> float:
    """Median µs of ``call``: back to back (``gap_s`` 0) or with gaps, here or on a thread."""
    spent: list[float] = []
    ask: queue.SimpleQueue[bool] = queue.SimpleQueue()
    answers: queue.SimpleQueue[float] = queue.SimpleQueue()

    def work() -> None:
        while ask.get():
            started = time.perf_counter()
            call()
            answers.put(time.perf_counter() - started)

    worker = threading.Thread(target=work, daemon=True) if thread else None
    if worker is not None:
        worker.start()
    for _ in range(calls):
        if worker is not None:
            ask.put(True)
            spent.append(answers.get())
        else:
            started = time.perf_counter()
            call()
            spent.append(time.perf_counter() - started)
        if gap_s:
            until = time.perf_counter() + gap_s
            other = bytearray(256 * 1024)  # a server's own work touches memory between calls
            while time.perf_counter() < until:
                other[0] ^= 1
            time.sleep(gap_s)
    if worker is not None:
        ask.put(False)
        worker.join()
    return statistics.median(spent) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(os.environ.get(
        "PEER_BENCH_HOME", Path.home() / ".cache/peer-bench")) / "work/models")
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()

    import joblib
    import onnxruntime as ort

    samples = json.loads((args.models / "samples.json").read_text())
    hgb = joblib.load(args.models / "hgb.joblib")
    row = np.asarray([samples["hgb"]["row"]], dtype=np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(args.models / "model.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    pixels = np.asarray([samples["onnx"]["row"]], dtype=np.float32)
    models: dict[str, Callable[[], object]] = {
        "HGB predict": lambda: hgb.predict(row),
        "ONNX MLP session.run": lambda: session.run(["label"], {"X": pixels}),
    }
    print(f"{'model':<22} {'back to back':>14} {'with gaps':>12} {'gaps, thread':>14}  µs a call "
          f"(median of {args.calls})")
    for name, call in models.items():
        for _ in range(50):
            call()
        warm = timed(call, args.calls, 0.0, False)
        gaps = timed(call, args.calls, GAP_S, False)
        handed = timed(call, args.calls, GAP_S, True)
        print(f"{name:<22} {warm:>14.1f} {gaps:>12.1f} {handed:>14.1f}")


if __name__ == "__main__":
    main()
