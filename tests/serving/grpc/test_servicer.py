"""Every call of the service, driven by tritonclient.grpc against the real server."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
from sklearn.datasets import load_breast_cancer, load_wine
from tritonclient.utils import InferenceServerException

from .conftest import WAIT_S, GrpcServer

X = load_breast_cancer().data
W = load_wine().data.astype(np.float32)


def _input(name: str, data: np.ndarray, datatype: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return tensor


def _infer(
    client: grpcclient.InferenceServerClient, model: str, rows: np.ndarray, **kw: object
) -> grpcclient.InferResult:
    return client.infer(model, [_input("input", rows, "FP64")], client_timeout=WAIT_S, **kw)


def _expected(server: GrpcServer, model: str, data: object, version: str | None = None) -> dict:  # type: ignore[type-arg]
    slot = server.dataplane.manager.resolve(model, version)
    return slot.require_ready().runtime.predict(data)


def test_live_ready_and_server_metadata(
    server: GrpcServer, triton: grpcclient.InferenceServerClient
) -> None:
    assert triton.is_server_live(client_timeout=WAIT_S)
    assert triton.is_server_ready(client_timeout=WAIT_S) == server.dataplane.ready()
    server.dataplane.draining = True
    assert not triton.is_server_ready(client_timeout=WAIT_S)
    server.dataplane.draining = False
    meta = triton.get_server_metadata(client_timeout=WAIT_S)
    assert meta.name == "modelyard"
    assert {"binary_tensor_data", "model_repository"} <= set(meta.extensions)


def test_model_metadata_and_readiness(triton: grpcclient.InferenceServerClient) -> None:
    meta = triton.get_model_metadata("cancer", client_timeout=WAIT_S)
    assert list(meta.versions) == ["1", "2"]
    assert meta.platform == "modelyard_sklearn"
    assert len(meta.inputs) == 30
    assert (meta.inputs[0].name, meta.inputs[0].datatype, list(meta.inputs[0].shape)) == (
        "mean radius", "FP64", [-1],
    )
    assert [(o.name, o.datatype, list(o.shape)) for o in meta.outputs] == [
        ("predict", "INT64", [-1]), ("predict_proba", "FP64", [-1, 2]),
    ]
    assert list(triton.get_model_metadata("cancer", "2", client_timeout=WAIT_S).versions) == [
        "2"
    ]
    wine = triton.get_model_metadata("wine-onnx", client_timeout=WAIT_S)
    assert [(i.name, i.datatype, list(i.shape)) for i in wine.inputs] == [
        ("X", "FP32", [-1, 13])
    ]
    assert triton.is_model_ready("cancer", client_timeout=WAIT_S)
    assert triton.is_model_ready("cancer", "2", client_timeout=WAIT_S)
    assert triton.is_model_ready("cancer@champion", client_timeout=WAIT_S)


def test_infer_matches_the_model(
    server: GrpcServer, triton: grpcclient.InferenceServerClient
) -> None:
    rows = X[:7]
    expected = _expected(server, "cancer", rows)
    result = _infer(triton, "cancer", rows)
    response = result.get_response()
    assert (response.model_name, response.model_version) == ("cancer", "1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("predict", "INT64", [7]), ("predict_proba", "FP64", [7, 2]),
    ]
    np.testing.assert_array_equal(result.as_numpy("predict"), expected["predict"])
    np.testing.assert_array_equal(result.as_numpy("predict_proba"), expected["predict_proba"])
    assert 'protocol="grpc"' in server.dataplane.metrics.exposition().decode()


def test_requested_outputs_versions_and_aliases(
    server: GrpcServer, triton: grpcclient.InferenceServerClient
) -> None:
    rows = X[10:13]
    wanted = [grpcclient.InferRequestedOutput("predict_proba")]
    result = _infer(triton, "cancer", rows, outputs=wanted)
    assert [o.name for o in result.get_response().outputs] == ["predict_proba"]
    assert result.as_numpy("predict") is None
    np.testing.assert_array_equal(
        result.as_numpy("predict_proba"), _expected(server, "cancer", rows)["predict_proba"]
    )
    second = _infer(triton, "cancer", rows, model_version="2").get_response()
    assert (second.model_name, second.model_version) == ("cancer", "2")
    champion = _infer(triton, "cancer@champion", rows).get_response()
    assert (champion.model_name, champion.model_version) == ("cancer", "1")


def test_onnx_takes_fp32(server: GrpcServer, triton: grpcclient.InferenceServerClient) -> None:
    rows = W[:5]
    result = triton.infer("wine-onnx", [_input("X", rows, "FP32")], client_timeout=WAIT_S)
    expected = _expected(server, "wine-onnx", {"X": rows})
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected["probabilities"])
    assert result.as_numpy("probabilities").dtype == np.float32


def test_columns_with_bytes_give_bytes_labels(
    server: GrpcServer, triton: grpcclient.InferenceServerClient
) -> None:
    frame = pd.DataFrame({"age": [70.0, 30.0, 25.0], "income": [50.0, 40.0, 60.0],
                          "plan": ["basic", "basic", "pro"]})
    inputs = [
        _input("age", frame["age"].to_numpy(), "FP64"),
        _input("income", frame["income"].to_numpy(), "FP64"),
        _input("plan", frame["plan"].to_numpy(dtype=object), "BYTES"),
    ]
    result = triton.infer("plans", inputs, client_timeout=WAIT_S)
    labels = [v.decode() for v in result.as_numpy("predict")]
    assert labels == [str(v) for v in _expected(server, "plans", frame)["predict"]]
    assert set(labels) <= {"churn", "stay"}
    assert labels[0] == "churn"  # age over 60


def test_request_id_round_trips(triton: grpcclient.InferenceServerClient) -> None:
    assert _infer(triton, "cancer", X[:1], request_id="order-17").get_response().id == (
        "order-17"
    )
    made = {_infer(triton, "cancer", X[:1]).get_response().id for _ in range(2)}
    assert len(made) == 2  # the server made one per request
    assert "" not in made


def test_repository_index_unload_and_load(triton: grpcclient.InferenceServerClient) -> None:
    index = triton.get_model_repository_index(client_timeout=WAIT_S)
    states = {(m.name, m.version): m.state for m in index.models}
    assert states[("cancer", "1")] == states[("cancer", "2")] == "READY"

    triton.unload_model("cancer", client_timeout=WAIT_S)
    assert not triton.is_model_ready("cancer", client_timeout=WAIT_S)
    with pytest.raises(InferenceServerException) as caught:
        _infer(triton, "cancer", X[:1])
    assert caught.value.status() == "StatusCode.UNAVAILABLE"
    assert "unloaded" in caught.value.message()
    index = triton.get_model_repository_index(client_timeout=WAIT_S)
    assert "cancer" not in {m.name for m in index.models if m.state == "READY"}

    triton.load_model("cancer", client_timeout=WAIT_S)
    assert triton.is_model_ready("cancer", client_timeout=WAIT_S)
    assert _infer(triton, "cancer", X[:1]).get_response().model_version == "1"
