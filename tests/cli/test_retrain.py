"""``modelyard retrain`` and ``modelyard approve`` as a user drives them: a champion and labelled
traffic set up in-process, retraining configured in ``modelyard.toml``, then the commands —
what they print, how they exit, and what the store holds afterwards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import modelyard
from modelyard.api.workspace import open_registry
from modelyard.cli import app
from modelyard.lifecycle.runs import RetrainRuns
from modelyard.rollout.state import RolloutStore
from modelyard.settings import Settings

from .._retraining import TRAINER, serve_churn
from ._output import one_error_line

Run = Callable[..., tuple[int, str, str]]
Configure = Callable[..., None]

@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def run(home: Path) -> Run:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
        result = runner.invoke(app, ["--home", str(home), *args], input=input)
        return result.exit_code, result.stdout, result.stderr

    return invoke


@pytest.fixture
def served(home: Path) -> Settings:
    """A champion ``churn:1`` trained on the old world; 600 labelled predictions from the new
    one in the store under ``home``."""
    return serve_churn(Settings(home=home, actor="tester"))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)


@pytest.fixture
def configure(tmp_path: Path, home: Path) -> Configure:
    """Writes ``modelyard.toml`` in the test's folder (its current directory) with a
    ``[lifecycle.models.NAME]`` table: the defaults below, overridden by the keywords
    (``gate`` and ``rollout`` replace their whole tables)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "trainer.py").write_text(TRAINER)

    def write(name: str = "churn", **model: Any) -> None:
        config: dict[str, Any] = {
            "entry_point": "trainer:train", "workdir": str(workdir), "include_reference": False,
            "timeout_s": 60, "gate": {"min_rows": 100},
            "rollout": {"strategy": "canary", "steps": "10,50,100", "step_duration": "1m"},
            **model,
        }
        tables = {key: config.pop(key) for key in ("gate", "rollout", "triggers") if key in config}
        lines = [f"home = {_toml(str(home))}", "", f"[lifecycle.models.{name}]"]
        lines += [f"{key} = {_toml(value)}" for key, value in config.items()]
        for table, values in tables.items():
            lines += ["", f"[lifecycle.models.{name}.{table}]"]
            lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
        (tmp_path / "modelyard.toml").write_text("\n".join(lines) + "\n")

    return write


def _table_rows(out: str) -> list[dict[str, str]]:
    """A rich table's rows as ``{header: cell}``, cells wrapped over lines joined again (at the
    runner's 80 columns long headers are cut short, e.g. ``champi…``)."""
    header = next(line for line in out.splitlines() if line.startswith("┃"))
    names = [cell.strip() for cell in header.strip("┃").split("┃")]
    rows: list[list[str]] = []
    for line in out.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[0] or not rows:
            rows.append(cells)
        else:  # a continuation of the row above
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _versions(settings: Settings) -> list[int]:
    return [v.version for v in open_registry(settings).list_versions("churn")]


def _runs(settings: Settings) -> list[Any]:
    return RetrainRuns(open_registry(settings)).find("churn")


# -- the dry run ---------------------------------------------------------------------------


def test_a_dry_run_prints_the_plan_and_changes_nothing(
        run: Run, served: Settings, configure: Configure) -> None:
    configure()
    code, out, err = run("retrain", "churn", "--dry-run")
    assert code == 0, err
    assert "retrain churn (champion version 1) — dry run, nothing changed" in out
    assert "600 labelled predictions since" in out
    assert "180 held out for the gate, 420 to train on (0 from the reference)" in out
    assert "training: trainer:train in " in out
    assert "at most 60 s" in out
    assert "≥ 100 rows" in out
    assert "then: a canary rollout" in out
    assert "it would not run now" not in out
    assert err == ""

    assert _runs(served) == []
    assert _versions(served) == [1]
    assert RolloutStore(open_registry(served)).latest("churn") is None


def test_a_dry_run_as_json_gives_the_plan_for_scripts(
        run: Run, served: Settings, configure: Configure) -> None:
    configure(approval=True)
    code, out, err = run("retrain", "churn", "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["model"] == "churn"
    assert plan["champion"] == 1
    assert plan["would_run"] is True
    assert plan["blockers"] == []
    data = plan["data"]
    assert (data["labelled_rows"], data["holdout_rows"], data["training_rows"]) == (600, 180, 420)
    assert plan["training"]["entry_point"] == "trainer:train"
    assert plan["gate"]["min_rows"] == 100
    assert plan["approval"] is True
    assert plan["rollout"]["strategy"] == "canary"
    assert _runs(served) == []

    code, out, _ = run("retrain", "churn", "--dry-run")
    assert code == 0
    assert "then: wait for `modelyard approve`, then a canary rollout" in out


def test_a_dry_run_says_why_it_would_not_run(
        run: Run, served: Settings, configure: Configure) -> None:
    configure(gate={"min_rows": 500})
    code, out, err = run("retrain", "churn", "--dry-run")
    assert code == 0, err
    assert "it would not run now: the gate needs 500 held-out labelled rows" in out
    code, out, _ = run("retrain", "churn", "--dry-run", "--json")
    plan = json.loads(out)
    assert plan["would_run"] is False
    assert "the gate needs 500" in plan["blockers"][0]


# -- a run ---------------------------------------------------------------------------------


def test_a_retrain_starts_the_rollout_and_shows_in_the_list(
        run: Run, served: Settings, configure: Configure) -> None:
    configure()
    code, out, err = run("retrain", "churn", "--reason", "labels drifted")
    assert code == 0, (out, err)
    assert "run 1: rollout started — canary rollout 1 of version 2 started" in out
    assert "retraining run 1 of churn: labels drifted" in out  # the stages as they happen
    assert "gate: passed" in out
    assert err == ""

    code, out, err = run("retrain", "churn", "--list")
    assert code == 0, err
    [row] = _table_rows(out)
    assert row["run"] == "1"
    assert row["trigger"] == "manual"
    assert row["state"] == "rollout started"
    assert row["versions"] == "1 → 2"
    assert row["message"] == "canary rollout 1 of version 2 started"
    code, out, err = run("retrain", "churn", "--list", "--json")
    assert code == 0, err
    [listed] = json.loads(out)
    assert listed["id"] == 1
    assert listed["state"] == "rollout_started"
    assert listed["stage"] == "rollout"
    assert (listed["champion"], listed["candidate"], listed["rollout_id"]) == (1, 2, 1)
    assert listed["trigger"] == "manual"
    assert listed["reason"] == "labels drifted"
    assert listed["detail"]["gate"]["passed"] is True

    code, out, err = run("rollout", "status", "churn")
    assert code == 0, err
    assert "rollout: churn canary of version 2 against 1, running, candidate weight 10 %" in out
    assert "traffic: version 1 90 %, version 2 10 %" in out

    assert _versions(served) == [1, 2]
    rollout = RolloutStore(open_registry(served)).active("churn")
    assert rollout is not None
    assert (rollout.candidate, rollout.baseline) == (2, 1)


def test_a_retrain_as_json_prints_the_run_without_progress_lines(
        run: Run, served: Settings, configure: Configure) -> None:
    configure()
    code, out, err = run("retrain", "churn", "--json")
    assert code == 0, err
    finished = json.loads(out)  # nothing but the JSON on stdout
    assert finished["state"] == "rollout_started"
    assert finished["candidate"] == 2
    assert finished["reason"].startswith("started by ")


def test_no_runs_yet_is_said_plainly(run: Run, served: Settings, configure: Configure) -> None:
    configure()
    code, out, _ = run("retrain", "churn", "--list")
    assert code == 0
    assert out.strip() == "no retraining runs"
    code, out, _ = run("retrain", "churn", "--list", "--json")
    assert code == 0
    assert json.loads(out) == []


def test_a_candidate_the_gate_rejects_exits_1_and_keeps_the_champion(
        run: Run, served: Settings, configure: Configure) -> None:
    configure(gate={"min_rows": 100, "min_improvement": 0.9})
    code, out, err = run("retrain", "churn")
    one_error_line(code, out, err, "retraining run 1 rejected: the gate rejected version 2: ")
    assert "required +0.900" in err

    [rejected] = _runs(served)
    assert rejected.state == "rejected"
    assert rejected.candidate == 2
    assert RolloutStore(open_registry(served)).active("churn") is None
    assert modelyard.load("churn@champion", served).version == 1

    code, out, _ = run("retrain", "churn", "--list", "--json")
    assert json.loads(out)[0]["state"] == "rejected"


def test_a_rejected_run_as_json_exits_1_with_the_run_on_stdout(
        run: Run, served: Settings, configure: Configure) -> None:
    configure(entry_point="trainer:constant")
    code, out, err = run("retrain", "churn", "--json")
    one_error_line(code, "", err, "retraining run 1 rejected")
    rejected = json.loads(out)
    assert rejected["state"] == "rejected"
    assert rejected["candidate"] == 2


# -- approval ------------------------------------------------------------------------------


def test_approval_waits_then_approve_starts_the_rollout_and_decline_ends_the_next(
        run: Run, served: Settings, configure: Configure) -> None:
    configure(approval=True)
    code, out, err = run("retrain", "churn")
    assert code == 0, (out, err)
    assert "run 1: awaiting approval — version 2 passed the gate; waiting for " \
        "`modelyard approve churn`" in out
    assert RolloutStore(open_registry(served)).active("churn") is None
    one_error_line(*run("retrain", "churn"), "approve or decline it first")

    code, out, err = run("approve", "churn")
    assert code == 0, err
    assert "run 1: rollout started — canary rollout 1 of version 2 started (approved by " in out
    rollout = RolloutStore(open_registry(served)).active("churn")
    assert rollout is not None
    assert rollout.candidate == 2

    one_error_line(*run("approve", "churn"),
                    "model 'churn' has no retraining run awaiting approval")
    one_error_line(*run("approve", "churn", "--run", "1"),
                    "retraining run 1 of churn is rollout started, not awaiting approval")
    one_error_line(*run("retrain", "churn"), "rollout")

    code, out, err = run("rollout", "abort", "churn")
    assert code == 0, err
    code, out, err = run("retrain", "churn")
    assert code == 0, (out, err)
    assert "run 2: awaiting approval" in out
    code, out, err = run("approve", "churn", "--decline", "--reason", "not before the holidays")
    assert code == 0, err
    assert "run 2: declined — declined by " in out
    assert "not before the holidays" in out

    code, out, _ = run("retrain", "churn", "--list", "--json")
    states = {listed["id"]: listed["state"] for listed in json.loads(out)}
    assert states == {1: "rollout_started", 2: "declined"}
    assert RolloutStore(open_registry(served)).active("churn") is None
    assert modelyard.load("churn@champion", served).version == 1
    one_error_line(*run("approve", "churn", "--decline"), "no retraining run awaiting approval")


def test_an_approval_whose_rollout_cannot_start_fails_the_run(
        run: Run, served: Settings, configure: Configure) -> None:
    configure(approval=True)
    assert run("retrain", "churn")[0] == 0
    code, _, err = run("rollout", "start", "churn", "--candidate", "2")  # by hand, meanwhile
    assert code == 0, err
    code, out, err = run("approve", "churn")
    one_error_line(code, out, err, "retraining run 1 failed: the rollout could not start: ")
    assert "Traceback" not in out + err
    [failed] = _runs(served)
    assert failed.state == "failed"
    assert failed.candidate == 2
    code, out, _ = run("retrain", "churn", "--list", "--json")
    assert json.loads(out)[0]["state"] == "failed"


def test_approve_with_nothing_to_approve_is_one_line(
        run: Run, served: Settings, configure: Configure) -> None:
    configure(approval=True)
    one_error_line(*run("approve", "churn"), "no retraining run awaiting approval")
    one_error_line(*run("approve", "churn", "--run", "7"), "there is no retraining run 7")


# -- bad input -----------------------------------------------------------------------------


def test_a_model_without_retraining_settings_is_named(
        run: Run, served: Settings, configure: Configure) -> None:
    configure()
    for args in (("retrain", "fraud"), ("retrain", "fraud", "--dry-run")):
        one_error_line(*run(*args), "[lifecycle.models.fraud]")
    one_error_line(*run("approve", "fraud"), "[lifecycle.models.fraud]")
    assert RetrainRuns(open_registry(served)).find() == []


def test_a_model_that_is_not_registered_is_one_line(
        run: Run, served: Settings, configure: Configure) -> None:
    configure(name="fraud")
    for args in (("retrain", "fraud"), ("retrain", "fraud", "--dry-run")):
        one_error_line(*run(*args), "'fraud' is not registered")
    assert RetrainRuns(open_registry(served)).find() == []


@pytest.mark.parametrize(("model", "message"), [
    ({"gate": {"metrics": ["acc"]}}, "unknown gate metric 'acc'"),
    ({"rollout": {"strategy": "yolo"}}, "unknown rollout strategy 'yolo'"),
    ({"rollout": {"strategy": "canary", "speed": "fast"}}, "unknown rollout setting 'speed'"),
    ({"holdout_share": 2}, "invalid setting lifecycle.models.churn.holdout_share"),
    ({"timeout_s": "soon"}, "invalid setting lifecycle.models.churn.timeout_s"),
])
def test_settings_that_cannot_work_are_refused_before_anything_runs(
        run: Run, served: Settings, configure: Configure, model: dict[str, Any],
        message: str) -> None:
    configure(**model)
    for args in (("retrain", "churn"), ("retrain", "churn", "--dry-run")):
        one_error_line(*run(*args), message)
    assert _runs(served) == []
    assert _versions(served) == [1]


def test_a_misspelled_retraining_setting_is_refused(
        run: Run, served: Settings, configure: Configure) -> None:
    configure(aproval=True)  # meant approval = true: a rollout would start with no one asked
    one_error_line(*run("retrain", "churn", "--dry-run"), "aproval")


def test_a_crashing_entry_point_fails_the_run_with_its_reason(
        run: Run, served: Settings, configure: Configure) -> None:
    configure(entry_point="trainer:crash")
    code, out, err = run("retrain", "churn")
    one_error_line(code, out, err, "retraining run 1 failed: training failed: ")
    assert "the feature store is unreachable" in err

    [failed] = _runs(served)
    assert failed.state == "failed"
    assert "the feature store is unreachable" in (failed.message or "")
    assert failed.candidate is None
    assert _versions(served) == [1]
    assert RolloutStore(open_registry(served)).latest("churn") is None

    code, out, _ = run("retrain", "churn", "--list", "--json")
    assert json.loads(out)[0]["state"] == "failed"


def test_a_retrain_during_a_rollout_is_refused(
        run: Run, served: Settings, configure: Configure) -> None:
    configure()
    assert run("retrain", "churn")[0] == 0
    code, out, err = run("retrain", "churn")
    one_error_line(code, out, err, "canary rollout of version 2; retrain after it ends")
    code, out, err = run("retrain", "churn", "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["would_run"] is False
    assert "rollout" in plan["blockers"][0]
    assert len(_runs(served)) == 1
    assert _versions(served) == [1, 2]


@pytest.mark.parametrize(("table", "message"), [
    ({"triggers": {"schedule": "every monday"}}, "lifecycle.models.churn: schedule 'every monday'"),
    ({"gate": {"metrics": ["acc"]}}, "lifecycle.models.churn: unknown gate metric 'acc'"),
])
def test_serve_and_monitor_refuse_retraining_settings_that_cannot_work(
        run: Run, served: Settings, configure: Configure, table: dict[str, Any],
        message: str) -> None:
    configure(**table)
    one_error_line(*run("serve", "--port", "0", "--grpc-port", "0"), message)
    one_error_line(*run("monitor", "run"), message)
