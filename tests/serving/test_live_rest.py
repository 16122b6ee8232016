"""A real `modelyard serve` on loopback, driven by tritonclient (HTTP and gRPC) and httpx."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sklearn.datasets import load_breast_cancer, load_wine

import modelyard
from modelyard.settings import Settings

from .conftest import LiveServer

pytestmark = pytest.mark.slow

X = load_breast_cancer().data
W = load_wine().data.astype(np.float32)


def _expected(settings: Settings, ref: str, data: object) -> dict[str, np.ndarray]:
    return modelyard.load(ref, settings=settings).run(data)


def _http_infer(
    client: httpclient.InferenceServerClient, model: str, rows: np.ndarray, binary: bool,
    version: str = "", outputs: list[str] | None = None,
) -> httpclient.InferResult:
    datatype = "FP32" if rows.dtype == np.float32 else "FP64"
    tensor = httpclient.InferInput("input", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows, binary_data=binary)
    requested = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in outputs or []]
    return client.infer(model, [tensor], model_version=version, outputs=requested or None)


def test_same_answers_over_json_binary_rest_and_grpc(
    live_server: LiveServer, serving_settings: Settings
) -> None:
    rows = X[:7]
    expected = _expected(serving_settings, "cancer@champion", rows)
    http = httpclient.InferenceServerClient(live_server.url.removeprefix("http://"))
    grpc = grpcclient.InferenceServerClient(live_server.grpc_url)
    for binary in (False, True):
        result = _http_infer(http, "cancer", rows, binary)
        np.testing.assert_array_equal(result.as_numpy("predict"), expected["predict"])
        np.testing.assert_array_equal(result.as_numpy("predict_proba"), expected["predict_proba"])
    tensor = grpcclient.InferInput("input", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    answer = grpc.infer("cancer", [tensor], client_timeout=30)
    np.testing.assert_array_equal(answer.as_numpy("predict"), expected["predict"])
    np.testing.assert_array_equal(answer.as_numpy("predict_proba"), expected["predict_proba"])


def test_models_versions_aliases_and_metadata(live_server: LiveServer) -> None:
    http = httpclient.InferenceServerClient(live_server.url.removeprefix("http://"))
    assert http.is_server_live()
    assert http.is_server_ready()
    assert http.is_model_ready("cancer")
    assert http.is_model_ready("cancer", "2")
    meta = http.get_model_metadata("cancer")
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"][0] == {"name": "mean radius", "datatype": "FP64", "shape": [-1]}
    assert {"binary_tensor_data", "model_repository"} <= set(
        http.get_server_metadata()["extensions"]
    )
    assert _http_infer(http, "cancer", X[:1], True, version="2").get_response()[
        "model_version"
    ] == "2"
    assert _http_infer(http, "cancer@champion", X[:1], True).get_response()[
        "model_version"
    ] == "1"


def test_requested_outputs_and_onnx_and_text_columns(
    live_server: LiveServer, serving_settings: Settings
) -> None:
    http = httpclient.InferenceServerClient(live_server.url.removeprefix("http://"))
    result = _http_infer(http, "cancer", X[:3], True, outputs=["predict_proba"])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["predict_proba"]

    wine = http.infer("wine-onnx", [_input("X", W[:5])])
    expected = _expected(serving_settings, "wine-onnx", W[:5])
    np.testing.assert_array_equal(wine.as_numpy("label"), expected["label"])
    np.testing.assert_array_equal(wine.as_numpy("probabilities"), expected["probabilities"])

    columns = [
        _input("age", np.array([70.0, 25.0])),
        _input("income", np.array([50.0, 60.0])),
        _input("plan", np.array([b"basic", b"pro"], dtype=object)),
    ]
    plans = http.infer("plans", columns)
    assert plans.as_numpy("predict").tolist() == [b"churn", b"churn"]
    assert plans.get_response()["outputs"][0]["datatype"] == "BYTES"


def _input(name: str, data: np.ndarray) -> httpclient.InferInput:
    datatype = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64"}.get(
        data.dtype, "BYTES"
    )
    tensor = httpclient.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return tensor


def test_request_ids_are_kept_or_made(live_server: LiveServer) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64",
                        "data": X[0].tolist()}]}
    made = httpx.post(f"{live_server.url}/v2/models/cancer/infer", json=body)
    assert made.status_code == 200
    assert made.json()["id"] == made.headers["x-request-id"]
    assert len(made.json()["id"]) >= 16
    kept = httpx.post(f"{live_server.url}/v2/models/cancer/infer", json=body,
                      headers={"X-Request-ID": "req-42"})
    assert kept.json()["id"] == kept.headers["x-request-id"] == "req-42"
    in_body = httpx.post(f"{live_server.url}/v2/models/cancer/infer", json={**body, "id": "b-7"})
    assert in_body.json()["id"] == in_body.headers["x-request-id"] == "b-7"


def test_kserve_v1_predict(live_server: LiveServer, serving_settings: Settings) -> None:
    answer = httpx.post(f"{live_server.url}/v1/models/cancer:predict",
                        json={"instances": X[:4].tolist()})
    assert answer.status_code == 200
    expected = _expected(serving_settings, "cancer@champion", X[:4])["predict"].tolist()
    assert answer.json() == {"predictions": expected}
    rows = [{"age": 70.0, "income": 50.0, "plan": "basic"}]
    assert httpx.post(f"{live_server.url}/v1/models/plans:predict",
                      json={"instances": rows}).json() == {"predictions": ["churn"]}
    status = httpx.get(f"{live_server.url}/v1/models/cancer").json()
    assert status["ready"] is True


def test_concurrent_callers_are_batched_and_get_their_own_rows(
    live_server: LiveServer, serving_settings: Settings
) -> None:
    expected = _expected(serving_settings, "cancer@champion", X[:64])["predict"]
    before = _metric(live_server, "modelyard_batch_size_rows_count", 'model="cancer"')

    def call(i: int) -> tuple[int, list[int]]:
        body = {"id": str(i), "inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64",
                                          "data": X[i].tolist()}],
                "outputs": [{"name": "predict"}]}
        answer = httpx.post(f"{live_server.url}/v2/models/cancer/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == str(i)
        return i, answer.json()["outputs"][0]["data"]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(64)))
    for i, data in results:
        assert data == [int(expected[i])]
    batches = _metric(live_server, "modelyard_batch_size_rows_count", 'model="cancer"') - before
    assert 0 < batches < 64  # 64 one-row requests took fewer batches: they were coalesced


def _metric(server: LiveServer, name: str, label: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(name) and label in line]
    return sum(values)


def test_metrics_are_valid_prometheus_text(live_server: LiveServer) -> None:
    httpx.post(f"{live_server.url}/v2/models/cancer/infer", json={
        "inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": X[0].tolist()}]})
    text = httpx.get(f"{live_server.url}/metrics").text
    for name in ("modelyard_requests_total", "modelyard_request_duration_seconds_bucket",
                 "modelyard_queue_duration_seconds_bucket",
                 "modelyard_inference_duration_seconds_bucket", "modelyard_batch_size_rows_bucket",
                 "modelyard_queue_depth", "modelyard_loaded_models"):
        assert name in text
    assert 'protocol="rest"' in text
    assert "req-" not in text  # no request ids in labels
    check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_cache_hits_are_marked(live_server: LiveServer) -> None:
    body = {"inputs": [
        {"name": "age", "shape": [1], "datatype": "FP64", "data": [33.0]},
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [41.0]},
        {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["plus"]},
    ]}
    first = httpx.post(f"{live_server.url}/v2/models/plans/infer", json=body)
    second = httpx.post(f"{live_server.url}/v2/models/plans/infer", json=body)
    assert first.headers["x-modelyard-cache"] == "miss"
    assert second.headers["x-modelyard-cache"] == "hit"
    assert first.json()["outputs"] == second.json()["outputs"]
    assert "x-modelyard-cache" not in httpx.post(
        f"{live_server.url}/v2/models/cancer/infer",
        json={"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64",
                          "data": X[0].tolist()}]}).headers


def test_generate_stream_sends_server_sent_events(live_server: LiveServer) -> None:
    body = {"inputs": [{"name": "n", "shape": [1], "datatype": "FP64", "data": [3.0]}]}
    with httpx.stream("POST", f"{live_server.url}/v2/models/counter/generate_stream",
                      json=body, timeout=30) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) for line in answer.iter_lines()
                  if line.startswith("data: ")]
    assert [e["step"] for e in events] == [[0], [1], [2]]


def test_repository_extension(live_server: LiveServer) -> None:
    http = httpclient.InferenceServerClient(live_server.url.removeprefix("http://"))
    index = http.get_model_repository_index()
    assert {(e["name"], e["version"], e["state"]) for e in index} >= {
        ("cancer", "1", "READY"), ("cancer", "2", "READY"), ("wine-onnx", "1", "READY")}
    http.unload_model("plans")
    assert not http.is_model_ready("plans")
    gone = httpx.post(f"{live_server.url}/v1/models/plans:predict",
                      json={"instances": [{"age": 1.0, "income": 2.0, "plan": "pro"}]})
    assert gone.status_code == 503
    http.load_model("plans")
    assert http.is_model_ready("plans")


def test_full_queue_answers_503_and_deadline_504(live_server: LiveServer) -> None:
    body = {"inputs": [{"name": "X", "shape": [1, 13], "datatype": "FP32",
                        "data": W[0].tolist()}]}
    url = f"{live_server.url}/v2/models/wine-onnx/infer"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: httpx.post(url, json=body, timeout=30), range(8)))
    codes = sorted(a.status_code for a in answers)
    assert 200 in codes
    assert 503 in codes
    busy = next(a for a in answers if a.status_code == 503)
    assert int(busy.headers["retry-after"]) >= 1
    assert "queued" in busy.json()["error"]
    late = httpx.post(url, json=body, headers={"X-Modelyard-Timeout-Ms": "50"}, timeout=30)
    assert late.status_code == 504
    assert "deadline" in late.json()["error"]
    assert httpx.post(url, json=body, timeout=30).status_code == 200


BAD_REQUESTS = [
    ("ghost", {"inputs": []}, 404, "not served here"),
    ("cancer/versions/9", {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64",
                                      "data": [0.0] * 30}]}, 404, "no version 9"),
    ("wine-onnx", {"inputs": [{"name": "Y", "shape": [1, 13], "datatype": "FP32",
                               "data": [0.0] * 13}]}, 400, "no input 'Y'"),
    ("wine-onnx", {"inputs": [{"name": "X", "shape": [1, 13], "datatype": "FP64",
                               "data": [0.0] * 13}]}, 400, "takes FP32"),
    ("cancer", {"inputs": [{"name": "x", "shape": [2, 30], "datatype": "FP64",
                            "data": [0.0] * 30}]}, 400, "needs 60"),
    ("cancer", {"inputs": [{"name": "x", "shape": [1, 29], "datatype": "FP64",
                            "data": [0.0] * 29}]}, 400, "29 columns"),
    ("cancer", [1, 2, 3], 400, "Expected `object`, got `array`"),
    ("cancer", {"inputs": [{"name": "x", "shape": [1, 10**12], "datatype": "FP64",
                            "data": [0.0]}]}, 413, "over the limit"),
    ("cancer", {"inputs": [{"name": "x", "shape": [-1, 30], "datatype": "FP64",
                            "data": [0.0] * 30}]}, 400, "negative"),
    ("cancer", {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "BYTES",
                            "data": ["a"] * 30}]}, 400, "BYTES"),
    ("cancer", {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64",
                            "data": ["a"] * 30}]}, 400, "holds values that are not"),
    ("cancer", {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP99",
                            "data": [0.0] * 30}]}, 400, "unknown datatype"),
    ("cancer", {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64",
                            "data": [0.0] * 30}], "outputs": [{"name": "nope"}]},
     400, "no output 'nope'"),
]


@pytest.mark.parametrize(("model", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_clear_4xx(
    live_server: LiveServer, model: str, body: object, status: int, message: str
) -> None:
    answer = httpx.post(f"{live_server.url}/v2/models/{model}/infer", json=body, timeout=30)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert answer.headers["x-request-id"]


_BINARY_HEAD = (b'{"inputs":[{"name":"x","shape":[1,30],"datatype":"FP64",'
                b'"parameters":{"binary_data_size":240}}]}')


@pytest.mark.parametrize(
    ("content", "headers", "status", "message"),
    [
        (b"", {}, 400, "empty"),
        (b"{not json", {}, 400, "not valid JSON"),
        (b"\xff\xfe\xfd", {}, 400, "not valid JSON"),
        (b"x" * (2 * 1024 * 1024), {}, 413, "over the limit"),
        (b'{"inputs":[]}', {"Inference-Header-Content-Length": "500"}, 400,
         "the body has only"),
        (_BINARY_HEAD + b"\0" * 100, {"Inference-Header-Content-Length": str(len(_BINARY_HEAD))},
         400, "only 100 bytes of binary data remain"),
    ],
)
def test_malformed_bodies_get_clear_4xx(
    live_server: LiveServer, content: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    answer = httpx.post(f"{live_server.url}/v2/models/cancer/infer", content=content,
                        headers=headers, timeout=30)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_a_client_that_disconnects_mid_request_does_no_harm(live_server: LiveServer) -> None:
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as sock:
            sock.sendall(b"POST /v2/models/cancer/infer HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 10000\r\n\r\n{\"inputs\":")
    ok = httpx.post(f"{live_server.url}/v2/models/cancer/infer", json={
        "inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": X[0].tolist()}]})
    assert ok.status_code == 200
    assert httpx.get(f"{live_server.url}/v2/health/ready").status_code == 200


def test_sigterm_drains_requests_already_received(model_home: object) -> None:
    server = LiveServer(model_home, {  # type: ignore[arg-type]
        "MODELYARD_SERVING__MODELS": json.dumps({"cancer": {"max_batch_size": 64,
                                                            "max_delay_ms": 1500}}),
    })
    body = {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64",
                        "data": X[0].tolist()}]}
    results: list[int] = []
    started = threading.Barrier(6)

    def call() -> None:
        started.wait(timeout=10)
        answer = httpx.post(f"{server.url}/v2/models/cancer/infer", json=body, timeout=30)
        results.append(answer.status_code)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    started.wait(timeout=10)
    import time

    time.sleep(0.5)  # the requests are in the batch queue, waiting out the 1.5 s delay
    code, _, err = server.stop()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [200] * 5
    assert code == 0, err


def test_several_workers_share_the_port(model_home: object) -> None:
    server = LiveServer(model_home, workers=2)  # type: ignore[arg-type]
    try:
        body = {"inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64",
                            "data": X[0].tolist()}]}
        for _ in range(20):
            assert httpx.post(f"{server.url}/v2/models/cancer/infer", json=body).status_code == 200
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        assert grpc.is_server_ready()
    finally:
        code, _, err = server.stop()
    assert code == 0, err
