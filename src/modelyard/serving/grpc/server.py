"""The grpc.aio server for the data plane: built and bound here, started by the caller.

The server is created on the running event loop (grpc.aio binds to it), so call
:func:`build_grpc_server` from the loop that will ``await server.start()`` — the same one
the REST server runs on.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from modelyard.errors import ConfigError
from modelyard.serving.dataplane import DataPlane
from modelyard.serving.grpc._proto import grpc_service_pb2_grpc as services
from modelyard.serving.grpc.servicer import InferenceServicer

# The generated registration function is untyped; give it the type it has.
_add_servicer: Callable[[InferenceServicer, grpc.aio.Server], None] = (
    services.add_GRPCInferenceServiceServicer_to_server
)


def build_grpc_server(
    dataplane: DataPlane, host: str, port: int, max_message_bytes: int
) -> tuple[grpc.aio.Server, int]:
    """A server answering ``inference.GRPCInferenceService`` on ``host:port``, not started,
    and the port it bound (``port=0`` picks a free one).

    Messages over ``max_message_bytes`` either way are refused by gRPC itself with
    RESOURCE_EXHAUSTED. ``SO_REUSEPORT`` lets several worker processes bind the same port.
    """
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 1),
        ]
    )
    _add_servicer(InferenceServicer(dataplane), server)
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen for gRPC on {address}: {exc}") from None
    if bound == 0:  # older grpc releases report a failed bind this way
        raise ConfigError(f"cannot listen for gRPC on {address}")
    return server, bound
