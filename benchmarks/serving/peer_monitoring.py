"""Issue 6's check: the peer bench's matrix for our server, monitoring on and off in one run.

    .venv/bin/python benchmarks/serving/peer_monitoring.py [--passes 3] [--conc 16,64]
        [--out FILE.md]

The peer bench (``../shared/peer-bench``) must be set up once (its ``run_peers.sh`` does that:
venvs, models, in-process limits); this drives its ``run_peers.py`` from ``$PEER_BENCH_HOME``
(default ``~/.cache/peer-bench``) with ``start_ours.sh`` as ``OURS_CMD``. Each pass measures
every configuration of ours (HGB and the ONNX MLP, batching off and on) twice in a row, once
with live monitoring on (the default) and once with ``OURS_MONITORING=0``, alternating which
goes first, so that the drift of a shared host between minutes hits both sides alike. The
results land in ``work/results_monitoring-on`` and ``work/results_monitoring-off`` (the peer
bench's own layout; ``report.py --tag monitoring-on`` builds its table from them).

It prints, per configuration and concurrency, the median req/s with monitoring on and off, the
cost (1 - on/off of the medians) and the median of the per-pass costs (each pass's pair ran
back to back: the steadier figure on a noisy host).

It also reads each of the server's threads' CPU from ``/proc`` while the bench runs (every
0.1 s; thread names from ``py-spy dump``, in the venv) and prints, per configuration, the cost
against the model thread: all threads' CPU a request as a multiple of the model thread's
(``thread_cpu.yardstick``), medians with monitoring on and off. The model thread does the same
work a request either way, so that ratio compares runs that the host's own speed moved apart;
on a slow, noisy host the same configuration's req/s moved by up to 47% between passes while
this ratio stayed within a few percent (``benchmarks/RESULTS.md``). For batched models it is
weaker: the model thread's work a request follows the batch sizes. For an unbatched model with
monitoring on it is wrong: the model thread stacks each group of requests for monitoring
(``serving/unbatched.py``), so its CPU grows with the rest; on a quiet host the unbatched ONNX
MLP's yardstick said 1.4 to 1.6% where req/s said 11 to 13%. Read req/s there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from thread_cpu import MODEL_THREADS, NO_SPY, SPY, cpu_by_thread, thread_names  # noqa: E402

SERVER = "modelyard serve --host 127.0.0.1 --port"  # start_ours.sh's command line
CONFIGS = ["ours__hgb__nobatch", "ours__hgb__batch", "ours__onnx__nobatch", "ours__onnx__batch"]
MODES = {"on": "1", "off": "0"}


def run(home: Path, config: str, mode: str, passes: int, conc: str) -> None:
    """One configuration, one mode, up to pass ``passes`` (run_peers.py skips what it has)."""
    env = dict(os.environ, OURS_MONITORING=MODES[mode], OURS_CMD=(
        f"bash {HERE / 'start_ours.sh'} {{port}} {{hgb}} {{onnx}} {{batch}} {{work}}"))
    command = [sys.executable, "run_peers.py", "--passes", str(passes), "--conc", conc,
               "--only", f"^{config}$", "--tag", f"monitoring-{mode}"]
    subprocess.run(command, cwd=home, env=env, check=True, timeout=1800)


class ThreadSampler:
    """Each thread's CPU seconds of the server under test, every 0.1 s, while :meth:`watch`
    runs; :meth:`yardstick` reads a time window of it."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.model_threads: set[str] = set()
        self.started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self) -> None:
        self.samples, self.model_threads = [], set()
        self.started = time.time()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        pid: int | None = None
        seen = 0.0
        while not self._stop.wait(0.1):
            if pid is None:  # (a process a lookup: only until the server is found)
                found = subprocess.run(["pgrep", "-n", "-f", SERVER], capture_output=True,
                                       text=True).stdout.split()
                if not found:
                    continue
                pid, seen = int(found[0]), time.monotonic()
            if not self.model_threads and time.monotonic() - seen > 1.0:
                names = thread_names(pid)
                self.model_threads |= {tid for tid, name in names.items()
                                       if name.startswith(MODEL_THREADS)}
            try:
                self.samples.append((time.time(), cpu_by_thread(pid)))
            except FileNotFoundError:  # it stopped: look for the next one
                pid = None

    def yardstick(self, start: float, end: float) -> float | None:
        """All threads' CPU in ``[start, end]`` (epoch seconds) over the model threads'."""
        inside = [(t, cpu) for t, cpu in self.samples if start + 0.2 <= t <= end - 0.1]
        if len(inside) < 2 or not self.model_threads:
            return None
        (_, first), (_, last) = inside[0], inside[-1]
        used = {tid: cpu - first.get(tid, 0.0) for tid, cpu in last.items()}
        model = sum(used.get(tid, 0.0) for tid in self.model_threads)
        return sum(used.values()) / model if model > 0 else None


def record_yardsticks(home: Path, sampler: ThreadSampler, config: str, mode: str,
                      passes: int, conc: str) -> None:
    """The yardstick of each run just measured, beside its result (``yardstick`` in it)."""
    for c in conc.split(","):
        path = home / "work" / f"results_monitoring-{mode}" / f"pass{passes}" / (
            f"{config}__c{c}.json")
        if not path.exists():
            continue
        end = path.stat().st_mtime
        if end < sampler.started:  # measured by an earlier run (run_peers.py skipped it)
            continue
        result = json.loads(path.read_text())
        result["yardstick"] = sampler.yardstick(end - result["duration_us"] / 1e6, end)
        path.write_text(json.dumps(result, indent=1))


def _results(home: Path, mode: str) -> list[tuple[tuple[str, int], int, dict[str, Any]]]:
    """Each stored run: (configuration, concurrency), its pass, its result."""
    found = []
    for path in sorted((home / "work" / f"results_monitoring-{mode}").glob("pass*/*.json")):
        result = json.loads(path.read_text())
        config = f"{result['server']}__{result['model']}__" + (
            "batch" if result["batch"] else "nobatch")
        found.append(((config, int(result["conc"])), int(result["pass_"]), result))
    return found


def load(home: Path, mode: str) -> tuple[dict[tuple[str, int], dict[int, float]],
                                         dict[tuple[str, int], list[float]]]:
    """req/s by (configuration, concurrency), then by pass; and the yardsticks measured."""
    rps: dict[tuple[str, int], dict[int, float]] = {}
    sticks: dict[tuple[str, int], list[float]] = {}
    for key, passed, result in _results(home, mode):
        rps.setdefault(key, {})[passed] = float(result["rps"])
        if result.get("yardstick") is not None:
            sticks.setdefault(key, []).append(float(result["yardstick"]))
    return rps, sticks


def table(home: Path) -> str:
    (on, sticks_on), (off, sticks_off) = load(home, "on"), load(home, "off")
    lines = ["| configuration | c | req/s on | req/s off | cost (medians) | cost (per pass) "
             "| yardstick on / off (medians) | cost against the model thread |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key in sorted(set(on) & set(off)):
        passes = sorted(set(on[key]) & set(off[key]))
        if not passes:
            continue
        median_on = statistics.median(on[key][p] for p in passes)
        median_off = statistics.median(off[key][p] for p in passes)
        paired = statistics.median(1 - on[key][p] / off[key][p] for p in passes)
        stick_on, stick_off = sticks_on.get(key), sticks_off.get(key)
        if stick_on and stick_off:
            a, b = statistics.median(stick_on), statistics.median(stick_off)
            against = f"{a:.3f} / {b:.3f} | {a / b - 1:.1%}"
        else:
            against = "- | -"
        lines.append(f"| {key[0]} | {key[1]} | {median_on:,.0f} | {median_off:,.0f} | "
                     f"{1 - median_on / median_off:.1%} | {paired:.1%} | {against} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--conc", default="16,64", help="concurrencies (issue 6: 16 and 64)")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    home = Path(os.environ.get("PEER_BENCH_HOME", Path.home() / ".cache" / "peer-bench"))
    if not (home / "run_peers.py").exists() or not (home / "work" / "models").exists():
        sys.exit(f"peer_monitoring: no peer bench set up in {home}; run "
                 "../shared/peer-bench/run_peers.sh once (PEER_BENCH_HOME picks the folder)")
    if not SPY.exists():
        print(f"peer_monitoring: {NO_SPY}", file=sys.stderr)
    sampler = ThreadSampler()
    for p in range(1, args.passes + 1):
        for config in CONFIGS:
            for mode in ("on", "off") if p % 2 else ("off", "on"):
                sampler.watch()
                try:
                    run(home, config, mode, p, args.conc)
                finally:
                    sampler.stop()
                record_yardsticks(home, sampler, config, mode, p, args.conc)
    text = table(home)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
