"""Bad requests get INVALID_ARGUMENT or NOT_FOUND with a message naming the problem, and the
server goes on serving. Requests tritonclient would refuse to build go through the raw stub."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from sklearn.datasets import load_breast_cancer
from tritonclient.utils import InferenceServerException

from modelyard.serving.grpc._proto import grpc_service_pb2 as pb
from modelyard.serving.grpc._proto.grpc_service_pb2_grpc import GRPCInferenceServiceStub

from .conftest import WAIT_S, GrpcServer

X = load_breast_cancer().data
Tensor = pb.ModelInferRequest.InferInputTensor


def _raw(name: str, datatype: str, shape: list[int], data: bytes) -> tuple[Tensor, bytes]:
    return Tensor(name=name, datatype=datatype, shape=shape), data


def _request(
    *inputs: tuple[Tensor, bytes], model: str = "cancer", **fields: object
) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[tensor for tensor, _ in inputs],
        raw_input_contents=[data for _, data in inputs],
        **fields,  # type: ignore[arg-type]
    )


def _refused(
    stub: GRPCInferenceServiceStub, request: pb.ModelInferRequest
) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=WAIT_S)
    error: grpc.Call = caught.value  # type: ignore[assignment]
    return error.code(), error.details()


def _assert_still_serving(stub: GRPCInferenceServiceStub) -> None:
    answer = stub.ModelInfer(_request(_raw("input", "FP64", [2, 30], X[:2].tobytes())),
                             timeout=WAIT_S)
    assert [o.name for o in answer.outputs] == ["predict", "predict_proba"]
    assert np.frombuffer(answer.raw_output_contents[0], "<i8").shape == (2,)


def _bytes(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def _contents(name: str, datatype: str, shape: list[int], **lists: object) -> Tensor:
    return Tensor(name=name, datatype=datatype, shape=shape,
                  contents=pb.InferTensorContents(**lists))  # type: ignore[arg-type]


FP64_ROW = X[:1].tobytes()
BAD_REQUESTS = {
    "data shorter than the shape": (
        _request(_raw("input", "FP64", [2, 30], FP64_ROW)),
        ["'input'", "240 bytes", "needs 480"],
    ),
    "huge shape": (
        _request(_raw("input", "FP64", [1, 10**12], FP64_ROW)),
        ["'input'", "[1, 1000000000000]", "over the limit"],
    ),
    "negative shape": (
        _request(_raw("input", "FP64", [-1, 30], FP64_ROW)),
        ["'input'", "negative dimension"],
    ),
    "unknown datatype": (
        _request(_raw("input", "FP128", [1, 30], FP64_ROW)),
        ["'input'", "unknown datatype 'FP128'"],
    ),
    "fewer raw contents than inputs": (
        pb.ModelInferRequest(
            model_name="plans", raw_input_contents=[FP64_ROW],
            inputs=[Tensor(name="age", datatype="FP64", shape=[1]),
                    Tensor(name="plan", datatype="BYTES", shape=[1])],
        ),
        ["2 input(s) but 1 raw_input_contents"],
    ),
    "raw and typed contents mixed": (
        pb.ModelInferRequest(
            model_name="cancer", raw_input_contents=[FP64_ROW],
            inputs=[_contents("input", "FP64", [1, 30], fp64_contents=X[0].tolist())],
        ),
        ["'input'", "typed contents", "raw_input_contents"],
    ),
    "typed contents shorter than the shape": (
        pb.ModelInferRequest(
            model_name="cancer",
            inputs=[_contents("input", "FP64", [2, 30], fp64_contents=X[0].tolist())],
        ),
        ["'input'", "30 values in contents.fp64_contents", "[2, 30] needs 60"],
    ),
    "typed contents in the wrong list": (
        pb.ModelInferRequest(
            model_name="cancer",
            inputs=[_contents("input", "FP64", [1, 30], fp32_contents=X[0].tolist())],
        ),
        ["'input'", "contents.fp32_contents", "expected contents.fp64_contents"],
    ),
    "FP16 as typed contents": (
        pb.ModelInferRequest(
            model_name="cancer",
            inputs=[_contents("input", "FP16", [1, 30], fp32_contents=X[0].tolist())],
        ),
        ["'input'", "FP16", "raw_input_contents"],
    ),
    "INT8 out of range": (
        pb.ModelInferRequest(
            model_name="cancer",
            inputs=[_contents("input", "INT8", [1, 1], int_contents=[300])],
        ),
        ["'input'", "out of range for INT8"],
    ),
    "broken BYTES length prefix": (
        _request(_raw("plan", "BYTES", [2], _bytes(b"pro") + b"\x09\x00"), model="plans"),
        ["'plan'", "length prefix"],
    ),
    "wrong feature count": (
        _request(_raw("input", "FP64", [1, 29], X[:1, :29].tobytes())),
        ["'input'", "29 columns", "takes 30"],
    ),
    "BYTES to a numeric model": (
        _request(_raw("input", "BYTES", [1, 30], _bytes(*[b"1.5"] * 30))),
        ["'input'", "BYTES", "numbers"],
    ),
    "a missing column": (
        _request(_raw("age", "FP64", [1], struct.pack("<d", 40.0)), model="plans"),
        ["lacks input(s)", "'income'", "'plan'"],
    ),
    "unknown output": (
        _request(_raw("input", "FP64", [1, 30], FP64_ROW),
                 outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="scores")]),
        ["no output 'scores'", "predict_proba"],
    ),
    "no inputs": (pb.ModelInferRequest(model_name="cancer"), ["no inputs"]),
    "no model name": (
        _request(_raw("input", "FP64", [1, 30], FP64_ROW), model=""),
        ["model_name is empty"],
    ),
    "a timeout that is not a number": (
        _request(_raw("input", "FP64", [1, 30], FP64_ROW),
                 parameters={"timeout": pb.InferParameter(string_param="soon")}),
        ["'timeout'", "microseconds"],
    ),
    "a version that is not a number": (
        _request(_raw("input", "FP64", [1, 30], FP64_ROW), model_version="latest"),
        ["'latest'", "whole number"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_are_invalid_arguments(stub: GRPCInferenceServiceStub, case: str) -> None:
    request, words = BAD_REQUESTS[case]
    code, message = _refused(stub, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, message
    for word in words:
        assert word in message
    _assert_still_serving(stub)


@pytest.mark.parametrize(
    ("model", "version", "words"),
    [("ghost", "", ["'ghost'"]), ("cancer", "7", ["'cancer'", "version 7"]),
     ("cancer@gold", "", ["alias 'gold'"])],
)
def test_unknown_models_versions_and_aliases_are_not_found(
    stub: GRPCInferenceServiceStub, model: str, version: str, words: list[str]
) -> None:
    code, message = _refused(
        stub, _request(_raw("input", "FP64", [1, 30], FP64_ROW), model=model,
                       model_version=version)
    )
    assert code == grpc.StatusCode.NOT_FOUND, message
    for word in words:
        assert word in message
    for call, request in [
        (stub.ModelMetadata, pb.ModelMetadataRequest(name=model, version=version)),
        (stub.ModelReady, pb.ModelReadyRequest(name=model, version=version)),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=WAIT_S)  # type: ignore[operator]
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    _assert_still_serving(stub)


def test_tritonclient_sees_wrong_names_and_datatypes(
    server: GrpcServer, triton: grpcclient.InferenceServerClient, stub: GRPCInferenceServiceStub
) -> None:
    rows = np.zeros((2, 13))
    cases = [
        ("Y", rows.astype(np.float32), "FP32", ["no input 'Y'", "'X'"]),
        ("X", rows, "FP64", ["'X' is FP64", "takes FP32"]),
    ]
    for name, data, datatype, words in cases:
        tensor = grpcclient.InferInput(name, list(data.shape), datatype)
        tensor.set_data_from_numpy(data)
        with pytest.raises(InferenceServerException) as caught:
            triton.infer("wine-onnx", [tensor], client_timeout=WAIT_S)
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
        for word in words:
            assert word in caught.value.message()
    with pytest.raises(InferenceServerException) as missing:
        triton.load_model("ghost", client_timeout=WAIT_S)
    assert missing.value.status() == "StatusCode.NOT_FOUND"
    _assert_still_serving(stub)


def test_typed_contents_are_accepted(stub: GRPCInferenceServiceStub, server: GrpcServer) -> None:
    """Clients that send typed lists rather than raw bytes (KServe's, hand-written ones)."""
    rows = X[:3]
    answer = stub.ModelInfer(pb.ModelInferRequest(
        model_name="cancer", id="typed",
        inputs=[_contents("input", "FP64", [3, 30], fp64_contents=rows.ravel().tolist())],
    ), timeout=WAIT_S)
    expected = server.dataplane.manager.resolve("cancer").require_ready().runtime.predict(rows)
    assert answer.id == "typed"
    np.testing.assert_array_equal(np.frombuffer(answer.raw_output_contents[0], "<i8"),
                                  expected["predict"])
    plans = stub.ModelInfer(pb.ModelInferRequest(model_name="plans", inputs=[
        _contents("age", "FP64", [1], fp64_contents=[70.0]),
        _contents("income", "INT32", [1], int_contents=[50]),
        _contents("plan", "BYTES", [1], bytes_contents=[b"basic"]),
    ]), timeout=WAIT_S)
    assert [o.datatype for o in plans.outputs] == ["BYTES", "FP64"]
    assert plans.raw_output_contents[0] == _bytes(b"churn")


def test_repository_index_can_list_only_ready_models(
    stub: GRPCInferenceServiceStub, triton: grpcclient.InferenceServerClient
) -> None:
    triton.unload_model("wine-onnx", client_timeout=WAIT_S)
    every = stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=WAIT_S)
    ready = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), timeout=WAIT_S)
    assert "wine-onnx" in {m.name for m in every.models}
    assert "wine-onnx" not in {m.name for m in ready.models}
    assert {m.state for m in ready.models} == {"READY"}
    _assert_still_serving(stub)
