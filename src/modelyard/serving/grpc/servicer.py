"""``inference.GRPCInferenceService``: each call translated for the :class:`DataPlane`.

Nothing here decides anything: routing, validation against the signature, batching and
deadlines live in the core. An exception raised below becomes a status through the one table
in :mod:`.errors`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import grpc

from modelyard.errors import InvalidInput
from modelyard.serving.dataplane import DataPlane
from modelyard.serving.grpc import codec
from modelyard.serving.grpc._proto import grpc_service_pb2 as pb
from modelyard.serving.grpc.errors import status_of

PROTOCOL = "grpc"  # the protocol label of the serving metrics

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Method = Callable[["InferenceServicer", _Request, Context], Awaitable[_Response]]


def _translated(method: _Method[_Request, _Response]) -> _Method[_Request, _Response]:
    """Answer an exception with the status the error table gives it, never a traceback."""

    @functools.wraps(method)
    async def answer(self: InferenceServicer, request: _Request, context: Context) -> _Response:
        try:
            return await method(self, request, context)
        except Exception as exc:
            code, message, trailers = status_of(exc)
            await context.abort(code, message, trailers)
            raise AssertionError("unreachable: abort raises") from exc

    return answer


class InferenceServicer:
    """Method names are the RPC names of the service, as gRPC's generated code looks them up."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self.max_elements = dataplane.settings.max_tensor_elements

    # -- health and metadata -------------------------------------------------------------

    @_translated
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.dataplane.live())

    @_translated
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    @_translated
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        ready = self.dataplane.model_ready(_named(request.name), request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    @_translated
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        meta = self.dataplane.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    @_translated
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        meta = self.dataplane.model_metadata(_named(request.name), request.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=meta.platform,
            inputs=[tensor(name=s.name, datatype=s.datatype, shape=s.shape) for s in meta.inputs],
            outputs=[
                tensor(name=s.name, datatype=s.datatype, shape=s.shape) for s in meta.outputs
            ],
        )

    # -- inference -----------------------------------------------------------------------

    @_translated
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        infer = codec.decode_infer(request, context.time_remaining(), self.max_elements)
        router = self.dataplane.router
        if router is not None and router.wants_headers(infer.model):  # routed by metadata
            infer.headers = [(str(key).lower().encode("latin-1"), str(value).encode("latin-1"))
                             for key, value in context.invocation_metadata() or ()
                             if isinstance(value, str)]
        response = await self.dataplane.infer(infer, PROTOCOL)
        return codec.encode_infer(response)

    # -- model repository extension ------------------------------------------------------

    @_translated
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        entry = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                entry(name=e.name, version=e.version, state=e.state, reason=e.reason)
                for e in self.dataplane.repository_index()
                if not request.ready or e.state == "READY"
            ]
        )

    @_translated
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        await self.dataplane.load_model(_named(request.model_name))
        return pb.RepositoryModelLoadResponse()

    @_translated
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        await self.dataplane.unload_model(_named(request.model_name))
        return pb.RepositoryModelUnloadResponse()


def _named(name: str) -> str:
    if not name:
        raise InvalidInput("the model name is empty")
    return name
