"""A real server watching itself: traffic → window profiles → the monitor → API and gauges."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

import modelyard
from modelyard.settings import Settings

from .conftest import LiveServer

Data = tuple[pd.DataFrame, pd.Series]
WINDOW_S = 2.0
SHIFTED = ["mean radius", "worst area", "mean texture"]


def _next_window() -> None:
    """Sleep until just after the next window boundary (windows are epoch-aligned)."""
    now = time.time()
    time.sleep(WINDOW_S - (now % WINDOW_S) + 0.05)


def _send(url: str, frame: pd.DataFrame, batch: int = 8) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for start in range(0, len(frame), batch):
            rows = frame.iloc[start : start + batch].to_numpy(np.float64)
            body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": list(rows.shape),
                                "data": rows.ravel().tolist()}]}
            assert client.post("/v2/models/cancer/infer", json=body).status_code == 200


@pytest.mark.slow
def test_the_server_judges_its_own_windows(
    tmp_path: Path, cancer: Data, cancer_model: Pipeline
) -> None:
    X, y = cancer
    home = tmp_path / "home"
    modelyard.register(cancer_model, "cancer", reference=X, labels=y,
                       settings=Settings(home=home))
    server = LiveServer(home, {"MODELYARD_MONITORING__WINDOW_S": str(WINDOW_S)})
    try:
        normal = X.sample(480, replace=True, random_state=1)
        shifted = X.sample(480, replace=True, random_state=2)
        for name in SHIFTED:
            shifted[name] = shifted[name] * 1.5 + X[name].std()
        _next_window()
        _send(server.url, normal)
        _next_window()
        _send(server.url, shifted)
        deadline = time.monotonic() + 60
        windows: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            answer = httpx.get(f"{server.url}/api/v1/models/cancer/monitoring",
                               params={"since": "1h"}, timeout=10)
            assert answer.status_code == 200, answer.text
            windows = [w for w in answer.json()["windows"] if w["rows"]]
            if sum(w["rows"] for w in windows) >= 960:  # type: ignore[misc]
                break
            time.sleep(0.5)
        assert sum(w["rows"] for w in windows) == 960  # type: ignore[misc]
        first, last = windows[0], windows[-1]
        assert first["dataset_drift"] is False
        assert not [c["name"] for c in first["columns"] if c["drift_detected"]]  # type: ignore[attr-defined]
        drifted = {c["name"] for c in last["columns"] if c["drift_detected"]}  # type: ignore[attr-defined]
        assert set(SHIFTED) <= drifted
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        score = 'modelyard_monitor_drift_score{feature="mean radius",model="cancer",version="1"}'
        errors = 'modelyard_monitor_value{metric="error_rate",model="cancer",version="1"} 0.0'
        assert score in metrics
        assert errors in metrics
        bad = httpx.get(f"{server.url}/api/v1/models/cancer/monitoring",
                        params={"since": "yesterday"}, timeout=10)
        assert bad.status_code == 400
        assert "since must be a span" in bad.json()["error"]
        assert httpx.get(f"{server.url}/api/v1/models/nobody/monitoring",
                         timeout=10).status_code == 404
    finally:
        code, _, err = server.stop()
    assert code == 0, err
