"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``), as a thin
grpc.aio adapter over the :class:`~modelyard.serving.DataPlane`."""

from __future__ import annotations

from modelyard.serving.grpc.server import build_grpc_server

__all__ = ["build_grpc_server"]
