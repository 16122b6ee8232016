"""Two servers alive at once, the load switching between them every few seconds: a comparison
that a drifting host weighs on equally.

    .venv/bin/python benchmarks/serving/interleaved.py --a src:off --b src:on \\
        --model mlp --batching off --conc 16,64 --rounds 12 --seconds 3
    git worktree add /tmp/base HEAD~1
    .venv/bin/python benchmarks/serving/interleaved.py --a /tmp/base/src:on --b src:on

Each side is a build (its ``src`` folder) and monitoring ``on`` or ``off``. Both servers are
started the peer bench's way (``start_ours.sh``: pinned to CPU 1, one inference thread) on
two ports and stay up; wrk (CPU 0) warms each for 3 s, then loads them in turn, ``--seconds``
each, ``--rounds`` times, the order swapped every round. The host this runs on drifts by 10 to
40% within minutes (``ab_trees.py``, which restarts a server per run, could not tell apart
builds 5% apart); here each round's two runs are seconds apart, and the figure is the median
of the rounds' ratios B/A, printed with its quartiles. Beside req/s it prints the server's
CPU a request (all its threads' user + system time over the run, ``/proc``, as
``thread_cpu.py`` reads it): what monitoring adds to each request, free of wrk's and the
loopback's share of the wall clock. On a quiet host (2026-12-07, the first half hour after
boot) its rounds agreed within ±3%; on a busy one they move as much as req/s. The idle
server's background threads wake a few times a second; their cost is not measurable beside
the noise. Needs the peer bench's models (``$PEER_BENCH_HOME/work/models``); nothing is
written.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import ab_trees as ab
from monitoring_cost import LUA
from thread_cpu import cpu_by_thread

PORTS = {"A": 18_600, "B": 18_610}


def side(text: str) -> tuple[Path, bool]:
    tree, _, mode = text.rpartition(":")
    if mode not in ("on", "off") or not tree:
        raise argparse.ArgumentTypeError(f"expected SRC:on or SRC:off, got {text!r}")
    return Path(tree), mode == "on"


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, q2, q3


def server_cpu(pid: int) -> float:
    """The server's CPU seconds so far, all threads."""
    return sum(cpu_by_thread(pid).values())


def report(what: str, runs: dict[str, list[float]], style: str) -> None:
    ratios = [b / a for a, b in zip(runs["A"], runs["B"], strict=True)]
    low, middle, high = quartiles(ratios)
    print(f"  {what}: A {style.format(statistics.median(runs['A']))}, "
          f"B {style.format(statistics.median(runs['B']))}; B/A per round: median "
          f"{middle:.3f} (quartiles {low:.3f} to {high:.3f})", flush=True)
    print("    A: " + " ".join(style.format(r) for r in runs["A"]))
    print("    B: " + " ".join(style.format(r) for r in runs["B"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=side, required=True, help="SRC:on|off (monitoring)")
    parser.add_argument("--b", type=side, required=True, help="SRC:on|off (monitoring)")
    parser.add_argument("--model", choices=["mlp", "hgb"], default="mlp")
    parser.add_argument("--batching", choices=["on", "off"], default="off")
    parser.add_argument("--conc", default="16,64")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    models = ab.peer_models()
    payload = ab.body(models, args.model)
    sides = {"A": args.a, "B": args.b}
    with tempfile.TemporaryDirectory(prefix="modelyard-interleaved-") as scratch:
        work = Path(scratch)
        lua, payload_file = work / "post.lua", work / "body.json"
        lua.write_text(LUA)
        payload_file.write_bytes(payload)
        urls = {label: f"http://127.0.0.1:{PORTS[label]}/v2/models/{args.model}/infer"
                for label in sides}
        processes = {}
        try:
            for label, (tree, monitoring) in sides.items():
                processes[label] = ab.start(tree, models, args.batching == "on", monitoring,
                                            work / label, PORTS[label])
            for label, process in processes.items():
                ab.wait_ready(process, urls[label], payload)
            for conc in (int(c) for c in args.conc.split(",")):
                for label in sides:
                    ab.wrk(urls[label], lua, payload_file, conc, 3)
                runs: dict[str, list[float]] = {"A": [], "B": []}
                cpu: dict[str, list[float]] = {"A": [], "B": []}  # µs a request
                for n in range(args.rounds):
                    for label in ("A", "B") if n % 2 == 0 else ("B", "A"):
                        before = server_cpu(processes[label].pid)
                        run = ab.wrk(urls[label], lua, payload_file, conc, args.seconds)
                        spent = server_cpu(processes[label].pid) - before
                        runs[label].append(run["rps"])
                        cpu[label].append(spent / (run["rps"] * args.seconds) * 1e6)
                print(f"c={conc}: {args.rounds} rounds of {args.seconds} s")
                report("req/s", runs, "{:,.0f}")
                report("CPU µs a request", cpu, "{:.1f}")
        finally:
            for process in processes.values():
                ab.stop(process)


if __name__ == "__main__":
    main()
