"""The REST data plane as one raw ASGI application.

No framework sits on the hot path: the route is picked from the path segments, the body is
read with a size limit, decoded by :mod:`.codec` and handed to the :class:`DataPlane`.
Routes (Open Inference Protocol, Triton's repository extension, KServe V1, metrics)::

    GET  /v2  /v2/health/live  /v2/health/ready
    GET  /v2/models/{m}[/versions/{v}]          GET /v2/models/{m}[/versions/{v}]/ready
    POST /v2/models/{m}[/versions/{v}]/infer    POST /v2/models/{m}[/versions/{v}]/generate_stream
    POST /v2/repository/index                   POST /v2/repository/models/{m}/load|unload
    POST /v1/models/{m}:predict                 GET  /v1/models/{m}
    POST /v1/feedback                           GET  /api/v1/models/{m}/monitoring?since=24h
    GET  /api/v1/models/{m}/rollout             POST /api/v1/models/{m}/rollout
    POST /api/v1/models/{m}/rollout/promote|pause|resume|rollback|abort
    GET  /api/v1/models/{m}/retrain             POST /api/v1/models/{m}/retrain[/approve]
    GET  /metrics                                GET  /openapi.json
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from modelyard.errors import InvalidInput, NotFound, PayloadTooLarge
from modelyard.serving.dataplane import DataPlane
from modelyard.serving.metrics import CONTENT_TYPE
from modelyard.serving.rest import codec, openapi
from modelyard.serving.rest.errors import status_of
from modelyard.serving.types import InferRequest, InferResponse, request_ids

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
# A whole response: status, body, request id, extra headers, content type.
Reply = tuple[int, bytes, str, list[tuple[bytes, bytes]], bytes]
_NOT_FOUND = b'{"error":"no such route"}'


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class RestApp:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane
        self.max_body = dataplane.settings.max_body_bytes
        self.max_elements = dataplane.settings.max_tensor_elements
        self._openapi = codec.dumps(openapi.document(dataplane.server_metadata()["version"]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        headers = RequestHeaders(scope["headers"])
        request_id = headers.request_id or request_ids.next()
        try:
            headers.check()
            await self._route(scope, receive, send, headers, request_id)
        except ClientGone:
            return
        except Exception as exc:
            await _respond(send, *error_reply(exc, request_id))

    async def _route(
        self, scope: Scope, receive: Receive, send: Send, headers: RequestHeaders, request_id: str
    ) -> None:
        method = scope["method"]
        parts = scope["path"].strip("/").split("/")
        head = parts[0]
        if head == "v2":
            await self._v2(method, parts[1:], receive, send, headers, request_id)
        elif head == "v1" and len(parts) == 3 and parts[1] == "models":
            await self._v1(method, parts[2], receive, send, headers, request_id)
        elif parts == ["v1", "feedback"] and method == "POST":
            payload = _json(await _read_body(receive, headers, self.max_body))
            result = await self.dataplane.feedback(payload)
            await _respond(send, 200, codec.dumps(_plain(result)), request_id)
        elif (head == "api" and len(parts) == 5 and parts[1:3] == ["v1", "models"]
              and parts[4] == "monitoring" and method == "GET"):
            since = _query(scope).get("since")
            windows = await self.dataplane.monitoring(parts[3], since)
            body = {"model": parts[3], "since": since, "windows": windows}
            await _respond(send, 200, codec.dumps(body), request_id)
        elif head == "api" and len(parts) in (5, 6) and parts[1:3] == ["v1", "models"] \
                and parts[4] == "rollout":
            action = parts[5] if len(parts) == 6 else None
            if method == "GET" and action is None:
                result = await self.dataplane.rollout(parts[3])
            elif method == "POST":
                raw = await _read_body(receive, headers, self.max_body)
                result = await self.dataplane.rollout(parts[3], action or "start",
                                                      _json(raw) if raw else None)
            else:
                return await _respond(send, 405, codec.dumps({"error": f"{method} is not "
                                      "allowed here"}), request_id)
            await _respond(send, 200, codec.dumps(result), request_id)
        elif head == "api" and len(parts) in (5, 6) and parts[1:3] == ["v1", "models"] \
                and parts[4] == "retrain":
            action = parts[5] if len(parts) == 6 else None
            if method == "GET" and action is None:
                status, answer = await self.dataplane.retrain(parts[3])
            elif method == "POST":
                raw = await _read_body(receive, headers, self.max_body)
                status, answer = await self.dataplane.retrain(parts[3], action or "start",
                                                              _json(raw) if raw else None)
            else:
                return await _respond(send, 405, codec.dumps({"error": f"{method} is not "
                                      "allowed here"}), request_id)
            await _respond(send, status, codec.dumps(answer), request_id)
        elif parts == ["openapi.json"] and method == "GET":
            await _respond(send, 200, self._openapi, request_id)
        elif parts == ["metrics"] and method == "GET":
            await _respond(
                send, 200, self.dataplane.metrics.exposition(), request_id,
                content_type=CONTENT_TYPE.encode(),
            )
        else:
            await _respond(send, 404, _NOT_FOUND, request_id)

    async def _v2(
        self,
        method: str,
        parts: list[str],
        receive: Receive,
        send: Send,
        headers: RequestHeaders,
        request_id: str,
    ) -> None:
        dp = self.dataplane
        if not parts:
            return await _respond(send, 200, codec.dumps(dp.server_metadata()), request_id)
        if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
            ok = dp.live() if parts[1] == "live" else dp.ready()
            return await _respond(send, 200 if ok else 503, b"", request_id)
        if parts[0] == "repository" and method == "POST":
            return await self._repository(parts[1:], receive, send, headers, request_id)
        if parts[0] != "models" or len(parts) < 2:
            return await _respond(send, 404, _NOT_FOUND, request_id)
        model, rest = parts[1], parts[2:]
        version = None
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        action = rest[0] if rest else ""
        if method == "GET" and action == "":
            meta = dp.model_metadata(model, version)
            described = {
                "name": meta.name,
                "versions": meta.versions,
                "platform": meta.platform,
                "inputs": [s.model_dump() for s in meta.inputs],
                "outputs": [s.model_dump() for s in meta.outputs],
                "parameters": meta.parameters,
            }
            return await _respond(send, 200, codec.dumps(described), request_id)
        if method == "GET" and action == "ready":
            ok = dp.model_ready(model, version)
            return await _respond(send, 200 if ok else 503, b"", request_id)
        if method == "POST" and action == "generate_stream" and len(rest) == 1:
            body = await _read_body(receive, headers, self.max_body)
            request, _ = self._decode(body, headers, model, version, request_id)
            return await self._stream(request, send)
        if method == "POST" and action == "infer" and len(rest) == 1:
            body = await _read_body(receive, headers, self.max_body)
            return await _respond(send, *await self.infer(model, version, body, headers,
                                                          request_id))
        return await _respond(send, 404, _NOT_FOUND, request_id)

    def _decode(self, body: bytes, headers: RequestHeaders, model: str, version: str | None,
                request_id: str) -> tuple[InferRequest, bool]:
        request, binary_default = codec.decode_infer(
            body, headers.header_length, model, version, request_id, headers.timeout_ms,
            self.max_elements,
        )
        request.headers = headers.raw
        return request, binary_default

    async def infer(self, model: str, version: str | None, body: bytes,
                    headers: RequestHeaders, request_id: str) -> Reply:
        """``POST /v2/models/{model}[/versions/{version}]/infer`` with its whole body read."""
        request, binary_default = self._decode(body, headers, model, version, request_id)
        response = await self.dataplane.infer(request, "rest")
        return self._reply(response, request, binary_default)

    def submit_infer(self, model: str, version: str | None, body: bytes,
                     headers: RequestHeaders, request_id: str,
                     reply: Callable[[Reply], None]) -> None:
        """:meth:`infer` with the answer (or the error's) passed to ``reply``, on the data
        plane's path without a task (:meth:`DataPlane.submit`); the protocol's fast path."""
        try:
            headers.check()
            request, binary_default = self._decode(body, headers, model, version, request_id)

            def done(response: InferResponse | None, error: BaseException | None) -> None:
                if response is None:
                    reply(error_reply(error, request_id))  # type: ignore[arg-type]
                    return
                try:
                    answer = self._reply(response, request, binary_default)
                except Exception as exc:
                    answer = error_reply(exc, request_id)
                reply(answer)

            self.dataplane.submit(request, "rest", done)
        except Exception as exc:
            reply(error_reply(exc, request_id))

    @staticmethod
    def _reply(response: InferResponse, request: InferRequest, binary_default: bool) -> Reply:
        payload, header_length = codec.encode_infer(response, request, binary_default)
        extra = [(b"x-modelyard-model-version", response.model_version.encode())]
        if header_length is not None:
            extra.append((b"inference-header-content-length", str(header_length).encode()))
        if response.cache_hit is not None:
            extra.append((b"x-modelyard-cache", b"hit" if response.cache_hit else b"miss"))
        content_type = b"application/octet-stream" if header_length else _JSON[1]
        return 200, payload, response.id, extra, content_type

    async def _stream(self, request: InferRequest, send: Send) -> None:
        """Server-sent events: one ``data:`` line per chunk the model yields."""
        request.id = request.id or request_ids.next()
        started = False
        try:
            async for response in self.dataplane.stream(request, "rest"):
                if not started:
                    await _start(send, 200, request.id, b"text/event-stream", more=True)
                    started = True
                event = {
                    "model_name": response.model_name,
                    "model_version": response.model_version,
                    "id": response.id,
                    **{t.name: codec.json_data(t) for t in response.outputs},
                }
                await send({"type": "http.response.body",
                            "body": b"data: " + codec.dumps(event) + b"\n\n", "more_body": True})
        except Exception as exc:
            if not started:
                raise
            _, message, _ = status_of(exc)
            await send({"type": "http.response.body",
                        "body": b"event: error\ndata: " + codec.dumps({"error": message})
                        + b"\n\n", "more_body": True})
        if not started:
            await _start(send, 200, request.id, b"text/event-stream", more=True)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _repository(
        self, parts: list[str], receive: Receive, send: Send, headers: RequestHeaders,
        request_id: str,
    ) -> None:
        dp = self.dataplane
        await _read_body(receive, headers, self.max_body)
        if parts == ["index"]:
            entries = [
                {"name": e.name, "version": e.version, "state": e.state, "reason": e.reason}
                for e in dp.repository_index()
            ]
            return await _respond(send, 200, codec.dumps(entries), request_id)
        if len(parts) == 3 and parts[0] == "models" and parts[2] in ("load", "unload"):
            if parts[2] == "load":
                await dp.load_model(parts[1])
            else:
                await dp.unload_model(parts[1])
            return await _respond(send, 200, b"{}", request_id)
        await _respond(send, 404, _NOT_FOUND, request_id)

    async def _v1(
        self, method: str, target: str, receive: Receive, send: Send, headers: RequestHeaders,
        request_id: str,
    ) -> None:
        dp = self.dataplane
        if method == "POST" and target.endswith(":predict"):
            body = await _read_body(receive, headers, self.max_body)
            try:
                payload = msgspec.json.decode(body) if body else None
            except msgspec.DecodeError as exc:
                raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
            if not isinstance(payload, dict) or "instances" not in payload:
                raise InvalidInput('expected a JSON object {"instances": [...]}')
            predictions, answered = await dp.predict_v1_versioned(
                target[: -len(":predict")], payload["instances"], request_id, headers.raw
            )
            return await _respond(send, 200, codec.dumps({"predictions": predictions}),
                                  request_id, [(b"x-modelyard-model-version", b"%d" % answered)])
        if method == "GET" and ":" not in target:
            return await _respond(send, 200, codec.dumps(dp.status_v1(target)), request_id)
        raise NotFound(f"no route {method} /v1/models/{target}")


def error_reply(exc: BaseException, request_id: str) -> Reply:
    """The ``{"error": ...}`` answer for an exception raised below the adapter."""
    status, message, extra = status_of(exc)
    return status, codec.dumps({"error": message}), request_id, extra, _JSON[1]


def header_value(text: str) -> bytes:
    """``text`` as a header value: latin-1 where it can be (a client's own ``X-Request-ID``
    goes back byte for byte), UTF-8 otherwise. Control characters never reach a header:
    :func:`codec.decode_infer` refuses an id that holds one."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body) if body else None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return dict(parse_qsl(raw, keep_blank_values=True))


def _plain(result: Any) -> Any:
    """A dataclass or an object with ``to_dict`` as plain JSON-ready data."""
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return result


class RequestHeaders:
    """The few request headers the data plane reads, found in one pass.

    Reading never fails, so that even a request with a malformed header gets its own id back;
    :meth:`check` raises :class:`InvalidInput` naming the first header that is not a number.
    """

    __slots__ = ("content_length", "header_length", "problem", "raw", "request_id",
                 "timeout_ms")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw
        self.content_length: int | None = None
        self.header_length: int | None = None
        self.request_id: str | None = None
        self.timeout_ms: float | None = None
        self.problem: str | None = None
        for key, value in raw:
            if key == b"content-length":
                self.content_length = self._int(value, "Content-Length")
            elif key == b"inference-header-content-length":
                self.header_length = self._int(value, "Inference-Header-Content-Length")
            elif key == b"x-request-id":
                self.request_id = value.decode("latin-1")
            elif key == b"x-modelyard-timeout-ms":
                timeout = self._int(value, "X-Modelyard-Timeout-Ms")
                self.timeout_ms = None if timeout is None else float(timeout)

    def _int(self, value: bytes, name: str) -> int | None:
        try:
            return int(value)
        except ValueError:
            if self.problem is None:
                self.problem = f"header {name} is not a whole number: {value!r}"
            return None

    def check(self) -> None:
        if self.problem is not None:
            raise InvalidInput(self.problem)


async def _read_body(receive: Receive, headers: RequestHeaders, limit: int) -> bytes:
    if headers.content_length is not None and headers.content_length > limit:
        raise PayloadTooLarge(
            f"the request body of {headers.content_length} bytes is over the limit of {limit}"
        )
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _start(
    send: Send, status: int, request_id: str, content_type: bytes, more: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"x-request-id", header_value(request_id))]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    request_id: str,
    extra: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = _JSON[1],
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", header_value(request_id)),
    ]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
