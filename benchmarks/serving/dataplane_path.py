"""The REST inference path's own work per request, without HTTP: a figure that moves with our code.

    taskset -c 1 .venv/bin/python benchmarks/serving/dataplane_path.py [--batching on|off]
        [--conc 16] [--rounds 8000] [--repeats 3] [--model mlp|hgb]

The peer bench times the whole server on a shared machine, where one host differs from another
by 20% and the HTTP layer (uvloop, the kernel's loopback) is half of a request. This script
drives what the HTTP protocol calls for each ``POST /v2/models/{m}/infer``
(:meth:`RestApp.submit_infer`: headers, OIP JSON decoding, the data plane, the batcher, the
model thread, the answer's encoding) in one process on a uvloop event loop, with ``--conc``
requests in flight per round, and prints the CPU time per request (median of ``--repeats``).

Models and bodies are those of ``monitoring_cost.py`` (ONNX MLP on digits, HistGradientBoosting
on breast_cancer), registered in a fresh folder; monitoring is off (the live service is not
built here), one inference thread, batches of up to 32 rows without added delay when
``--batching on``. Pin it to one core as above, as the peer bench pins servers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import monitoring_cost as mc

import modelyard
from modelyard.serving import build_dataplane
from modelyard.serving.executor import InferencePool
from modelyard.serving.rest.app import Reply, RequestHeaders, RestApp
from modelyard.serving.types import request_ids
from modelyard.settings import ModelServingSettings, Settings


async def rounds(rest: RestApp, model: str, body: bytes, conc: int, count: int) -> float:
    """CPU seconds per request over ``count`` rounds of ``conc`` requests."""
    loop = asyncio.get_running_loop()
    raw = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
           (b"content-length", str(len(body)).encode())]
    answered = 0
    waiter: asyncio.Future[None] = loop.create_future()

    def reply(answer: Reply) -> None:
        nonlocal answered
        if answer[0] != 200:
            raise SystemExit(f"the server answered {answer[0]}: {answer[1][:200]!r}")
        answered += 1
        if answered == conc:
            waiter.set_result(None)

    started = time.process_time()
    for _ in range(count):
        answered = 0
        waiter = loop.create_future()
        for _ in range(conc):
            rest.submit_infer(model, None, body, RequestHeaders(raw), request_ids.next(), reply)
        await waiter
    return (time.process_time() - started) / (count * conc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("mlp", "hgb"), default="mlp")
    parser.add_argument("--batching", choices=("on", "off"), default="on")
    parser.add_argument("--conc", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        mc.make_models(work)
        settings = Settings(home=work / "home", actor="bench")
        config = ModelServingSettings(
            max_batch_size=32 if args.batching == "on" else 1, max_delay_ms=0, max_queue=1024,
            cache_entries=0, onnx_threads=1,
            outputs=["label"] if args.model == "mlp" else ["predict"],
        )
        serving = settings.serving.model_copy(update={"models": {args.model: config}})
        pool = InferencePool(1)
        try:
            rest = RestApp(build_dataplane(modelyard.open_registry(settings), serving, pool))
            body = (work / f"{args.model}.json").read_bytes()
            count = args.rounds if args.model == "mlp" else max(1, args.rounds // 20)

            async def measure() -> list[float]:  # one loop: the batcher's task lives in it
                await rounds(rest, args.model, body, args.conc, max(1, count // 10))  # warm-up
                return [await rounds(rest, args.model, body, args.conc, count) * 1e6
                        for _ in range(args.repeats)]

            figures = uvloop.run(measure())
        finally:
            pool.shutdown()
    print(f"{args.model} batching={args.batching} conc={args.conc}: "
          f"{statistics.median(figures):.1f} µs of CPU a request "
          f"(repeats: {', '.join(f'{f:.1f}' for f in figures)})")


if __name__ == "__main__":
    main()
