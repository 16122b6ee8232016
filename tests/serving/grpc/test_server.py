"""Server-level behaviour: message size limit, deadlines, binding."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from sklearn.datasets import load_breast_cancer
from tritonclient.utils import InferenceServerException

from modelyard.errors import ConfigError
from modelyard.serving import DataPlane
from modelyard.serving.grpc import build_grpc_server
from modelyard.settings import ModelServingSettings

from .conftest import WAIT_S, GrpcServer

X = load_breast_cancer().data
Client = Callable[[GrpcServer], grpcclient.InferenceServerClient]


def _infer(
    client: grpcclient.InferenceServerClient, rows: np.ndarray, **kw: object
) -> grpcclient.InferResult:
    tensor = grpcclient.InferInput("input", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    kw.setdefault("client_timeout", WAIT_S)
    return client.infer("cancer", [tensor], **kw)


def test_a_message_over_the_limit_is_refused_by_grpc(
    start_server: Callable[..., GrpcServer], connect: Client
) -> None:
    server = start_server(max_message_bytes=64 * 1024)
    client = connect(server)
    rows = X[:300]  # 300 rows of 30 FP64 = 72 000 bytes of tensor data
    with pytest.raises(InferenceServerException) as caught:
        _infer(client, rows)
    assert caught.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "larger than max" in caught.value.message()
    assert _infer(client, X[:2]).as_numpy("predict").shape == (2,)


def test_the_calls_deadline_reaches_the_batcher(
    start_server: Callable[..., GrpcServer], connect: Client
) -> None:
    server = start_server(cancer=ModelServingSettings(max_batch_size=8, max_delay_ms=500))
    client = connect(server)
    started = time.monotonic()
    with pytest.raises(InferenceServerException) as caught:
        _infer(client, X[:1], client_timeout=0.1)
    assert caught.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 0.45  # answered at the deadline, not after the batch
    assert _infer(client, X[:1]).as_numpy("predict").shape == (1,)


def test_a_timeout_parameter_is_a_deadline_too(
    start_server: Callable[..., GrpcServer], connect: Client
) -> None:
    """Triton's ``timeout`` request parameter (microseconds), with no gRPC deadline shorter."""
    server = start_server(cancer=ModelServingSettings(max_batch_size=8, max_delay_ms=500))
    client = connect(server)
    with pytest.raises(InferenceServerException) as caught:
        _infer(client, X[:1], timeout=100_000)
    assert caught.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert "deadline passed" in caught.value.message()  # the server's answer, not the client's
    text = server.dataplane.metrics.exposition().decode()
    assert any('protocol="grpc"' in line and 'outcome="timeout"' in line
               for line in text.splitlines())
    assert _infer(client, X[:1], timeout=int(WAIT_S * 1e6)).as_numpy("predict").shape == (1,)


def test_an_address_that_cannot_be_bound_is_a_config_error(
    make_dataplane: Callable[..., DataPlane],
) -> None:
    dataplane = make_dataplane()

    async def build() -> None:
        build_grpc_server(dataplane, "256.0.0.1", 0, 1024)

    with pytest.raises(ConfigError, match=r"cannot listen for gRPC on 256\.0\.0\.1:0"):
        asyncio.run(asyncio.wait_for(build(), WAIT_S))

