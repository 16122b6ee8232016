"""CPU per server thread and per request, with monitoring on or off (one core, wrk load).

    .venv/bin/python benchmarks/serving/thread_cpu.py on|off [--conc 16] [--seconds 10]

Starts `modelyard serve` the way `monitoring_cost.py` does (its work folder must exist: run that
script once), puts `--conc` connections of one-row ONNX MLP requests on it for `--seconds`,
and reads each thread's user + system time from `/proc/<pid>/task/*/stat` before and after.
Threads carry no names at the OS level; with monitoring off two are busy (the event loop, then
the model thread); with it on, the extra ones are the prediction-log writer (the largest),
the collector, and the monitor, which py-spy confirms.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import monitoring_cost as mc

TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_thread(pid: int) -> dict[str, float]:
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        found[tid] = (int(fields[11]) + int(fields[12])) / TICK
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("monitoring", choices=("on", "off"))
    parser.add_argument("--conc", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path("/tmp/modelyard-bench-monitoring-cost"))
    args = parser.parse_args()
    server = mc.start(args.work, args.monitoring == "on", False)
    try:
        mc.wrk(args.work, "mlp", args.conc, 3)  # warm-up
        before, started = cpu_by_thread(server.pid), time.monotonic()
        result = mc.wrk(args.work, "mlp", args.conc, args.seconds)
        after, elapsed = cpu_by_thread(server.pid), time.monotonic() - started
    finally:
        mc.stop(server)
    requests = result["rps"] * elapsed
    used = sorted(((after[t] - before.get(t, 0.0), t) for t in after), reverse=True)
    print(f"monitoring {args.monitoring}: {result['rps']:,.0f} req/s, p99 {result['p99_ms']} ms")
    print("| thread (by CPU) | share of the core | µs per request |")
    print("|---|---:|---:|")
    for rank, (seconds, _) in enumerate(s for s in used if s[0] > 0.01):
        print(f"| {rank + 1} | {seconds / elapsed:.1%} | {seconds / requests * 1e6:.2f} |")
    total = sum(seconds for seconds, _ in used)
    print(f"| all | {total / elapsed:.1%} | {total / requests * 1e6:.2f} |")


if __name__ == "__main__":
    main()
