"""ModelInferRequest/ModelInferResponse messages to and from the protocol-neutral types.

Tensor bytes are decoded by :mod:`modelyard.serving.tensors`, the same code the REST binary
extension uses, so both protocols accept and refuse exactly the same data. Typed ``contents``
are counted against the declared shape before any array is built.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.serving import tensors
from modelyard.serving.grpc._proto import grpc_service_pb2 as pb
from modelyard.serving.types import InferRequest, InferResponse, RequestedOutput, Tensor

# Which list of InferTensorContents carries each datatype; FP16 has none (raw only).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def decode_infer(
    message: pb.ModelInferRequest, time_remaining: float | None, max_elements: int
) -> InferRequest:
    """The request, with its deadline taken from the call's (``time_remaining`` seconds) and
    from a ``timeout`` parameter (microseconds, Triton's convention), whichever ends first."""
    if not message.model_name:
        raise InvalidInput("model_name is empty; name the model to run")
    params = parameters(message.parameters)
    deadline = None if time_remaining is None else time.monotonic() + time_remaining
    timeout_us = params.get("timeout")
    if timeout_us is not None:
        if not isinstance(timeout_us, int) or isinstance(timeout_us, bool) or timeout_us < 0:
            raise InvalidInput(
                f"parameter 'timeout' must be a whole number of microseconds, got {timeout_us!r}"
            )
        if timeout_us > 0:
            by_parameter = time.monotonic() + timeout_us / 1e6
            deadline = by_parameter if deadline is None else min(deadline, by_parameter)
    outputs = [RequestedOutput(o.name, parameters(o.parameters)) for o in message.outputs]
    return InferRequest(
        model=message.model_name,
        inputs=_inputs(message, max_elements),
        version=message.model_version or None,
        id=message.id or None,
        outputs=outputs or None,
        parameters=params,
        deadline=deadline,
    )


def encode_infer(response: InferResponse) -> pb.ModelInferResponse:
    """The response, every output as ``raw_output_contents`` (what Triton sends)."""
    return pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id,
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(
                name=t.name, datatype=t.datatype, shape=t.shape
            )
            for t in response.outputs
        ],
        raw_output_contents=[tensors.to_raw(t.data, t.datatype) for t in response.outputs],
    )


def parameters(entries: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values of an ``InferParameter`` map (each a oneof; unset entries are ``None``)."""
    plain: dict[str, Any] = {}
    for key, value in entries.items():
        which = value.WhichOneof("parameter_choice")
        plain[key] = getattr(value, which) if which else None
    return plain


def _inputs(message: pb.ModelInferRequest, max_elements: int) -> list[Tensor]:
    raw = message.raw_input_contents
    if not raw:
        return [_from_contents(item, max_elements) for item in message.inputs]
    typed = [item.name for item in message.inputs if item.contents.ListFields()]
    if typed:
        raise InvalidInput(
            f"input {typed[0]!r} has typed contents, but the request also carries "
            "raw_input_contents; send every input one way or the other"
        )
    if len(raw) != len(message.inputs):
        raise InvalidInput(
            f"the request has {len(message.inputs)} input(s) but {len(raw)} "
            "raw_input_contents; send one per input, in the same order"
        )
    return [
        tensors.from_raw(item.name, item.datatype, list(item.shape), data, max_elements)
        for item, data in zip(message.inputs, raw, strict=True)
    ]


def _from_contents(
    item: pb.ModelInferRequest.InferInputTensor, max_elements: int
) -> Tensor:
    name, datatype, shape = item.name, item.datatype, list(item.shape)
    count = tensors.check_header(name, datatype, shape, max_elements)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(
            f"input {name!r} is {datatype}, which has no typed contents; "
            "send it in raw_input_contents"
        )
    stray = [f.name for f, _ in item.contents.ListFields() if f.name != field]
    if stray:
        raise InvalidInput(
            f"input {name!r} is {datatype}, but its values are in contents.{stray[0]}; "
            f"expected contents.{field}"
        )
    values = getattr(item.contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"input {name!r} has {len(values)} values in contents.{field}, but shape "
            f"{shape} needs {count}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
    else:
        try:
            array = np.array(values, dtype=tensors.wire_dtype(datatype))
        except OverflowError:
            raise InvalidInput(
                f"input {name!r} holds values out of range for {datatype}"
            ) from None
    return Tensor(name, datatype, shape, array.reshape(shape))
