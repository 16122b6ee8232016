"""The serving part of ``modelyard demo``: a real server in the background, real clients."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modelyard.cli._common import console
from modelyard.errors import ModelyardError
from modelyard.settings import Settings


def serve_and_query(config: Settings, model: str, rows: np.ndarray, requests: int = 300, *,
                    window_s: float = 60.0, then: Callable[[str], bool] | None = None,
                    config_file: Path | None = None) -> bool:
    """Start `modelyard serve` on free loopback ports (monitoring windows of ``window_s``;
    ``config_file`` as its ``MODELYARD_CONFIG``),
    send ``requests`` one-row requests over REST (tritonclient.http, binary tensors) and a few
    over gRPC, print latency percentiles, run ``then(url)``, stop the server with SIGTERM.
    Returns whether every answer matched the in-process model and ``then`` succeeded."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from modelyard.api import load

    port, grpc_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(
        MODELYARD_HOME=str(config.home.resolve()),
        MODELYARD_DATABASE_URL=config.resolved_database_url,
        MODELYARD_ARTIFACTS_URI=config.resolved_artifacts_uri,
        MODELYARD_MONITORING__WINDOW_S=str(window_s),
    )
    if config_file is not None:
        env["MODELYARD_CONFIG"] = str(config_file.resolve())
    command = [sys.executable, "-m", "modelyard.cli", "serve", "--port", str(port),
               "--grpc-port", str(grpc_port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        http = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        _wait_ready(http, server)
        console.print(f"serving on http://127.0.0.1:{port} (REST) and 127.0.0.1:{grpc_port} "
                      f"(gRPC), pid {server.pid}")
        expected = load(f"{model}@champion", settings=config).predict(rows)
        latencies, matches = [], 0
        for i in range(requests):
            row = rows[i % len(rows)][None, :]
            tensor = httpclient.InferInput("input", list(row.shape), "FP64")
            tensor.set_data_from_numpy(row, binary_data=True)
            wanted = [httpclient.InferRequestedOutput("predict", binary_data=True)]
            began = time.perf_counter()
            answer = http.infer(model, [tensor], outputs=wanted)
            latencies.append(time.perf_counter() - began)
            matches += int(answer.as_numpy("predict")[0] == expected[i % len(rows)])
        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        tensor = grpcclient.InferInput("input", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows)
        over_grpc = grpc.infer(model, [tensor], client_timeout=30).as_numpy("predict")
        grpc_ok = bool(np.array_equal(over_grpc, expected))
        p50, p90, p99 = (np.percentile(latencies, q) * 1e3 for q in (50, 90, 99))
        console.print(
            f"{requests} REST requests (tritonclient, one row each): p50 {p50:.2f} ms, "
            f"p90 {p90:.2f} ms, p99 {p99:.2f} ms; {matches}/{requests} answers match the "
            f"in-process model; {len(rows)} rows over gRPC "
            f"{'match' if grpc_ok else 'DO NOT match'}"
        )
        example = config.home / "demo-request.json"
        example.write_text(json.dumps({"inputs": [{
            "name": "input", "shape": [1, rows.shape[1]], "datatype": "FP64",
            "data": rows[0].tolist(),
        }]}))
        console.print("with `modelyard serve` running (port 8080), try:", markup=False)
        for line in (
            f"  curl http://127.0.0.1:8080/v2/models/{model}            (OIP metadata)",
            f"  curl http://127.0.0.1:8080/v2/models/{model}/infer -d @{example}",
            "  curl http://127.0.0.1:8080/metrics                        (Prometheus)",
        ):
            console.print(line, markup=False)
        looped = then(f"http://127.0.0.1:{port}") if then is not None else True
        return matches == requests and grpc_ok and looped
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            code = server.wait()
        console.print(f"server stopped (exit code {code})")


def _wait_ready(client: object, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            message = server.stderr.read() if server.stderr else ""
            raise ModelyardError(f"the demo server exited: {message.strip()}")
        try:
            if client.is_server_ready():  # type: ignore[attr-defined]
                return
        except Exception:  # not listening yet
            pass
        time.sleep(0.2)
    raise ModelyardError("the demo server did not become ready within 60 s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

