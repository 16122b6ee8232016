"""CPU per server thread and per request, with monitoring on or off (one core, wrk load).

    .venv/bin/python benchmarks/serving/thread_cpu.py on|off [--conc 16] [--seconds 10]

Starts `modelyard serve` the way `monitoring_cost.py` does (its work folder must exist: run that
script once), puts `--conc` connections of one-row ONNX MLP requests on it for `--seconds`,
and reads each thread's user + system time from `/proc/<pid>/task/*/stat` before and after.
Threads carry no names at the OS level: the script asks ``py-spy dump`` (in the venv) for the
Python names of the server's threads and prints them beside their CPU (a thread py-spy does not
know, such as gRPC's poller, shows as its OS id).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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


def thread_names(pid: int) -> dict[str, str]:
    """OS thread id → Python thread name, from ``py-spy dump`` (empty without py-spy)."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return {}
    out = subprocess.run([str(spy), "dump", "--json", "-p", str(pid)], capture_output=True,
                         text=True, timeout=60).stdout
    try:
        return {str(t["os_thread_id"]): t["thread_name"] for t in json.loads(out)}
    except (ValueError, KeyError, TypeError):
        return {}


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
        switched = switches_by_thread(server.pid)
        before, started = cpu_by_thread(server.pid), time.monotonic()
        result = mc.wrk(args.work, "mlp", args.conc, args.seconds)
        after, elapsed = cpu_by_thread(server.pid), time.monotonic() - started
        switches = switches_by_thread(server.pid)
        names = thread_names(server.pid)
    finally:
        mc.stop(server)
    requests = result["rps"] * elapsed
    used = sorted(((after[t] - before.get(t, 0.0), t) for t in after), reverse=True)
    print(f"monitoring {args.monitoring}: {result['rps']:,.0f} req/s, p99 {result['p99_ms']} ms")
    print("| thread (by CPU) | share of the core | µs per request | context switches per request |")
    print("|---|---:|---:|---:|")
    for seconds, tid in (s for s in used if s[0] > 0.01):
        name = names.get(tid, f"tid {tid}")
        switched_here = (switches.get(tid, 0) - switched.get(tid, 0)) / requests
        print(f"| {name} | {seconds / elapsed:.1%} | {seconds / requests * 1e6:.2f} "
              f"| {switched_here:.2f} |")
    total = sum(seconds for seconds, _ in used)
    every = (sum(switches.values()) - sum(switched.get(t, 0) for t in switches)) / requests
    print(f"| all | {total / elapsed:.1%} | {total / requests * 1e6:.2f} | {every:.2f} |")


if __name__ == "__main__":
    main()
