"""The gRPC adapter on a real grpc.aio server (loopback, port 0), driven by real clients.

The server runs on its own asyncio loop in a background thread, as it would beside the REST
server; tests talk to it with tritonclient.grpc or, for requests tritonclient would refuse to
build, with the generated stub on a plain channel. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import grpc
import pytest
import tritonclient.grpc as grpcclient

from modelyard.serving import DataPlane
from modelyard.serving.grpc import build_grpc_server
from modelyard.serving.grpc._proto.grpc_service_pb2_grpc import GRPCInferenceServiceStub
from modelyard.settings import ModelServingSettings

T = TypeVar("T")
WAIT_S = 15.0  # the longest any start, stop or call in these tests may take
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class GrpcServer:
    """``build_grpc_server`` started on a private event loop in a daemon thread."""

    def __init__(self, dataplane: DataPlane, max_message_bytes: int) -> None:
        self.dataplane = dataplane
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="grpc-loop",
                                       daemon=True)
        self.thread.start()
        try:
            self.server, self.port = self.call(self._start(max_message_bytes))
        except BaseException:
            self._stop_loop()
            raise
        self.address = f"127.0.0.1:{self.port}"

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(WAIT_S)

    async def _start(self, max_message_bytes: int) -> tuple[grpc.aio.Server, int]:
        server, port = build_grpc_server(self.dataplane, "127.0.0.1", 0, max_message_bytes)
        await server.start()
        return server, port

    async def _shutdown(self) -> None:
        await self.server.stop(grace=1)
        await self.dataplane.drain(1)
        await self.loop.shutdown_default_executor()

    def stop(self) -> None:
        try:
            self.call(self._shutdown())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the server loop did not stop"
        self.loop.close()


@pytest.fixture
def start_server(make_dataplane: Callable[..., DataPlane]) -> Iterator[Callable[..., GrpcServer]]:
    """Start a server over a fresh data plane; keywords are per-model serving settings."""
    servers: list[GrpcServer] = []

    def start(
        max_message_bytes: int = MAX_MESSAGE_BYTES, **models: ModelServingSettings
    ) -> GrpcServer:
        servers.append(GrpcServer(make_dataplane(**models), max_message_bytes))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., GrpcServer]) -> GrpcServer:
    return start_server()


@pytest.fixture
def connect() -> Iterator[Callable[[GrpcServer], grpcclient.InferenceServerClient]]:
    """tritonclient.grpc clients, closed at the end of the test."""
    clients: list[grpcclient.InferenceServerClient] = []

    def open_client(target: GrpcServer) -> grpcclient.InferenceServerClient:
        clients.append(grpcclient.InferenceServerClient(target.address))
        return clients[-1]

    yield open_client
    for client in clients:
        client.close()


@pytest.fixture
def triton(
    server: GrpcServer, connect: Callable[[GrpcServer], grpcclient.InferenceServerClient]
) -> grpcclient.InferenceServerClient:
    return connect(server)


@pytest.fixture
def stub(server: GrpcServer) -> Iterator[GRPCInferenceServiceStub]:
    """modelyard's own generated stub, for requests no well-behaved client would send."""
    channel = grpc.insecure_channel(server.address)
    yield GRPCInferenceServiceStub(channel)
    channel.close()
