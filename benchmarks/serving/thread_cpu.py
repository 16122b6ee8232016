"""CPU per server thread and per request, with monitoring on or off (one core, wrk load).

    .venv/bin/python benchmarks/serving/thread_cpu.py on|off [--conc 16] [--seconds 10]
    .venv/bin/python benchmarks/serving/thread_cpu.py compare [--pairs 3] [--batching]

Starts `modelyard serve` the way `monitoring_cost.py` does (its work folder must exist: run that
script once), puts `--conc` connections of one-row requests (ONNX MLP, or `--model hgb`) on it
for `--seconds`, and reads each thread's user + system time from `/proc/<pid>/task/*/stat`
before and after. `compare` alternates monitoring off and on `--pairs` times and prints the
medians: this machine's run-to-run noise (±8 %, up to 47 % on a slow host) is larger than some
effects worth measuring. Both modes also print all threads' CPU a request as a multiple of the
model thread's (``yardstick``): the model thread's work does not depend on monitoring, so that
ratio compares runs the host's own speed moved apart.
Threads carry no names at the OS level: the script asks ``py-spy dump`` (in the venv) for the
Python names of the server's threads and prints them beside their CPU (a thread py-spy does not
know, such as gRPC's poller, shows as its OS id).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import monitoring_cost as mc

TICK = os.sysconf("SC_CLK_TCK")
MODEL_THREADS = "modelyard-infer-"  # the inference pool's threads (serving/executor.py)


def cpu_by_thread(pid: int) -> dict[str, float]:
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        found[tid] = (int(fields[11]) + int(fields[12])) / TICK
    return found


def switches_by_thread(pid: int) -> dict[str, int]:
    """Context switches (voluntary + involuntary) of each thread so far."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:
            continue
        found[tid] = sum(int(line.split()[1]) for line in status.splitlines()
                         if line.endswith("ctxt_switches") or "ctxt_switches:" in line)
    return found


SPY = Path(sys.executable).parent / "py-spy"
NO_SPY = ("py-spy is not in this venv (pip install -e '.[bench]'): threads go unnamed, "
          "and the model thread's yardstick is left out")


def thread_names(pid: int) -> dict[str, str]:
    """OS thread id → Python thread name, from ``py-spy dump`` (empty without py-spy)."""
    if not SPY.exists():
        return {}
    out = subprocess.run([str(SPY), "dump", "--json", "-p", str(pid)], capture_output=True,
                         text=True, timeout=60).stdout
    try:
        # (py-spy 0.4 gives ``null`` for a thread it cannot name, such as one C++ started)
        return {str(t["os_thread_id"]): t.get("thread_name") or "" for t in json.loads(out)}
    except (ValueError, KeyError, TypeError):
        return {}


def measure(work: Path, monitoring: bool, conc: int, seconds: int, batch: bool = False,
            model: str = "mlp") -> dict[str, object]:
    """One server run: req/s, p99 and, per thread name, CPU µs and context switches a request."""
    server = mc.start(work, monitoring, batch)
    try:
        mc.wrk(work, model, conc, 3)  # warm-up
        switched = switches_by_thread(server.pid)
        before, started = cpu_by_thread(server.pid), time.monotonic()
        result = mc.wrk(work, model, conc, seconds)
        after, elapsed = cpu_by_thread(server.pid), time.monotonic() - started
        switches = switches_by_thread(server.pid)
        names = thread_names(server.pid)
    finally:
        mc.stop(server)
    requests = result["rps"] * elapsed
    threads: dict[str, list[float]] = {}
    for tid, total in after.items():
        used = total - before.get(tid, 0.0)
        if used <= 0.01:
            continue
        entry = threads.setdefault(names.get(tid, f"tid {tid}"), [0.0, 0.0, 0.0])
        entry[0] += used / elapsed
        entry[1] += used / requests * 1e6
        entry[2] += (switches.get(tid, 0) - switched.get(tid, 0)) / requests
    return {"rps": result["rps"], "p99_ms": result["p99_ms"], "threads": threads}


def yardstick(run: dict[str, object]) -> float | None:
    """All threads' CPU a request as a multiple of the model threads' (None without them).

    The model threads do the same work a request whether monitoring is on or off (one ORT
    call, one share of a batch), so this ratio compares runs that the host's own speed moved
    apart: on a noisy host the same configuration's req/s moved by up to 47% between runs a
    minute apart, and the model thread's µs a request with it. Not for an unbatched model with
    monitoring on: its model thread also stacks each group for monitoring
    (``serving/unbatched.py``), which the ratio then hides."""
    threads: dict[str, list[float]] = run["threads"]  # type: ignore[assignment]
    model = sum(t[1] for name, t in threads.items() if name.startswith(MODEL_THREADS))
    return sum(t[1] for t in threads.values()) / model if model else None


def report(monitoring: str, run: dict[str, object]) -> None:
    threads: dict[str, list[float]] = run["threads"]  # type: ignore[assignment]
    print(f"monitoring {monitoring}: {run['rps']:,.0f} req/s, p99 {run['p99_ms']} ms")
    print("| thread (by CPU) | share of the core | µs per request | context switches per request |")
    print("|---|---:|---:|---:|")
    for name, (share, micros, switched) in sorted(threads.items(), key=lambda t: -t[1][1]):
        print(f"| {name} | {share:.1%} | {micros:.2f} | {switched:.2f} |")
    share = sum(t[0] for t in threads.values())
    micros = sum(t[1] for t in threads.values())
    switched = sum(t[2] for t in threads.values())
    print(f"| all | {share:.1%} | {micros:.2f} | {switched:.2f} |")
    ratio = yardstick(run)
    if ratio is not None:
        print(f"all threads' CPU a request: {ratio:.3f} times the model thread's")


def compare(work: Path, pairs: int, conc: int, seconds: int, batch: bool, model: str) -> None:
    """Off and on alternating, ``pairs`` times; medians per thread and the cost in req/s."""
    runs: dict[str, list[dict[str, object]]] = {"off": [], "on": []}
    for n in range(pairs):
        for monitoring in (("off", "on") if n % 2 == 0 else ("on", "off")):
            runs[monitoring].append(measure(work, monitoring == "on", conc, seconds, batch,
                                            model))
    median = statistics.median
    rps = {k: median(float(r["rps"]) for r in v) for k, v in runs.items()}  # type: ignore[arg-type]
    names = sorted({n for v in runs.values() for r in v for n in r["threads"]})  # type: ignore[attr-defined]
    print(f"{model}, c={conc}, batching {'on' if batch else 'off'}, {pairs} pairs of "
          f"{seconds} s, medians")
    print("| | monitoring off | monitoring on |")
    print("|---|---:|---:|")
    print(f"| req/s | {rps['off']:,.0f} | {rps['on']:,.0f} |")
    for name in names:
        cells = [median(r["threads"].get(name, [0, 0, 0])[1] for r in runs[k])  # type: ignore[attr-defined]
                 for k in ("off", "on")]
        print(f"| {name}, µs a request | {cells[0]:.2f} | {cells[1]:.2f} |")
    totals = [median(sum(t[1] for t in r["threads"].values()) for r in runs[k])  # type: ignore[attr-defined]
              for k in ("off", "on")]
    print(f"| all threads, µs a request | {totals[0]:.2f} | {totals[1]:.2f} |")
    print(f"cost: {1 - rps['on'] / rps['off']:.1%} of req/s; "
          f"{totals[1] / totals[0] - 1:.1%} more CPU a request")
    ratios = {k: [r for r in map(yardstick, v) if r is not None] for k, v in runs.items()}
    if ratios["off"] and ratios["on"]:
        print(f"cost against the model thread (see yardstick): "
              f"{median(ratios['on']) / median(ratios['off']) - 1:.1%} more CPU a request "
              f"(per run: off " + " / ".join(f"{r:.3f}" for r in ratios["off"])
              + "; on " + " / ".join(f"{r:.3f}" for r in ratios["on"]) + ")")
    print("req/s per run: off " + " / ".join(f"{float(r['rps']):,.0f}" for r in runs["off"])  # type: ignore[arg-type]
          + "; on " + " / ".join(f"{float(r['rps']):,.0f}" for r in runs["on"]))  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("monitoring", choices=("on", "off", "compare"))
    parser.add_argument("--conc", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=3, help="with compare: off/on pairs")
    parser.add_argument("--batching", action="store_true", help="32-row batches, no delay")
    parser.add_argument("--model", choices=("mlp", "hgb"), default="mlp")
    parser.add_argument("--work", type=Path, default=Path("/tmp/modelyard-bench-monitoring-cost"))
    args = parser.parse_args()
    if not SPY.exists():
        print(f"thread_cpu: {NO_SPY}", file=sys.stderr)
    if not (args.work / "home").exists():  # monitoring_cost.py's models, made once
        args.work.mkdir(parents=True, exist_ok=True)
        mc.make_models(args.work)
    if args.monitoring == "compare":
        compare(args.work, args.pairs, args.conc, args.seconds, args.batching, args.model)
        return
    report(args.monitoring, measure(args.work, args.monitoring == "on", args.conc, args.seconds,
                                    args.batching, args.model))


if __name__ == "__main__":
    main()
