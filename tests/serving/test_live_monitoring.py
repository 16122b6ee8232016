"""A real server watching itself: traffic → window profiles → the monitor → API, gauges,
alerts at a webhook, and delayed labels judged against the right window."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

import modelyard
from modelyard.api.workspace import open_database
from modelyard.live.alerts import list_alerts
from modelyard.settings import Settings

from .conftest import LiveServer

Data = tuple[pd.DataFrame, pd.Series]
WINDOW_S = 2.0
ROWS = 480


class Receiver:
    """A webhook receiver on a loopback port, collecting the JSON bodies posted to it."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict[str, Any]]:
        return [alert for body in self.bodies for alert in body["alerts"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def _next_window() -> None:
    """Sleep until just after the next window boundary (windows are epoch-aligned)."""
    time.sleep(WINDOW_S - (time.time() % WINDOW_S) + 0.05)


def _send(url: str, frame: pd.DataFrame, prefix: str, batch: int = 8,
          connections: int = 1) -> list[str]:
    """Send ``frame`` in requests of ``batch`` rows over ``connections`` connections in turn
    (the kernel spreads connections, not requests, over worker processes)."""
    ids = []
    clients = [httpx.Client(base_url=url, timeout=10) for _ in range(connections)]
    try:
        for i, start in enumerate(range(0, len(frame), batch)):
            client = clients[i % connections]
            rows = frame.iloc[start : start + batch].to_numpy(np.float64)
            body = {"id": f"{prefix}-{i}",
                    "inputs": [{"name": "input", "datatype": "FP64", "shape": list(rows.shape),
                                "data": rows.ravel().tolist()}]}
            answer = client.post("/v2/models/cancer/infer", json=body)
            assert answer.status_code == 200
            ids.append(answer.json()["id"])
    finally:
        for client in clients:
            client.close()
    return ids


def _windows(url: str, rows: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    windows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/api/v1/models/cancer/monitoring", params={"since": "1h"},
                           timeout=10)
        assert answer.status_code == 200, answer.text
        windows = [w for w in answer.json()["windows"] if w["rows"]]
        if sum(w["rows"] for w in windows) >= rows:
            break
        time.sleep(0.5)
    return windows


@pytest.mark.slow
@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_the_server_judges_its_windows_alerts_and_takes_late_labels(
    store: str, request: pytest.FixtureRequest, tmp_path: Path, cancer: Data,
    cancer_model: Pipeline, receiver: Receiver,
) -> None:
    X, y = cancer
    home = tmp_path / "home"
    url = (f"sqlite:///{home / 'modelyard.db'}" if store == "sqlite"
           else request.getfixturevalue("postgres_url"))
    settings = Settings(home=home, database_url=url)
    modelyard.register(cancer_model, "cancer", reference=X, labels=y, settings=settings)
    shifted_names = list(X.columns[:16])  # more than half the features: dataset drift
    server = LiveServer(home, {
        "MODELYARD_DATABASE_URL": url,
        "MODELYARD_MONITORING__WINDOW_S": str(WINDOW_S),
        "MODELYARD_MONITORING__NOTIFIERS__WEBHOOK_URLS": json.dumps([receiver.url]),
    })
    try:
        normal = X.sample(ROWS, replace=True, random_state=1)
        shifted = X.sample(ROWS, replace=True, random_state=2)
        for name in shifted_names:
            shifted[name] = shifted[name] * 1.5 + X[name].std()
        _next_window()
        normal_ids = _send(server.url, normal, "normal")
        _next_window()
        _send(server.url, shifted, "shifted")
        windows = _windows(server.url, 2 * ROWS)
        assert sum(w["rows"] for w in windows) == 2 * ROWS
        first, last = windows[0], windows[-1]
        assert first["dataset_drift"] is False
        assert not [c["name"] for c in first["columns"] if c["drift_detected"]]
        assert last["dataset_drift"] is True
        drifted = {c["name"] for c in last["columns"] if c["drift_detected"]}
        assert set(shifted_names) <= drifted

        # the dataset-drift alert fires once, for this version, and reaches the webhook
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not receiver.alerts():
            time.sleep(0.2)
        [alert] = [a for a in receiver.alerts() if a["rule"] == "DatasetDrift"]
        assert (alert["status"], alert["subject"]) == ("firing", "cancer:1")
        database = open_database(url, settings.store)
        firing = [a for a in list_alerts(database, "firing") if a["rule"] == "DatasetDrift"]
        assert len(firing) == 1

        # labels for the first window, posted after it was judged, give its accuracy
        truth = y.loc[normal.index].to_numpy()
        labels = [{"id": request_id, "label": int(label)}
                  for request_id, label in zip(
                      [i for i in normal_ids for _ in range(8)], truth, strict=False)]
        per_request = {item["id"]: [] for item in labels}
        for item in labels:
            per_request[item["id"]].append(item["label"])
        posted = httpx.post(f"{server.url}/v1/feedback", timeout=10, json=[
            {"id": request_id, "label": values} for request_id, values in per_request.items()])
        assert posted.status_code == 200, posted.text
        assert posted.json()["accepted"] == len(per_request)
        expected = float((cancer_model.predict(normal) == truth).mean())
        deadline = time.monotonic() + 30
        realised = None
        while time.monotonic() < deadline and realised is None:
            first = _windows(server.url, 2 * ROWS)[0]
            realised = (first.get("performance") or {}).get("accuracy_realised")
            time.sleep(0.3)
        assert realised == pytest.approx(expected)

        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        score = 'modelyard_monitor_drift_score{feature="mean radius",model="cancer",version="1"}'
        assert score in metrics
        bad = httpx.get(f"{server.url}/api/v1/models/cancer/monitoring",
                        params={"since": "yesterday"}, timeout=10)
        assert bad.status_code == 400
        assert "since must be a span" in bad.json()["error"]
        assert httpx.get(f"{server.url}/api/v1/models/nobody/monitoring",
                         timeout=10).status_code == 404
        unknown = httpx.post(f"{server.url}/v1/feedback", timeout=10,
                             json=[{"id": "never-seen", "label": 1}])
        assert unknown.json()["unknown_ids"] == ["never-seen"]
        assert httpx.post(f"{server.url}/v1/feedback", content=b"not json",
                          timeout=10).status_code == 400
    finally:
        code, _, err = server.stop()
    assert code == 0, err


@pytest.mark.slow
@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_two_workers_merge_into_the_profile_of_all_requests(
    store: str, request: pytest.FixtureRequest, tmp_path: Path, cancer: Data,
    cancer_model: Pipeline,
) -> None:
    from modelyard.live.windows import load
    from modelyard.monitoring import profile_table

    X, y = cancer
    home = tmp_path / "home"
    url = (f"sqlite:///{home / 'modelyard.db'}" if store == "sqlite"
           else request.getfixturevalue("postgres_url"))
    settings = Settings(home=home, database_url=url)
    modelyard.register(cancer_model, "cancer", reference=X, labels=y, settings=settings)
    server = LiveServer(home, {"MODELYARD_DATABASE_URL": url,
                               "MODELYARD_MONITORING__WINDOW_S": "30"}, workers=2)
    sent = X.sample(ROWS, replace=True, random_state=3)
    try:
        # one-row requests on fresh connections until both workers have answered (the second
        # may still be loading its models when the first reports ready)
        workers: set[str] = set()
        warm = []
        body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, X.shape[1]],
                            "data": []}]}
        for i in range(200):
            row = X.iloc[[i % len(X)]]
            body["inputs"][0]["data"] = row.to_numpy(np.float64).ravel().tolist()
            answer = httpx.post(f"{server.url}/v2/models/cancer/infer", json=body, timeout=10)
            assert answer.status_code == 200
            warm.append(row)
            workers.add(answer.json()["id"].rsplit("-", 1)[0])
            if len(workers) == 2:
                break
            time.sleep(0.05)
        assert len(workers) == 2
        _send(server.url, sent, "w", batch=4, connections=8)
    finally:
        code, _, err = server.stop()  # SIGTERM: each worker stores its open window
    assert code == 0, err
    # and frees its sketches before it exits: left to the interpreter's teardown, datasketches'
    # nanobind prints ~600 lines of "leaked instance" warnings as the server stops
    assert "leaked" not in err, err[-2000:]
    everything = pd.concat([*warm, sent], ignore_index=True)
    windows = load(open_database(url, settings.store), "cancer", 1)
    assert sum(w.rows for w in windows) == len(everything)
    from sqlalchemy import select

    from modelyard.store.tables import window_profiles

    with open_database(url, settings.store).read() as conn:
        replicas = {row.replica for row in conn.execute(select(window_profiles.c.replica))}
    assert len(replicas) == 2  # both workers took traffic and stored their share
    merged = {}
    for window in windows:
        assert window.profile is not None
        for name, summary in window.profile.result().items():
            merged.setdefault(name, []).append(summary)
    whole = profile_table(everything).result()
    for name in ("mean radius", "worst area", "mean texture"):
        parts = merged[name]
        assert sum(p.count for p in parts) == whole[name].count == len(everything)
        assert max(p.max for p in parts) == whole[name].max
        mean = sum(p.mean * p.count for p in parts) / len(everything)
        assert mean == pytest.approx(whole[name].mean)
