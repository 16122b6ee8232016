"""What live monitoring costs in throughput: `modelyard serve` with monitoring on and off.

    .venv/bin/python benchmarks/serving/monitoring_cost.py [--passes 3] [--duration 15]

The peer-bench set-up (see README.md beside this file): the server pinned to CPU 1 with one
inference thread, wrk pinned to CPU 0, one-row Open Inference Protocol requests (MLServer's body),
3 s of warm-up then ``--duration`` seconds at c=16 and c=64. The same two models: (A)
HistGradientBoosting on breast_cancer (30 FP32 features; registered with its training data as the
reference, so the monitor has drift to compute) and (B) an ONNX MLP 64-256-256-10 on digits
(onnxruntime, one thread). Each configuration runs with batching off (``max_batch_size`` 1) and on
(32 rows, no added delay).

Monitoring on is the default of `modelyard serve`: every request's inputs and outputs go to the
window collector (a hand-off, sketched in a background thread), the prediction log (100 %
sampled, batched into SQLite), and the monitor judges each 60-s window. Off is
``MODELYARD_MONITORING__ENABLED=false``. On and off alternate within each pass (off-on, then
on-off in the next pass), so slow drift of the machine falls on both. After each "on" run the
script counts the prediction-log rows, to show that the monitoring did its work.

Output: a Markdown table (median req/s over passes, cost = 1 - on/off, p99) printed and written
to ``results/<date>-monitoring-cost.md``; raw runs in the ``.jsonl`` beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODELYARD = REPO / ".venv" / "bin" / "modelyard"
PORT = 18_480
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY_FILE"), "r")
wrk.body = f:read("*a")
f:close()
"""


def make_models(work: Path) -> dict[str, Any]:
    """Register both models in a fresh home; returns each model's request body."""
    import pandas as pd
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.neural_network import MLPClassifier

    import modelyard
    from modelyard.settings import Settings

    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(home=home)
    cancer = load_breast_cancer()
    x = pd.DataFrame(cancer.data.astype(np.float32), columns=[f"f{i}" for i in range(30)])
    hgb = HistGradientBoostingClassifier(random_state=0).fit(x, cancer.target)
    modelyard.register(hgb, "hgb", reference=x, labels=cancer.target, settings=settings)
    digits = load_digits()
    xd = (digits.data / 16).astype(np.float32)
    mlp = MLPClassifier((256, 256), max_iter=200, random_state=0).fit(xd, digits.target)
    onnx_path = work / "mlp.onnx"
    onnx_path.write_bytes(to_onnx(mlp, xd[:1], options={"zipmap": False}).SerializeToString())
    modelyard.register(onnx_path, "mlp", settings=settings)
    bodies = {
        "hgb": {"inputs": [{"name": "predict", "shape": [1, 30], "datatype": "FP32",
                            "data": x.iloc[0].tolist()}]},
        "mlp": {"inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP32",
                            "data": xd[0].tolist()}]},
    }
    for model, body in bodies.items():
        (work / f"{model}.json").write_text(json.dumps(body))
    (work / "post.lua").write_text(LUA)
    return bodies


SETTINGS: dict[str, str] = {}  # --setting KEY=VALUE: MODELYARD_KEY for the monitored server


def server_env(work: Path, monitoring: bool, batch: bool) -> dict[str, str]:
    common = {"max_batch_size": 32 if batch else 1, "max_delay_ms": 0, "max_queue": 1024,
              "cache_entries": 0, "onnx_threads": 1}
    models = {"hgb": {**common, "outputs": ["predict"]}, "mlp": {**common, "outputs": ["label"]}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(
        MODELYARD_HOME=str(work / "home"),
        MODELYARD_SERVING__INFERENCE_THREADS="1",
        MODELYARD_SERVING__WORKERS="1",
        MODELYARD_SERVING__MODELS=json.dumps(models),
        MODELYARD_MONITORING__ENABLED="true" if monitoring else "false",
        OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
    )
    if monitoring:
        env.update({f"MODELYARD_{key}": value for key, value in SETTINGS.items()})
    return env


def start(work: Path, monitoring: bool, batch: bool) -> subprocess.Popen[bytes]:
    log = (work / "server.log").open("ab")
    command = ["taskset", "-c", "1", str(MODELYARD), "serve", "--host", "127.0.0.1", "--port",
               str(PORT), "--grpc-port", str(PORT + 1), "--workers", "1"]
    server = subprocess.Popen(command, env=server_env(work, monitoring, batch), stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode}; see {work / 'server.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/v2/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(server)
    sys.exit("the server was not ready within 120 s")


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def wrk(work: Path, model: str, conc: int, seconds: int) -> dict[str, float]:
    command = ["taskset", "-c", "0", "wrk", "-t1", f"-c{conc}", f"-d{seconds}s", "--timeout", "5s",
               "--latency", "-s", str(work / "post.lua"),
               f"http://127.0.0.1:{PORT}/v2/models/{model}/infer"]
    env = {**os.environ, "BODY_FILE": str(work / f"{model}.json")}
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 30,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    return {"rps": rps, "p99_ms": p99_ms, "non_2xx": int(errors.group(1)) if errors else 0}


def logged_rows(work: Path) -> int:
    database = work / "home" / "modelyard.db"
    with sqlite3.connect(database) as conn:
        return int(conn.execute("select count(*) from prediction_log").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--models", default="hgb,mlp")
    parser.add_argument("--conc", default="16,64")
    parser.add_argument("--work", type=Path, default=Path("/tmp/modelyard-bench-monitoring-cost"))
    parser.add_argument("--batching", choices=("off", "on", "both"), default="both")
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the monitored server, e.g. MONITORING__LOG_SINK=parquet")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    for item in args.setting:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"--setting {item!r} is not KEY=VALUE")
        SETTINGS[key] = value
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    args.work.mkdir(parents=True, exist_ok=True)
    make_models(args.work)
    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.date.today().isoformat()
    raw = out_dir / f"{stamp}-monitoring-cost.jsonl"
    runs: list[dict[str, Any]] = []
    concs = [int(c) for c in args.conc.split(",")]
    for n in range(args.passes):
        for batch in {"off": (False,), "on": (True,), "both": (False, True)}[args.batching]:
            order = (False, True) if n % 2 == 0 else (True, False)
            for monitoring in order:
                server = start(args.work, monitoring, batch)
                try:
                    before = logged_rows(args.work)
                    for model in args.models.split(","):
                        wrk(args.work, model, 4, args.warmup)
                        for conc in concs:
                            run = {"pass": n + 1, "model": model, "batch": batch,
                                   "monitoring": monitoring, "conc": conc,
                                   **wrk(args.work, model, conc, args.duration)}
                            runs.append(run)
                            print(json.dumps(run), file=sys.stderr, flush=True)
                            with raw.open("a") as sink:
                                sink.write(json.dumps(run) + "\n")
                finally:
                    stop(server)
                if monitoring:
                    runs.append({"pass": n + 1, "batch": batch, "logged_rows":
                                 logged_rows(args.work) - before})
    text = report(runs, args)
    (out_dir / f"{stamp}-monitoring-cost.md").write_text(text)
    print(text)


def report(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "| model | batching | c | req/s off | req/s on | cost | p99 ms off | p99 ms on | "
        "req/s on per pass |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    worst = 0.0
    for model in args.models.split(","):
        for batch in (False, True):
            for conc in [int(c) for c in args.conc.split(",")]:
                def pick(on: bool, key: str, m: str = model, b: bool = batch,
                         c: int = conc) -> list[float]:
                    return [r[key] for r in runs if r.get("model") == m and r["batch"] == b
                            and r.get("conc") == c and r.get("monitoring") == on]
                if not pick(False, "rps") or not pick(True, "rps"):
                    continue  # a batching mode this run left out
                off = statistics.median(pick(False, "rps"))
                on = statistics.median(pick(True, "rps"))
                cost = 1 - on / off
                worst = max(worst, cost)
                lines.append(
                    f"| {model} | {'32 rows' if batch else 'off'} | {conc} | {off:,.0f} | "
                    f"{on:,.0f} | {cost:+.1%} | {statistics.median(pick(False, 'p99_ms')):.2f} | "
                    f"{statistics.median(pick(True, 'p99_ms')):.2f} | "
                    + " / ".join(f"{v:,.0f}" for v in pick(True, "rps")) + " |"
                )
    logged = [r["logged_rows"] for r in runs if "logged_rows" in r]
    errors = sum(r.get("non_2xx", 0) for r in runs)
    lines += [
        "",
        f"- Largest throughput cost of monitoring: {worst:.1%} (target ≤ 10 %).",
        f"- Prediction-log rows written per monitored server run: "
        f"{', '.join(f'{n:,}' for n in logged)} (every request of the run, warm-up included).",
        f"- Non-2xx responses over all runs: {errors}.",
        f"- Command: `.venv/bin/python benchmarks/serving/monitoring_cost.py "
        f"{' '.join(sys.argv[1:])}`; median of {args.passes} passes, "
        f"{args.duration} s each after {args.warmup} s of warm-up; server on CPU 1, wrk on CPU 0.",
        f"- Date: {dt.date.today().isoformat()}; machine: {os.cpu_count()} vCPU, "
        f"{os.uname().sysname} {os.uname().release}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
