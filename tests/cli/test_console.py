"""The installed `modelyard` command in a real process, as a new user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MODELYARD = str(Path(sys.executable).with_name("modelyard"))


def _run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    full_env.update(env or {})
    return subprocess.run(
        [MODELYARD, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120,
        check=False,
    )


def test_demo_runs_on_embedded_defaults_and_can_run_again(tmp_path: Path) -> None:
    first = _run("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "registered breast-cancer:1" in first.stdout
    assert "registered breast-cancer:2" in first.stdout
    assert "identical to the in-memory model" in first.stdout
    assert "chain intact" in first.stdout
    assert "modelyard models show breast-cancer@champion" in first.stdout
    assert "300/300 answers match the in-process model" in first.stdout
    assert "rows over gRPC match" in first.stdout
    assert "server stopped (exit code 0)" in first.stdout
    [drift] = [line for line in first.stdout.splitlines() if line.startswith("drift report")]
    assert "mean radius" in drift.split("drift in ")[1]
    assert "worst texture" in drift.split("drift in ")[1]
    assert (tmp_path / ".modelyard" / "demo-report.html").read_text().startswith("<!doctype")
    assert (tmp_path / ".modelyard" / "modelyard.db").is_file()
    assert (tmp_path / ".modelyard" / "artifacts" / "breast-cancer").is_dir()
    # the monitoring loop: the server's own monitor judged both windows and raised the alerts
    assert "alert DatasetDrift firing for breast-cancer:1" in first.stdout
    assert "alert AccuracyDrop firing for breast-cancer:1" in first.stdout
    # the last act: the drift alert triggered a retrain, whose candidate passed its gate and
    # was promoted by a canary; the broken candidate after it was rolled back by the analysis
    assert first.stdout.count("gate passed: accuracy") == 1  # once, whatever states it passes
    assert "breast-cancer@champion: version 1 → 3" in first.stdout
    assert "rolled back automatically" in first.stdout
    assert "traffic back on version 3" in first.stdout
    runs = _run("retrain", "breast-cancer", "--list", "--json", cwd=tmp_path)
    assert runs.returncode == 0, runs.stderr
    [run] = json.loads(runs.stdout)
    assert (run["trigger"], run["state"], run["candidate"]) == ("alert", "rollout_started", 3)
    verified = _run("audit", "verify", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    status = _run("monitor", "status", "breast-cancer", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    live = _run("report", "--model", "breast-cancer:1", "--since", "1h", "--json", "-",
                cwd=tmp_path)
    assert live.returncode == 0, live.stderr
    assert "stored windows of breast-cancer:1" in live.stdout
    second = _run("demo", "--no-serve", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "registered breast-cancer:5" in second.stdout
    listed = _run("models", "show", "breast-cancer@champion", cwd=tmp_path)
    assert listed.returncode == 0
    assert "classification" in listed.stdout


def test_errors_reach_the_terminal_as_one_line(tmp_path: Path) -> None:
    done = _run("register", "missing.skops", "--name", "m", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: model file not found: missing.skops"
    bad_db = _run("models", "list", cwd=tmp_path,
                  env={"MODELYARD_DATABASE_URL": "postgresql+psycopg://x@127.0.0.1:1/x"})
    assert bad_db.returncode == 1
    assert len(bad_db.stderr.strip().splitlines()) == 1
    assert "cannot use the database at postgresql+psycopg://x@127.0.0.1:1/x" in bad_db.stderr
    usage = _run("models", "show", cwd=tmp_path)
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr
