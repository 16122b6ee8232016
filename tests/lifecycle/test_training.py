"""Training runs: the user's entry point in its own process group, with a time limit, logs
kept, and every failure reported as a status rather than raised."""

from __future__ import annotations

import doctest
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import skops.io

from modelyard.errors import InvalidInput
from modelyard.lifecycle import training
from modelyard.lifecycle.training import run_training

from ..live.conftest import wait_for

TRAINERS = '''
import subprocess
import sys
import time
from pathlib import Path

import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def fit(data, output_dir, C=1.0):
    X = data.drop(columns=["target", "source"])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    model.fit(X, data["target"])
    (output_dir / "result.json").write_text(
        '{"metrics": {"train_accuracy": %f}, "params": {"C": %f}}'
        % (model.score(X, data["target"]), C))
    print("fitted on", len(data), "rows")
    return model


def elsewhere(data, output_dir):
    path = output_dir.parent / "elsewhere.skops"
    skops.io.dump(fit(data, output_dir), path)
    return str(path)


def broken(data, output_dir):
    raise ValueError("the label column 'churned' is missing")


def nothing(data, output_dir):
    return None


def scores(data, output_dir):
    return {"accuracy": 1.0}


def slow(data, output_dir):
    time.sleep(600)
'''

COMMAND = '''
import os
from pathlib import Path

import pandas as pd
import skops.io
from sklearn.tree import DecisionTreeClassifier

data = pd.read_parquet(os.environ["MODELYARD_TRAINING_DATA"])
model = DecisionTreeClassifier(max_depth=3, random_state=0)
model.fit(data.drop(columns=["target", "source"]), data["target"])
skops.io.dump(model, Path(os.environ["MODELYARD_OUTPUT_DIR"]) / "tree.skops")
print("run", os.environ["MODELYARD_RUN_ID"], "done")
'''

LINGERING = '''
import os, signal, subprocess, sys, time
from pathlib import Path

if {ignore_term}:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
Path(os.environ["MODELYARD_OUTPUT_DIR"], "helper.pid").write_text(str(helper.pid))
time.sleep(600)
'''


@pytest.fixture
def data(tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series]) -> Path:
    X, y = cancer
    frame = X.assign(target=y.to_numpy(), source="log")
    path = tmp_path / "train.parquet"
    frame.to_parquet(path, index=False)
    return path


@pytest.fixture
def project(tmp_path: Path) -> dict[str, str]:
    """A user's project folder holding the training module; its path goes on PYTHONPATH."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "trainers.py").write_text(TRAINERS)
    return {"PYTHONPATH": str(folder)}


def load_model(path: Path) -> Any:
    return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))


def gone(pid: int) -> bool:
    """Whether ``pid`` has ended (a zombie waiting for its reaper counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def test_a_function_entry_point_trains_a_model_that_loads_and_predicts(
    data: Path, project: dict[str, str], tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    run = run_training("trainers:fit", data, tmp_path / "run", timeout_s=120,
                       params={"C": 0.5}, env=project)

    assert run.status == "succeeded", run.message
    assert run.succeeded
    assert run.exit_code == 0
    assert run.model_path == tmp_path / "run" / "output" / "model.skops"
    assert run.message.startswith("trained in ")
    assert run.params == {"C": 0.5}
    assert run.metrics["train_accuracy"] > 0.95
    X, y = cancer
    model = load_model(run.model_path)
    assert (model.predict(X) == y.to_numpy()).mean() > 0.95
    assert "fitted on 569 rows" in run.stdout_path.read_text()
    assert json.loads((run.output_dir / "result.json").read_text())["model"] == "model.skops"
    assert json.loads((run.run_dir / "run.json").read_text())["status"] == "succeeded"
    assert run.finished_at >= run.started_at
    assert 0 < run.seconds < 120


def test_a_returned_path_is_copied_into_the_run(
    data: Path, project: dict[str, str], tmp_path: Path
) -> None:
    run = run_training("trainers:elsewhere", data, tmp_path / "run", timeout_s=120, env=project)
    assert run.status == "succeeded", run.message
    assert run.model_path == run.output_dir / "elsewhere.skops"
    assert run.model_path.is_file()


def test_a_command_entry_point_reads_the_data_and_writes_the_model_by_convention(
    data: Path, tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    run = run_training([sys.executable, "-c", COMMAND], data, tmp_path / "run", timeout_s=120,
                       run_id="run-7")

    assert run.status == "succeeded", run.message
    assert run.run_id == "run-7"
    assert run.model_path == run.output_dir / "tree.skops"
    X, y = cancer
    assert (load_model(run.model_path).predict(X) == y.to_numpy()).mean() > 0.9
    assert run.stdout_path.read_text() == "run run-7 done\n"


def test_a_raising_function_fails_with_its_exception_in_the_tail(
    data: Path, project: dict[str, str], tmp_path: Path
) -> None:
    run = run_training("trainers:broken", data, tmp_path / "run", timeout_s=120, env=project)

    assert run.status == "failed"
    assert run.exit_code == 1
    assert run.model_path is None
    assert run.tail[-1] == "ValueError: the label column 'churned' is missing"
    assert run.message == "exited with code 1: ValueError: the label column 'churned' is missing"
    assert "Traceback" in run.stderr_path.read_text()
    assert len(run.tail) <= training.TAIL_LINES


def test_a_run_that_writes_no_model_fails_saying_so(
    data: Path, project: dict[str, str], tmp_path: Path
) -> None:
    run = run_training("trainers:nothing", data, tmp_path / "run", timeout_s=120, env=project)
    assert run.status == "failed"
    assert run.exit_code == 0
    assert run.message.startswith("the entry point finished but wrote no model into ")


@pytest.mark.parametrize(
    ("entry", "message", "exit_code"),
    [
        ("no_such_trainers:fit",
         "cannot import the training module 'no_such_trainers': No module named "
         "'no_such_trainers'", 2),
        ("trainers:fitt", "the training module 'trainers' has no function 'fitt'", 2),
        ("trainers:scores", "the training function returned a dict; return a fitted "
         "estimator, the path of the model it wrote, or None", 1),
        ("fit-my-model", "the training command 'fit-my-model' was not found; declare the entry "
         "point as 'module:function' or as a command on PATH", None),
        ("", "the training entry point is empty; declare 'module:function' or a command", None),
        ("python 'unclosed", "cannot read the training command \"python 'unclosed\": No "
         "closing quotation", None),
        (["/nonexistent/train"], "cannot start the training command '/nonexistent/train': No "
         "such file or directory", None),
    ],
)
def test_a_bad_declaration_is_a_failed_run_with_a_clear_message(
    data: Path, project: dict[str, str], tmp_path: Path, entry: str | list[str], message: str,
    exit_code: int | None,
) -> None:
    run = run_training(entry, data, tmp_path / "run", timeout_s=120, env=project)
    assert run.status == "failed"
    assert run.message == message
    assert run.exit_code == exit_code
    assert run.tail[-1].endswith(message)  # the logs say it too


def test_a_run_past_its_time_limit_is_stopped_with_its_whole_process_group(
    data: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    run = run_training([sys.executable, "-c", LINGERING.format(ignore_term=False)], data,
                       tmp_path / "run", timeout_s=2, grace_s=2)

    assert time.monotonic() - started < 30
    assert run.status == "timed_out"
    assert run.message == "stopped after the time limit of 2s"
    assert run.exit_code == -signal.SIGTERM
    assert 2 <= run.seconds < 30
    assert run.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(run.pid, 0)  # stopped and reaped
    helper = int((run.output_dir / "helper.pid").read_text())
    wait_for(lambda: gone(helper))  # the process it started went with it


def test_a_run_ignoring_sigterm_is_killed_after_the_grace_period(
    data: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    run = run_training([sys.executable, "-c", LINGERING.format(ignore_term=True)], data,
                       tmp_path / "run", timeout_s=2, grace_s=1)
    assert time.monotonic() - started < 30
    assert run.status == "timed_out"
    assert run.exit_code == -signal.SIGKILL
    assert run.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(run.pid, 0)
    helper = int((run.output_dir / "helper.pid").read_text())
    wait_for(lambda: gone(helper))


def test_a_function_entry_point_past_its_time_limit_times_out(
    data: Path, project: dict[str, str], tmp_path: Path
) -> None:
    run = run_training("trainers:slow", data, tmp_path / "run", timeout_s=2, env=project)
    assert run.status == "timed_out"
    assert run.model_path is None


def test_bad_calls_raise_invalid_input(data: Path, tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "stdout.log").write_text("an earlier run")
    with pytest.raises(InvalidInput, match="is not empty; give each run its own"):
        run_training("trainers:fit", data, used, timeout_s=10)
    with pytest.raises(InvalidInput, match="timeout_s and grace_s must be positive"):
        run_training("trainers:fit", data, tmp_path / "a", timeout_s=0)
    with pytest.raises(InvalidInput, match="training params must be JSON values"):
        run_training("trainers:fit", data, tmp_path / "b", timeout_s=10, params={"at": object()})
    with pytest.raises(InvalidInput, match="the training data .* does not exist"):
        run_training("trainers:fit", tmp_path / "none.parquet", tmp_path / "c", timeout_s=10)


def test_docstring_examples() -> None:
    result = doctest.testmod(training, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
