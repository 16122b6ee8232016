"""``serving.cpu_scheduling``: the server's threads run under SCHED_BATCH unless told not to."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from sklearn.datasets import load_breast_cancer

from .conftest import LiveServer

pytestmark = pytest.mark.slow

X = load_breast_cancer().data


def _policies(pid: int) -> dict[int, int]:
    return {int(tid): os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


def _answers(server: LiveServer) -> None:
    body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [2, 30],
                        "data": X[:2].ravel().tolist()}]}
    response = httpx.post(f"{server.url}/v2/models/cancer/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text


def test_the_servers_threads_run_under_sched_batch_by_default(live_server: LiveServer) -> None:
    _answers(live_server)  # every thread the server starts is running by now
    policies = _policies(live_server.process.pid)
    assert policies[live_server.process.pid] == os.SCHED_BATCH  # the event loop's thread
    # the model threads (two by default), monitoring's, gRPC's and the loop's own executor
    # start after the policy is set; only threads a library started at import keep the default
    batch = sum(policy == os.SCHED_BATCH for policy in policies.values())
    assert batch >= 4, policies
    assert set(policies.values()) <= {os.SCHED_BATCH, os.SCHED_OTHER}


def test_normal_scheduling_leaves_the_os_default(model_home: Path) -> None:
    server = LiveServer(model_home, {"MODELYARD_SERVING__CPU_SCHEDULING": "normal"})
    try:
        _answers(server)
        policies = _policies(server.process.pid)
    finally:
        server.stop()
    assert set(policies.values()) == {os.SCHED_OTHER}
