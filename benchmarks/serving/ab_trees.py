"""Two builds of modelyard in one run: the peer bench's set-up, A and B alternating.

    git worktree add /tmp/base HEAD~1     # the build to compare against
    .venv/bin/python benchmarks/serving/ab_trees.py --a /tmp/base/src --b src \\
        --model mlp --batching on --conc 1,16 --passes 4

Each run starts `benchmarks/serving/start_ours.sh` (the peer bench's own launcher: server pinned
to CPU 1, one inference thread, monitoring off unless ``--monitoring``) with ``PYTHONPATH`` set to
one tree's ``src``, so both builds run in this repo's virtual environment with the same
libraries. wrk (pinned to CPU 0) sends the peer bench's one-row OIP body for 3 s of warm-up, then
``--seconds``. The order alternates per pass (A B, then B A), so a host that drifts weighs on
both. Prints every run and, per concurrency, the medians and B against A; nothing is written.
Needs the peer bench's models (``$PEER_BENCH_HOME/work/models``, built by its ``run_peers.sh``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from monitoring_cost import LUA  # wrk posts the file named by BODY_FILE (this folder's script)

HERE = Path(__file__).resolve().parent
PORT = 18_580


def peer_models() -> Path:
    """Where the peer bench keeps its models: ``$PEER_BENCH_HOME/work/models``."""
    home = Path(os.environ.get("PEER_BENCH_HOME", Path.home() / ".cache" / "peer-bench"))
    return home / "work" / "models"


def body(models: Path, model: str) -> bytes:
    sample = json.loads((models / "samples.json").read_text())
    key, name = ("hgb", "predict") if model == "hgb" else ("onnx", "X")
    row = sample[key]["row"]
    return json.dumps({"inputs": [{"name": name, "shape": [1, len(row)], "datatype": "FP32",
                                   "data": row}]}).encode()


def start(tree: Path, models: Path, batching: bool, monitoring: bool, work: Path,
          port: int = PORT, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``tree``'s server on ``port``, the peer bench's way; ``extra``: more environment (it
    may set PYTHONPATH too, e.g. the tree followed by a folder of hooks)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(PYTHONPATH=str(tree.resolve()), OURS_MONITORING="1" if monitoring else "0",
               OMP_NUM_THREADS="1")
    env.update(extra or {})
    cmd = ["taskset", "-c", "1", "bash", str(HERE / "start_ours.sh"), str(port),
           str(models / "hgb.joblib"), str(models / "model.onnx"), "1" if batching else "0",
           str(work)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def wait_ready(process: subprocess.Popen[bytes], url: str, payload: bytes) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            if httpx.post(url, content=payload, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server was not ready in 120 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wrk(url: str, lua: Path, payload_file: Path, conc: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", f"-c{conc}", f"-d{seconds}s", "--latency",
         "--timeout", "5s", "-s", str(lua), url],
        env=dict(os.environ, BODY_FILE=str(payload_file)), capture_output=True, text=True,
        check=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
    assert p50 is not None, out
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p50.group(2)]
    if re.search(r"Non-2xx|Socket errors", out):
        raise SystemExit(f"wrk saw errors:\n{out}")
    return {"rps": rps, "p50_ms": float(p50.group(1)) * scale}


def batch_counts(base: str) -> tuple[float, float]:
    """(batches, rows) the server has run so far, from its metrics."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    total = {"count": 0.0, "sum": 0.0}
    for line in text.splitlines():
        match = re.match(r"modelyard_batch_size_rows_(count|sum)\{.*\} ([\d.e+]+)$", line)
        if match:
            total[match.group(1)] += float(match.group(2))
    return total["count"], total["sum"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=Path, required=True, help="the src folder of build A")
    ap.add_argument("--b", type=Path, required=True, help="the src folder of build B")
    ap.add_argument("--model", choices=["mlp", "hgb"], default="mlp")
    ap.add_argument("--batching", choices=["on", "off"], default="on")
    ap.add_argument("--monitoring", action="store_true")
    ap.add_argument("--conc", default="1,16")
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=10)
    a = ap.parse_args()
    models = peer_models()
    concs = [int(c) for c in a.conc.split(",")]
    base = f"http://127.0.0.1:{PORT}"
    url = f"{base}/v2/models/{a.model}/infer"
    payload = body(models, a.model)
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-ab-") as scratch:
        work = Path(scratch)
        lua, payload_file = work / "post.lua", work / "body.json"
        lua.write_text(LUA)
        payload_file.write_bytes(payload)
        for n in range(a.passes):
            order = [("A", a.a), ("B", a.b)] if n % 2 == 0 else [("B", a.b), ("A", a.a)]
            for label, tree in order:
                process = start(tree, models, a.batching == "on", a.monitoring, work / label)
                try:
                    wait_ready(process, url, payload)
                    for conc in concs:
                        wrk(url, lua, payload_file, conc, 3)
                        batches, rows = batch_counts(base)
                        run = wrk(url, lua, payload_file, conc, a.seconds)
                        batches_after, rows_after = batch_counts(base)
                        run["rows_a_batch"] = ((rows_after - rows)
                                               / max(1.0, batches_after - batches))
                        results.setdefault((label, conc), []).append(run)
                        print(f"pass {n + 1} {label} c={conc}: {run['rps']:,.0f} req/s, "
                              f"p50 {run['p50_ms']:.3f} ms, {run['rows_a_batch']:.1f} rows a batch",
                              flush=True)
                finally:
                    stop(process)
    print(f"\n{a.model}, batching {a.batching}, monitoring {'on' if a.monitoring else 'off'}, "
          f"{a.passes} passes of {a.seconds} s (medians)")
    print("| conc | A req/s | B req/s | B/A | A p50 ms | B p50 ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for conc in concs:
        ra = results[("A", conc)]
        rb = results[("B", conc)]
        rps_a = statistics.median(r["rps"] for r in ra)
        rps_b = statistics.median(r["rps"] for r in rb)
        p50_a = statistics.median(r["p50_ms"] for r in ra)
        p50_b = statistics.median(r["p50_ms"] for r in rb)
        print(f"| {conc} | {rps_a:,.0f} | {rps_b:,.0f} | {rps_b / rps_a:.3f} | {p50_a:.3f} | "
              f"{p50_b:.3f} |")


if __name__ == "__main__":
    main()
