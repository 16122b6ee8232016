"""How much of a request's CPU is the HTTP layer? Three servers on one core, same wrk load.

    .venv/bin/python benchmarks/serving/http_probe.py [--seconds 8] [--conc 16]

1. ``uvicorn``: the peer bench's raw ASGI floor (``floorraw``): uvicorn + httptools + uvloop
   and an ASGI app that reads the body and answers a constant JSON.
2. ``protocol``: the same answer from a hand-written ``asyncio.Protocol`` on uvloop that
   parses with httptools directly (keep-alive, Content-Length bodies; nothing else) — what a
   server pays for HTTP/1.1 itself, without ASGI's per-request task and message dicts.
3. ``protocol+infer``: that protocol doing our data plane's work for the ONNX MLP: msgspec
   decodes the OIP body, numpy builds the tensor, one hop to a model thread (a
   ``SimpleQueue`` in, ``call_soon_threadsafe`` out, as ``serving/executor.py``), onnxruntime
   with one thread, orjson encodes the answer.

Each server is pinned to CPU 1 and wrk to CPU 0, as in the peer bench. The figures say how
far a hand-written HTTP layer would take the issue's "≥ 50 % of the raw ASGI floor" target;
they are a probe for that decision, not a server: (2) and (3) skip everything a real server
must handle (chunked bodies, limits, errors, pipelining, graceful shutdown).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

PORT = 19310
BODY = b'{"label":0}'
HERE = Path(__file__).resolve().parent
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY_FILE"), "rb"); wrk.body = f:read("*a"); f:close()
"""

UVICORN_APP = '''
BODY = b'{"label":0}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"11")]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
'''


class Tensor(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class Request(msgspec.Struct):
    inputs: list[Tensor]


def serve_protocol(port: int, infer: bool, model_path: str) -> None:
    """The hand-written server (runs in the child process)."""
    import asyncio
    import queue
    import threading

    import httptools
    import numpy as np
    import orjson
    import uvloop

    session = None
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    if infer:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])

        def work() -> None:
            while True:
                loop, future, x = jobs.get()
                result = session.run(["label"], {"X": x})[0]
                loop.call_soon_threadsafe(future.set_result, result)

        threading.Thread(target=work, daemon=True).start()

    decoder = msgspec.json.Decoder(Request)

    class Http(asyncio.Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.body: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            body, self.body = b"".join(self.body), []
            if not infer:
                self.reply(BODY)
                return
            request = decoder.decode(body)
            tensor = request.inputs[0]
            x = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            future.add_done_callback(self.answered)
            jobs.put((loop, future, x))

        def answered(self, future: asyncio.Future) -> None:
            label = future.result()
            self.reply(orjson.dumps({"model_name": "mlp", "outputs": [
                {"name": "label", "shape": list(label.shape), "datatype": "INT64",
                 "data": label}]}, option=orjson.OPT_SERIALIZE_NUMPY))

        def reply(self, payload: bytes) -> None:
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\n\r\n%s" % (len(payload), payload))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Http, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


def start(kind: str, model_path: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kind == "uvicorn":
        folder = Path(tempfile.mkdtemp())
        (folder / "probe_app.py").write_text(UVICORN_APP)
        command = [sys.executable, "-m", "uvicorn", "probe_app:app", "--app-dir", str(folder),
                   "--host", "127.0.0.1", "--port", str(PORT), "--http", "httptools",
                   "--loop", "uvloop", "--no-access-log", "--log-level", "warning"]
    else:
        command = [sys.executable, __file__, "--child", kind, "--model", model_path]
    server = subprocess.Popen(["taskset", "-c", "1", *command], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{PORT}/", content=probe_body(), timeout=1)
            return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    sys.exit(f"{kind} did not start")


def probe_body() -> bytes:
    return json.dumps({"inputs": [{"name": "X", "shape": [1, 64], "datatype": "FP32",
                                   "data": [0.25] * 64}]}).encode()


def wrk(conc: int, seconds: int) -> float:
    folder = Path(tempfile.mkdtemp())
    (folder / "post.lua").write_text(LUA)
    (folder / "body.json").write_bytes(probe_body())
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", f"-c{conc}", f"-d{seconds}s", "-s",
         str(folder / "post.lua"), f"http://127.0.0.1:{PORT}/v2/models/mlp/infer"],
        env={**os.environ, "BODY_FILE": str(folder / "body.json")}, capture_output=True,
        text=True, check=True, timeout=seconds + 30).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--conc", type=int, default=16)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--model", default="/tmp/modelyard-bench-monitoring-cost/mlp.onnx",
                        help="the ONNX MLP (benchmarks/serving/monitoring_cost.py writes it)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        serve_protocol(PORT, args.child == "protocol+infer", args.model)
        return
    results: dict[str, list[float]] = {}
    for _ in range(args.passes):
        for kind in ("uvicorn", "protocol", "protocol+infer"):
            server = start(kind, args.model)
            try:
                wrk(args.conc, 2)  # warm-up
                results.setdefault(kind, []).append(wrk(args.conc, args.seconds))
            finally:
                server.terminate()
                server.wait(timeout=30)
    floor = max(results["uvicorn"])
    print(f"| server | req/s at c={args.conc} (best of {args.passes}) | of the raw ASGI floor |")
    print("|---|---:|---:|")
    for kind, values in results.items():
        print(f"| {kind} | {max(values):,.0f} | {max(values) / floor:.0%} |")


if __name__ == "__main__":
    main()
