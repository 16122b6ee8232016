"""A bounded gRPC load generator for `modelyard serve` (ghz is not available here).

    python benchmarks/serving/grpc_load.py --target 127.0.0.1:8081 --model mlp --features 64 \
        --input X --concurrency 1,16,64 --seconds 10

Each of C coroutines sends one-row ModelInfer requests (FP32, raw_input_contents) back to back
over one shared channel until --seconds pass or --max-requests are sent; prints req/s and
latency percentiles per concurrency as a Markdown table. Only loopback targets are allowed.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc
import numpy as np

from modelyard.serving.grpc._proto import grpc_service_pb2 as pb
from modelyard.serving.grpc._proto import grpc_service_pb2_grpc as pb_grpc


async def run(target: str, request: pb.ModelInferRequest, concurrency: int, seconds: float,
              max_requests: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        await stub.ModelInfer(request, timeout=10)  # warm the connection
        stop = time.monotonic() + seconds
        sent = 0

        async def worker() -> None:
            nonlocal sent, errors
            while time.monotonic() < stop and sent < max_requests:
                sent += 1
                began = time.perf_counter()
                try:
                    await stub.ModelInfer(request, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - began)

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    return len(latencies) / elapsed, latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="127.0.0.1:8081")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--input", default="X")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=500_000)
    args = parser.parse_args()
    host = args.target.rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        raise SystemExit("grpc_load.py only sends traffic to loopback addresses")
    row = np.random.default_rng(0).random((1, args.features), dtype=np.float32)
    request = pb.ModelInferRequest(model_name=args.model)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = args.input, "FP32"
    tensor.shape.extend([1, args.features])
    request.raw_input_contents.append(row.tobytes())
    print("| model | concurrency | req/s | p50 ms | p90 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        rate, latencies, errors = asyncio.run(
            run(args.target, request, concurrency, args.seconds, args.max_requests)
        )
        p50, p90, p99 = (np.percentile(latencies, q) * 1e3 for q in (50, 90, 99))
        print(f"| {args.model} | {concurrency} | {rate:,.0f} | {p50:.2f} | {p90:.2f} | "
              f"{p99:.2f} | {errors} |")


if __name__ == "__main__":
    main()
