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
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = ["ours__hgb__nobatch", "ours__hgb__batch", "ours__onnx__nobatch", "ours__onnx__batch"]
MODES = {"on": "1", "off": "0"}


def run(home: Path, config: str, mode: str, passes: int, conc: str) -> None:
    """One configuration, one mode, up to pass ``passes`` (run_peers.py skips what it has)."""
    env = dict(os.environ, OURS_MONITORING=MODES[mode], OURS_CMD=(
        f"bash {HERE / 'start_ours.sh'} {{port}} {{hgb}} {{onnx}} {{batch}} {{work}}"))
    command = [sys.executable, "run_peers.py", "--passes", str(passes), "--conc", conc,
               "--only", f"^{config}$", "--tag", f"monitoring-{mode}"]
    subprocess.run(command, cwd=home, env=env, check=True, timeout=1800)


def load(home: Path, mode: str) -> dict[tuple[str, int], dict[int, float]]:
    """req/s by (configuration, concurrency), then by pass."""
    found: dict[tuple[str, int], dict[int, float]] = {}
    for path in sorted((home / "work" / f"results_monitoring-{mode}").glob("pass*/*.json")):
        result = json.loads(path.read_text())
        config = f"{result['server']}__{result['model']}__" + (
            "batch" if result["batch"] else "nobatch")
        found.setdefault((config, int(result["conc"])), {})[int(result["pass_"])] = float(
            result["rps"])
    return found


def table(home: Path) -> str:
    on, off = load(home, "on"), load(home, "off")
    lines = ["| configuration | c | req/s on | req/s off | cost (medians) | cost (per pass) |",
             "|---|---:|---:|---:|---:|---:|"]
    for key in sorted(set(on) & set(off)):
        passes = sorted(set(on[key]) & set(off[key]))
        if not passes:
            continue
        median_on = statistics.median(on[key][p] for p in passes)
        median_off = statistics.median(off[key][p] for p in passes)
        paired = statistics.median(1 - on[key][p] / off[key][p] for p in passes)
        lines.append(f"| {key[0]} | {key[1]} | {median_on:,.0f} | {median_off:,.0f} | "
                     f"{1 - median_on / median_off:.1%} | {paired:.1%} |")
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
    for p in range(1, args.passes + 1):
        for config in CONFIGS:
            for mode in ("on", "off") if p % 2 else ("off", "on"):
                run(home, config, mode, p, args.conc)
    text = table(home)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
