"""A registry with a few real models, and the serving core built on it, in-process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from skl2onnx import to_onnx
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import modelyard
from modelyard.serving import DataPlane, InferencePool, build_dataplane
from modelyard.serving.types import InferRequest
from modelyard.settings import ModelServingSettings, Settings


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with three models, registered once per test session:

    - ``cancer``: a scikit-learn pipeline on 30 float columns (classes 0/1), two versions,
      ``champion`` → 1;
    - ``wine-onnx``: an ONNX graph, one FP32 input ``X`` of shape [-1, 13], outputs
      ``label`` and ``probabilities``;
    - ``plans``: a pipeline with a text column (``plan``) and two numbers;
    - ``counter``: a custom Python model whose ``predict`` yields ``n`` chunks.
    """
    home = tmp_path_factory.mktemp("served") / "home"
    settings = Settings(home=home, actor="tester")
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    cancer = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    modelyard.register(cancer, "cancer", reference=X, labels=y, settings=settings)
    modelyard.register(cancer, "cancer", reference=X, labels=y, settings=settings)
    modelyard.open_registry(settings).set_alias("cancer", "champion", 1)

    W, wy = load_wine(return_X_y=True)
    wine = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(W, wy)
    graph = to_onnx(wine, W[:1].astype(np.float32), options={"zipmap": False})
    onnx_file = home.parent / "wine.onnx"
    onnx_file.write_bytes(graph.SerializeToString())
    modelyard.register(onnx_file, "wine-onnx", settings=settings)

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "age": rng.uniform(18, 80, 200),
        "income": rng.normal(50, 15, 200),
        "plan": rng.choice(["basic", "plus", "pro"], 200),
    })
    label = np.where((frame["plan"] == "pro") | (frame["age"] > 60), "churn", "stay")
    plans = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough"),
        LogisticRegression(max_iter=2000),
    ).fit(frame, label)
    modelyard.register(plans, "plans", reference=frame, labels=label, settings=settings)

    code = home.parent / "counter.py"
    code.write_text(COUNTER_MODEL)
    modelyard.register(code, "counter", reference=pd.DataFrame({"n": [3.0]}), settings=settings)
    return home


# A model whose predict yields: one chunk per step, for generate_stream.
COUNTER_MODEL = """
import httpx
import numpy as np
from modelyard.runtimes.python import PythonModel

class Counter(PythonModel):
    def predict(self, inputs):
        n = int(inputs["n"].iloc[0])
        for step in range(n):
            yield {"step": np.full(len(inputs), step, dtype=np.int64)}
"""


@pytest.fixture
def serving_settings(model_home: Path) -> Settings:
    return Settings(home=model_home, actor="tester")


@pytest.fixture
def make_dataplane(serving_settings: Settings) -> Iterator[object]:
    """Build the serving core on the shared workspace; ``models`` overrides per-model settings."""
    pools: list[InferencePool] = []

    def build(**models: ModelServingSettings) -> DataPlane:
        serving = serving_settings.serving.model_copy(update={"models": models})
        pool = InferencePool(2)
        pools.append(pool)
        return build_dataplane(modelyard.open_registry(serving_settings), serving, pool)

    yield build
    for pool in pools:
        pool.shutdown()


# A model that refuses negative values: a stacked batch holding one fails as a whole.
PICKY_MODEL = """
import numpy as np
from modelyard.runtimes.python import PythonModel

class Picky(PythonModel):
    def predict(self, inputs):
        x = inputs["x"].to_numpy()
        if (x < 0).any():
            raise ValueError("negative readings are not allowed")
        return x * 2
"""


@pytest.fixture
def picky_dataplane(tmp_path):  # type: ignore[no-untyped-def]
    settings = Settings(home=tmp_path / "home", actor="tester")
    code = tmp_path / "picky.py"
    code.write_text(PICKY_MODEL)
    modelyard.register(code, "picky", reference=pd.DataFrame({"x": [1.0, 2.0]}),
                       settings=settings)
    pool = InferencePool(1)

    def build(**config: object) -> DataPlane:
        serving = settings.serving.model_copy(
            update={"models": {"picky": ModelServingSettings(**config)}})
        return build_dataplane(modelyard.open_registry(settings), serving, pool)

    yield build
    pool.shutdown()


def submit_together(dp: DataPlane, requests: list[InferRequest]
                     ) -> dict[str, tuple[Any, BaseException | None]]:
    """Submit every request in one loop iteration and wait for all answers."""

    async def go() -> dict[str, tuple[Any, BaseException | None]]:
        loop = asyncio.get_running_loop()
        answers: dict[str, tuple[Any, BaseException | None]] = {}
        finished = loop.create_future()

        def collect(key: str):  # type: ignore[no-untyped-def]
            def done(response: Any, error: BaseException | None) -> None:
                answers[key] = (response, error)
                if len(answers) == len(requests):
                    finished.set_result(None)
            return done

        for request in requests:
            assert request.id is not None
            dp.submit(request, "rest", collect(request.id))
        await asyncio.wait_for(finished, 30)
        await asyncio.sleep(0)  # monitoring's hand-off follows the answers
        return answers

    return asyncio.run(go())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """A real `modelyard serve` process on loopback ports."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, workers: int = 1) -> None:
        self.port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
        full_env.update({"MODELYARD_HOME": str(home), **(env or {})})
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("modelyard")), "serve",
             "--port", str(self.port), "--grpc-port", str(self.grpc_port),
             "--workers", str(workers)],
            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.communicate()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not become ready in 90 s")

    def stop(self, timeout: float = 60) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


@pytest.fixture(scope="session")
def live_server(model_home: Path) -> Iterator[LiveServer]:
    """One server for the session: batching on `cancer`, a cache on `plans`, a 1 MiB body
    limit, and a tiny, slow queue on `wine-onnx` to provoke 503s and 504s."""
    models = {
        "cancer": {"max_batch_size": 16, "max_delay_ms": 10},
        "plans": {"cache_entries": 16},
        "wine-onnx": {"max_batch_size": 4, "max_delay_ms": 300, "max_queue": 2},
    }
    server = LiveServer(model_home, {
        "MODELYARD_SERVING__MODELS": json.dumps(models),
        "MODELYARD_SERVING__MAX_BODY_BYTES": str(1024 * 1024),
    })
    yield server
    server.stop()
