"""Where a running server's monitoring CPU goes, call by call, as a share of the model's own CPU:
figures a noisy host moves little.

    .venv/bin/python benchmarks/serving/cpu_breakdown.py --tree src --tree /tmp/other/src \\
        [--model mlp] [--batching off] [--conc 16] [--seconds 20] [--rounds 2]

Each ``--tree`` (a ``src`` folder) is started the peer bench's way (``start_ours.sh``: pinned
to CPU 1, one inference thread, monitoring on) with a ``sitecustomize`` on its path that wraps
the calls below in ``time.thread_time()``; wrk (CPU 0) warms it for 3 s, then loads it for
``--seconds``; the trees take turns, ``--rounds`` times. For each call it prints the CPU it
took a request (µs; the server's requests over the load, from wrk) and that as a share of
``ServedModel.run``'s CPU a request: the model's own work, which monitoring does not change.

Why a share: on this kind of host a 2% change hides in req/s, whose runs spread by 10 to 40%
(``interleaved.py``), but the host slows the model and the monitoring alike, so their ratio
holds (2026-12-08: the fold was 5.1 to 5.5% of ``run`` in four runs whose req/s spread from
5,480 to 7,160). The wrappers cost ~0.7 µs a call on that host (two ``thread_time`` calls);
``run``'s share includes it once a request, so compare trees with each other, not with a
server without them. A call inside another is counted in both (``drain`` holds ``stack`` and
``_update``). Needs the peer bench's models (``$PEER_BENCH_HOME/work/models``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import ab_trees as ab
from monitoring_cost import LUA

PORT = 18_720
# (module, class, method) wrapped when the tree has them; ServedModel.run is the yardstick
CALLS = [
    ("modelyard.serving.model", "ServedModel", "run"),
    ("modelyard.live.collector", "Collector", "accumulate"),
    ("modelyard.live.collector", "Collector", "accumulate_batch"),
    ("modelyard.live.columns", "Buffers", "add"),
    ("modelyard.live.collector", "Collector", "record"),
    ("modelyard.live.collector", "Collector", "stack"),
    ("modelyard.live.collector", "Collector", "drain"),
    ("modelyard.live.collector", "Collector", "_update"),
    ("modelyard.live.stacked", "Stacked", "concat"),
    ("modelyard.live.predlog", "PredictionLog", "flush"),
    ("modelyard.live.sinks", "DatabaseSink", "write_batches"),
    ("modelyard.live.sinks", "DatabaseSink", "_index_sqlite"),
]
YARDSTICK = "ServedModel.run"

# Installed in the server's process by Python's site module (the tree's path comes first, this
# folder after it). It wraps the calls once `modelyard serve` has imported them, and writes the
# totals every half second; the server itself is untouched.
SITECUSTOMIZE = '''
import importlib, json, os, sys, threading, time

def _install():
    calls = json.loads(os.environ["BREAKDOWN_CALLS"])
    out = os.environ["BREAKDOWN_OUT"]
    totals = {}
    lock = threading.Lock()
    clock = time.thread_time

    def wrap(owner, name, label):
        inner = owner.__dict__[name]
        kind = type(inner)
        function = inner.__func__ if kind in (classmethod, staticmethod) else inner

        def timed(*args, **kwargs):
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                spent = clock() - started
                with lock:
                    total = totals.setdefault(label, [0.0, 0])
                    total[0] += spent
                    total[1] += 1

        setattr(owner, name, kind(timed) if kind in (classmethod, staticmethod) else timed)

    for module, cls, name in calls:
        try:
            owner = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            continue
        if name in owner.__dict__:
            wrap(owner, name, f"{cls}.{name}")

    def write():
        while True:
            time.sleep(0.5)
            with lock:
                text = json.dumps(totals)
            with open(out + ".tmp", "w") as f:
                f.write(text)
            os.replace(out + ".tmp", out)

    threading.Thread(target=write, name="breakdown", daemon=True).start()

if os.environ.get("BREAKDOWN_OUT") and "serve" in sys.argv[1:2]:
    _install()
'''


def snapshot(path: Path) -> dict[str, list[float]]:
    time.sleep(0.6)  # the server writes every half second
    result: dict[str, list[float]] = json.loads(path.read_text())
    return result


def measure(tree: Path, hooks: Path, models: Path, args: argparse.Namespace,
            work: Path, lua: Path, payload_file: Path, payload: bytes) -> dict[str, float]:
    """One run: each call's CPU µs a request, and req/s."""
    out = work / "totals.json"
    out.unlink(missing_ok=True)
    process = ab.start(tree, models, args.batching == "on", True, work / "server", PORT, extra={
        "PYTHONPATH": f"{tree.resolve()}:{hooks}",  # the tree, then the hook
        "BREAKDOWN_OUT": str(out), "BREAKDOWN_CALLS": json.dumps(CALLS)})
    url = f"http://127.0.0.1:{PORT}/v2/models/{args.model}/infer"
    try:
        ab.wait_ready(process, url, payload)
        ab.wrk(url, lua, payload_file, args.conc, 3)
        before = snapshot(out)
        run = ab.wrk(url, lua, payload_file, args.conc, args.seconds)
        after = snapshot(out)
    finally:
        ab.stop(process)
    requests = run["rps"] * args.seconds
    figures = {label: (spent - before.get(label, [0.0, 0])[0]) / requests * 1e6
               for label, (spent, _) in after.items()}
    figures["req/s"] = run["rps"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, action="append", required=True,
                        help="a src folder (give several to compare them)")
    parser.add_argument("--model", choices=["mlp", "hgb"], default="mlp")
    parser.add_argument("--batching", choices=["on", "off"], default="off")
    parser.add_argument("--conc", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    models = ab.peer_models()
    payload = ab.body(models, args.model)
    runs: dict[Path, list[dict[str, float]]] = {tree: [] for tree in args.tree}
    with tempfile.TemporaryDirectory(prefix="modelyard-breakdown-") as scratch:
        work = Path(scratch)
        hooks = work / "hooks"
        hooks.mkdir()
        (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
        lua, payload_file = work / "post.lua", work / "body.json"
        lua.write_text(LUA)
        payload_file.write_bytes(payload)
        for n in range(args.rounds):
            for tree in args.tree if n % 2 == 0 else list(reversed(args.tree)):
                figures = measure(tree, hooks, models, args, work, lua, payload_file, payload)
                runs[tree].append(figures)
                print(f"round {n + 1}, {tree}: {figures['req/s']:,.0f} req/s, "
                      f"{YARDSTICK} {figures.get(YARDSTICK, float('nan')):.1f} µs a request",
                      flush=True)
    print(f"\n{args.model}, batching {args.batching}, c={args.conc}, {args.rounds} runs of "
          f"{args.seconds} s per tree; medians: µs a request (share of {YARDSTICK})")
    labels = [f"{cls}.{name}" for _, cls, name in CALLS]
    print("| call | " + " | ".join(str(tree) for tree in args.tree) + " |")
    print("|---|" + "---:|" * len(args.tree))
    for label in ["req/s", *labels]:
        cells = []
        for tree in args.tree:
            values = [run[label] for run in runs[tree] if label in run]
            if not values:
                cells.append("")
                continue
            value = statistics.median(values)
            if label == "req/s":
                cells.append(f"{value:,.0f}")
                continue
            shares = [run[label] / run[YARDSTICK] for run in runs[tree]
                      if label in run and run.get(YARDSTICK)]
            share = f" ({statistics.median(shares):.1%})" if shares else ""
            cells.append(f"{value:.2f}{share}")
        if any(cells):
            print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
