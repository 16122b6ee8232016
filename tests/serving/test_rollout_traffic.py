"""Rollouts under real traffic on two workers and PostgreSQL: an A/B split holds its weight over
10 000 requests with every caller kept on one arm, and a blue-green switch fails no request of
the load running through it."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

import modelyard
from modelyard.rollout.state import RolloutStore
from modelyard.settings import Settings

from .conftest import LiveServer

Data = tuple[pd.DataFrame, pd.Series]
PICKUP_S = 3.0


def _body(row: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, row.size],
                        "data": row.tolist()}]}


def _serve(tmp_path: Path, postgres_url: str, cancer: Data,
           cancer_model: Pipeline) -> tuple[Settings, LiveServer]:
    X, y = cancer
    settings = Settings(home=tmp_path / "home", database_url=postgres_url)
    modelyard.register(cancer_model, "cancer", reference=X, labels=y, settings=settings)
    weaker = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000)).fit(X, y)
    modelyard.register(weaker, "cancer", reference=X, labels=y, settings=settings)
    modelyard.open_registry(settings).set_alias("cancer", "champion", 1)
    server = LiveServer(tmp_path / "home", {"MODELYARD_DATABASE_URL": postgres_url,
                                            "MODELYARD_MONITORING__WINDOW_S": "1"}, workers=2)
    return settings, server


@pytest.mark.slow
@pytest.mark.postgres
def test_an_ab_split_holds_its_weight_over_10k_requests_and_keeps_each_caller(
    tmp_path: Path, postgres_url: str, cancer: Data, cancer_model: Pipeline,
) -> None:
    settings, server = _serve(tmp_path, postgres_url, cancer, cancer_model)
    rows = cancer[0].to_numpy(np.float64)
    rollouts = RolloutStore(modelyard.open_registry(settings))
    clients = [httpx.Client(base_url=server.url, timeout=10) for _ in range(8)]
    arms: dict[str, set[str]] = defaultdict(set)
    answered: Counter[str] = Counter()
    try:
        rollouts.start("cancer", 2, strategy="ab", steps=[30], step_duration_s=3600,
                       sticky_header="X-User")
        time.sleep(PICKUP_S)  # every worker routes by it (2 s is the contract)
        for i in range(10_000):  # 5 000 callers, each twice, over 8 connections
            caller = f"user-{i % 5_000}"
            reply = clients[i % len(clients)].post(
                "/v2/models/cancer/infer", json=_body(rows[i % len(rows)]),
                headers={"X-User": caller})
            assert reply.status_code == 200, reply.text
            version = reply.headers["x-modelyard-model-version"]
            arms[caller].add(version)
            answered[version] += 1
    finally:
        for client in clients:
            client.close()
        code, _, err = server.stop()
    assert code == 0, err
    share = answered["2"] / 10_000
    assert abs(share - 0.30) <= 0.02, answered
    assert all(len(versions) == 1 for versions in arms.values())  # a caller keeps its arm
    print(f"A/B at 30 %: the candidate answered {share:.2%} of 10 000 requests")


@pytest.mark.slow
@pytest.mark.postgres
def test_a_blue_green_switch_fails_no_request_of_the_load_through_it(
    tmp_path: Path, postgres_url: str, cancer: Data, cancer_model: Pipeline,
) -> None:
    settings, server = _serve(tmp_path, postgres_url, cancer, cancer_model)
    rows = cancer[0].to_numpy(np.float64)
    rollouts = RolloutStore(modelyard.open_registry(settings))
    stop = threading.Event()
    outcomes: list[tuple[float, int, str]] = []

    def load() -> None:  # two connections, so both workers carry the switch
        clients = [httpx.Client(base_url=server.url, timeout=10) for _ in range(2)]
        i = 0
        try:
            while not stop.is_set() and i < 100_000:
                reply = clients[i % 2].post("/v2/models/cancer/infer",
                                            json=_body(rows[i % len(rows)]))
                outcomes.append((time.monotonic(), reply.status_code,
                                 reply.headers.get("x-modelyard-model-version", "")))
                i += 1
        finally:
            for client in clients:
                client.close()

    runner = threading.Thread(target=load)
    try:
        runner.start()
        time.sleep(1.0)
        green = rollouts.start("cancer", 2, strategy="bluegreen", step_duration_s=3600)
        deadline = time.monotonic() + 20
        while rollouts.get(green.id).weight != 100:
            assert time.monotonic() < deadline, "blue-green did not switch in 20 s"
            time.sleep(0.1)
        switched = time.monotonic()
        time.sleep(PICKUP_S + 1.0)  # the load runs on through the switch on every worker
    finally:
        stop.set()
        runner.join(30)
        code, _, err = server.stop()
    assert code == 0, err
    failed = [o for o in outcomes if o[1] != 200]
    assert failed == []  # not one request failed while the traffic moved
    before = {v for t, _, v in outcomes if t < switched - 0.5}
    after = {v for t, _, v in outcomes if t > switched + PICKUP_S}
    assert (before, after) == ({"1"}, {"2"})
    assert len(outcomes) > 200
