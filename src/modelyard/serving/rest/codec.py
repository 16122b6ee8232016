"""OIP JSON (and the binary tensor extension) to and from the protocol-neutral types.

Bodies are decoded with msgspec into small typed structs — no pydantic per request — and
encoded with orjson, which writes numpy arrays directly.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
import numpy as np
import orjson

from modelyard.errors import InvalidInput
from modelyard.serving import tensors
from modelyard.serving.types import InferRequest, InferResponse, RequestedOutput, Tensor


class _Input(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    data: Any = None
    parameters: dict[str, Any] | None = None


class _Output(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


class _Request(msgspec.Struct):
    inputs: list[_Input]
    id: str | None = None
    outputs: list[_Output] | None = None
    parameters: dict[str, Any] | None = None


_decoder = msgspec.json.Decoder(_Request)
_CONTROL = re.compile("[\x00-\x1f\x7f]").search
_OPTS = orjson.OPT_SERIALIZE_NUMPY
_NO_BINARY = memoryview(b"")


def decode_infer(
    body: bytes,
    header_length: int | None,
    model: str,
    version: str | None,
    request_id: str | None,
    timeout_ms: float | None,
    max_elements: int,
) -> tuple[InferRequest, bool]:
    """The request, and whether the client asked for binary outputs by default."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length is {header_length}, but the body has only "
                f"{len(body)} bytes"
            )
        head, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        head, binary = body, _NO_BINARY
    if not head:
        raise InvalidInput("the request body is empty; expected an OIP inference request")
    try:
        raw = _decoder.decode(head)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid inference request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if raw.id is not None and _CONTROL(raw.id):
        raise InvalidInput(f"the request id {raw.id!r} holds a control character; it is sent "
                           "back in the X-Request-ID header, where none may appear")
    inputs = []
    offset = 0
    for item in raw.inputs:
        size = item.parameters.get("binary_data_size") if item.parameters else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidInput(
                    f"input {item.name!r} declares binary_data_size {size!r}, but only "
                    f"{len(binary) - offset} bytes of binary data remain"
                )
            chunk = binary[offset : offset + size]
            offset += size
            inputs.append(tensors.from_raw(item.name, item.datatype, item.shape, chunk,
                                           max_elements))
        else:
            if item.data is None:
                raise InvalidInput(f"input {item.name!r} has no data")
            inputs.append(tensors.from_json(item.name, item.datatype, item.shape, item.data,
                                            max_elements))
    if offset != len(binary):
        raise InvalidInput(
            f"the body has {len(binary) - offset} bytes of binary data no input claims"
        )
    outputs = None
    if raw.outputs is not None:
        outputs = [RequestedOutput(o.name, o.parameters or {}) for o in raw.outputs]
    deadline = None
    binary_default = False
    params = raw.parameters
    if params:
        timeout_us = params.get("timeout")
        if isinstance(timeout_us, int | float) and timeout_us > 0:
            deadline = time.monotonic() + timeout_us / 1e6
        binary_default = bool(params.get("binary_data_output", False))
    else:
        params = {}
    if timeout_ms is not None:
        deadline = time.monotonic() + timeout_ms / 1e3
    request = InferRequest(model, inputs, version, raw.id if raw.id is not None else request_id,
                           outputs, params, deadline)
    return request, binary_default


def encode_infer(
    response: InferResponse, request: InferRequest, binary_default: bool
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it."""
    wanted = {o.name: o.parameters for o in request.outputs or ()}
    outputs = []
    blobs: list[bytes] = []
    for tensor in response.outputs:
        params = wanted.get(tensor.name) or {}
        as_binary = params.get("binary_data", binary_default)
        entry: dict[str, Any] = {
            "name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape,
        }
        if as_binary:
            blob = tensors.to_raw(tensor.data, tensor.datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = json_data(tensor)
        outputs.append(entry)
    head = orjson.dumps(
        {
            "model_name": response.model_name,
            "model_version": response.model_version,
            "id": response.id,
            "outputs": outputs,
        },
        option=_OPTS,
    )
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def json_data(tensor: Tensor) -> Any:
    data = tensor.data
    if tensor.datatype == "BYTES" or data.dtype.kind not in "biuf":
        return tensors.to_json_data(data, tensor.datatype)
    return np.ascontiguousarray(data).ravel()


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTS)
