"""Retraining through the admin API and the Python client, against a real server: a dry run,
a run carried out in the background, approval, and each refusal as a 4xx naming the problem."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from modelyard.client import Client, ServerError
from modelyard.settings import Settings

from .._retraining import TRAINER, serve_churn
from .conftest import LiveServer

CONFIG = '''
[lifecycle.models.churn]
entry_point = "trainer:train"
workdir = "{workdir}"
include_reference = false
timeout_s = 60
approval = true

[lifecycle.models.churn.gate]
min_rows = 100
'''


@pytest.mark.slow
def test_the_admin_api_and_the_client_retrain_and_approve(tmp_path: Path) -> None:
    home = tmp_path / "home"
    serve_churn(Settings(home=home))
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "trainer.py").write_text(TRAINER)
    config = tmp_path / "modelyard.toml"
    config.write_text(CONFIG.format(workdir=workdir))
    server = LiveServer(home, {"MODELYARD_CONFIG": str(config)})
    try:
        with Client(server.url) as client:
            plan = client.retrain_plan("churn")
            assert plan["would_run"] is True
            assert (plan["data"]["labelled_rows"], plan["data"]["holdout_rows"]) == (600, 180)
            assert client.retrain_runs("churn") == []  # a dry run changes nothing

            begun = client.retrain("churn", reason="new pricing")
            assert (begun["state"], begun["reason"]) == ("running", "new pricing")
            deadline = time.monotonic() + 90
            while (run := client.retrain_runs("churn")[0])["state"] == "running":
                assert time.monotonic() < deadline, run
                time.sleep(0.2)
            assert run["state"] == "awaiting_approval", run
            assert run["candidate"] == 2

            for body, status, message in (
                (None, 409, "approve or decline it first"),
                ({"dry_run": True, "steps": 3}, 400, "unknown key 'steps'"),
            ):
                reply = httpx.post(f"{server.url}/api/v1/models/churn/retrain", json=body)
                assert reply.status_code == status, reply.text
                assert message in reply.json()["error"]
            reply = httpx.post(f"{server.url}/api/v1/models/fraud/retrain", json=None)
            assert reply.status_code == 400
            assert "[lifecycle.models.fraud]" in reply.json()["error"]
            assert httpx.get(f"{server.url}/api/v1/models/fraud/retrain").status_code == 404

            approved = client.approve("churn")
            assert approved["state"] == "rollout_started"
            assert client.rollout("churn")["candidate"] == 2  # type: ignore[index]
            with pytest.raises(ServerError, match="no retraining run awaiting approval") as no:
                client.approve("churn")
            assert no.value.status == 404
            with pytest.raises(ServerError, match="rollout") as busy:
                client.retrain("churn")
            assert busy.value.status == 409
    finally:
        code, _, err = server.stop()
    assert code == 0, err
