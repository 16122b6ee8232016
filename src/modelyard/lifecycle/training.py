"""Training runs: the user's training entry point in its own process, timed, logged, contained.

The entry point contract
------------------------
An entry point is declared in one of two ways.

``"package.module:function"`` — a Python callable::

    def train(data: pandas.DataFrame, output_dir: pathlib.Path, **params) -> object: ...

``data`` is the training set (see :mod:`modelyard.lifecycle.dataset`: the feature columns,
the labels column and a ``source`` column), ``output_dir`` an empty folder the run owns and
``params`` the run's parameters. It returns one of

- a fitted estimator: saved as ``model.skops`` (or ``model.joblib`` when skops cannot
  serialize it; registering that needs ``--trust-pickle``);
- a path to the model file or MLflow model folder it wrote (copied into ``output_dir`` when
  it lies elsewhere);
- ``None``, having written the model into ``output_dir`` itself (see below).

It runs as ``python -m modelyard.lifecycle._runner _run module:function DATA OUTPUT_DIR
PARAMS_JSON`` with the run's working directory on ``sys.path``; the module must be importable
there (or through ``PYTHONPATH``). An exception ends the run as failed, its traceback in
``stderr.log``.

Any other string, or a list of strings — a command, run without a shell (a string is split
as a POSIX shell would split it). It finds its input in environment variables:

- ``MODELYARD_TRAINING_DATA``: the training set's Parquet file;
- ``MODELYARD_OUTPUT_DIR``: the empty folder to write the model into;
- ``MODELYARD_TRAINING_PARAMS``: a JSON file with the run's parameters;
- ``MODELYARD_RUN_ID``: the run's id.

It exits 0 on success. What it prints is kept in the logs and not interpreted.

Either way, the model is found in ``output_dir``: the file or folder named by the ``"model"``
key of ``output_dir/result.json`` when that file exists (it may also hold ``"metrics"`` and
``"params"``, kept with the run), else the single file with a model suffix (``.skops``,
``.onnx``, ``.joblib``, ``.pkl``, ``.pickle``, ``.ubj``) or single MLflow model folder
(holding ``MLmodel``). Other formats (XGBoost ``.json``, LightGBM ``.txt``) must be named in
``result.json``. An exit code 0 without a model is a failed run.

The run
-------
:func:`run_training` starts the process in a new session (its own process group) with
stdout and stderr going to ``run_dir/stdout.log`` and ``run_dir/stderr.log``, waits at most
``timeout_s``, then stops the whole group: ``SIGTERM``, and ``SIGKILL`` after a grace period.
Processes the entry point left behind are stopped in every case. A run that fails never
raises: the caller reads :attr:`TrainingRun.status` and :attr:`TrainingRun.message`. POSIX
only (process groups).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from modelyard.errors import InvalidInput, first_line
from modelyard.lifecycle._runner import RESULT_FILE

Status = Literal["succeeded", "failed", "timed_out"]

MODEL_SUFFIXES = (".skops", ".onnx", ".joblib", ".pkl", ".pickle", ".ubj")
TAIL_LINES = 20

_CALLABLE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class TrainingRun:
    """One finished training run.

    ``exit_code`` is the process's (negative: killed by that signal; ``None``: never
    started). ``tail`` holds the last lines of ``stderr.log``; ``message`` says in one line
    what happened. ``metrics`` and ``params`` come from the entry point's ``result.json``.
    """

    run_id: str
    entry: str
    run_dir: Path
    started_at: datetime
    finished_at: datetime
    seconds: float
    exit_code: int | None
    status: Status
    message: str
    model_path: Path | None
    output_dir: Path
    stdout_path: Path
    stderr_path: Path
    tail: list[str]
    pid: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the audit log and ``run.json``."""
        return {
            "run_id": self.run_id,
            "entry": self.entry,
            "run_dir": str(self.run_dir),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "exit_code": self.exit_code,
            "status": self.status,
            "message": self.message,
            "model_path": str(self.model_path) if self.model_path else None,
            "stdout": str(self.stdout_path),
            "stderr": str(self.stderr_path),
            "tail": list(self.tail),
            "metrics": dict(self.metrics),
            "params": dict(self.params),
        }


def is_callable_entry(entry: str | Sequence[str]) -> bool:
    """Whether ``entry`` names a Python callable (``module:function``) rather than a command.

    >>> is_callable_entry("my_project.train:fit"), is_callable_entry("python train.py")
    (True, False)
    >>> is_callable_entry(["my_project.train:fit"])  # a list is always a command
    False
    """
    return isinstance(entry, str) and bool(_CALLABLE.match(entry.strip()))


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: UTC time and random hex, e.g. ``20270115T080000Z-3f9a1c2b``.

    >>> new_run_id(datetime(2027, 1, 15, 8, tzinfo=UTC))[:17]
    '20270115T080000Z-'
    """
    at = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def run_training(
    entry: str | Sequence[str],
    data: Path,
    run_dir: Path,
    *,
    timeout_s: float,
    params: Mapping[str, Any] | None = None,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    grace_s: float = 5.0,
    run_id: str | None = None,
) -> TrainingRun:
    """Run the training entry point on ``data`` in a process of its own; see the module doc.

    Parameters
    ----------
    entry
        ``"module:function"``, or a command (a string split like a shell would, or a list).
    data
        The training set's Parquet file.
    run_dir
        The run's folder (created; must be empty): ``stdout.log``, ``stderr.log``,
        ``params.json``, ``output/`` (the model) and ``run.json`` (this run's record).
    timeout_s
        The time limit; past it the process group gets ``SIGTERM``, then ``SIGKILL`` after
        ``grace_s``.
    params
        Keyword arguments of the training function (JSON values); a command reads them from
        the file ``MODELYARD_TRAINING_PARAMS`` names.
    python
        The interpreter for a ``module:function`` entry (it must have modelyard installed).
    env
        Variables added to (and overriding) this process's environment, e.g. ``PYTHONPATH``.
    cwd
        The working directory of the run (default: this process's).

    Returns
    -------
    TrainingRun
        Its ``status`` is ``"succeeded"`` (exit 0 and a model found), ``"failed"`` or
        ``"timed_out"``; a bad declaration (unknown command, missing module) is a failed run
        whose ``message`` says what is wrong.

    Raises
    ------
    InvalidInput
        The call itself is wrong: no training data, a non-positive time limit, parameters
        that are not JSON, a run folder already used.
    """
    if not timeout_s > 0 or not grace_s > 0:
        raise InvalidInput("timeout_s and grace_s must be positive numbers of seconds")
    data = Path(data).resolve()
    if not data.is_file():
        raise InvalidInput(f"the training data {data} does not exist")
    try:
        params_text = json.dumps(dict(params or {}), sort_keys=True)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"training params must be JSON values: {error}") from None
    if cwd is not None and not Path(cwd).is_dir():
        raise InvalidInput(f"the working directory {cwd} of the training run does not exist")
    run_dir = Path(run_dir).resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise InvalidInput(f"the run folder {run_dir} is not empty; give each run its own")
    output_dir = run_dir / "output"
    output_dir.mkdir(parents=True)
    (run_dir / "params.json").write_text(params_text)
    the_id = run_id or new_run_id()
    stdout_path, stderr_path = run_dir / "stdout.log", run_dir / "stderr.log"
    shown = entry.strip() if isinstance(entry, str) else shlex.join(entry)

    started_at, clock = datetime.now(UTC), time.monotonic()
    argv, problem = _command(entry, python, data, output_dir, run_dir / "params.json")
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        if problem is not None:
            err.write(f"modelyard: {problem}\n".encode())
            outcome = _Outcome(None, None, False)
        else:
            child_env = {
                **os.environ, **dict(env or {}),
                "MODELYARD_TRAINING_DATA": str(data),
                "MODELYARD_OUTPUT_DIR": str(output_dir),
                "MODELYARD_TRAINING_PARAMS": str(run_dir / "params.json"),
                "MODELYARD_RUN_ID": the_id,
            }
            outcome = _run(argv, child_env, cwd, out, err, timeout_s, grace_s)
    seconds = time.monotonic() - clock
    finished_at = datetime.now(UTC)

    tail = _tail(stderr_path)
    status: Status
    model_path: Path | None = None
    result: dict[str, Any] = {}
    if outcome.timed_out:
        status, message = "timed_out", f"stopped after the time limit of {timeout_s:g}s"
    elif problem is not None or outcome.error is not None:
        status, message = "failed", problem or outcome.error or ""
    elif outcome.exit_code != 0:
        status, message = "failed", _failure(outcome.exit_code, tail)
    else:
        try:
            result = _result(output_dir)
            model_path = _find_model(output_dir, result)
            status, message = "succeeded", f"trained in {seconds:.1f}s: {model_path.name}"
        except InvalidInput as error:
            status, message = "failed", str(error)
    run = TrainingRun(
        run_id=the_id, entry=shown, run_dir=run_dir, started_at=started_at,
        finished_at=finished_at, seconds=seconds, exit_code=outcome.exit_code, status=status,
        message=message, model_path=model_path, output_dir=output_dir, stdout_path=stdout_path,
        stderr_path=stderr_path, tail=tail, pid=outcome.pid,
        metrics=_floats(result.get("metrics")), params=dict(result.get("params") or {}),
    )
    (run_dir / "run.json").write_text(json.dumps(run.to_dict(), indent=2))
    return run


# -- starting and stopping the process ----------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    exit_code: int | None
    pid: int | None
    timed_out: bool
    error: str | None = None


def _command(
    entry: str | Sequence[str], python: str, data: Path, output_dir: Path, params: Path
) -> tuple[list[str], str | None]:
    """The argv to start, or the reason the declaration cannot be run."""
    if is_callable_entry(entry):
        assert isinstance(entry, str)
        runner = [python, "-m", "modelyard.lifecycle._runner", "_run", entry.strip()]
        return [*runner, str(data), str(output_dir), str(params)], None
    if isinstance(entry, str):
        try:
            argv = shlex.split(entry)
        except ValueError as error:
            return [], f"cannot read the training command {entry!r}: {error}"
    else:
        argv = [str(part) for part in entry]
    if not argv or not argv[0]:
        return [], "the training entry point is empty; declare 'module:function' or a command"
    program = argv[0]
    if os.sep not in program and shutil.which(program) is None:
        return argv, (f"the training command {program!r} was not found; declare the entry "
                      "point as 'module:function' or as a command on PATH")
    return argv, None


def _run(
    argv: list[str], env: Mapping[str, str], cwd: Path | None, out: Any, err: Any,
    timeout_s: float, grace_s: float,
) -> _Outcome:
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=dict(env), cwd=cwd,
            start_new_session=True, close_fds=True,
        )
    except OSError as error:
        message = f"cannot start the training command {argv[0]!r}: {error.strerror or error}"
        err.write(f"modelyard: {message}\n".encode())
        return _Outcome(None, None, False, message)
    timed_out = not _exited(process.pid, timeout_s)
    if timed_out:
        _signal_group(process.pid, signal.SIGTERM)
        _exited(process.pid, grace_s)
    # The leader is stopped or a zombie (its pid, hence the group id, not yet reusable):
    # whatever it left in its group goes too.
    _signal_group(process.pid, signal.SIGKILL)
    try:
        code = process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): give up waiting
        code = None
    return _Outcome(code, process.pid, timed_out)


def _exited(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``pid`` to exit, without reaping it."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # already reaped
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.25)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, signum)


# -- reading what the run left ------------------------------------------------------------


def _tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - _TAIL_BYTES))
        text = handle.read().decode("utf-8", errors="replace")
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    if size > _TAIL_BYTES and kept:
        kept = kept[1:]  # the first line may be cut
    return kept[-lines:]


def _failure(code: int | None, tail: list[str]) -> str:
    last = tail[-1] if tail else ""
    if last.startswith("modelyard: "):  # the runner's own account of what went wrong
        return last.removeprefix("modelyard: ")
    return f"{_ended(code)}: {last}" if last else _ended(code)


def _ended(code: int | None) -> str:
    if code is None:
        return "the training process could not be stopped"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _result(output_dir: Path) -> dict[str, Any]:
    path = output_dir / RESULT_FILE
    if not path.is_file():
        return {}
    try:
        result = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{path} is not valid JSON: {first_line(str(error))}") from None
    if not isinstance(result, dict):
        raise InvalidInput(f"{path} must hold a JSON object, e.g. {{\"model\": \"model.skops\"}}")
    return result


def _find_model(output_dir: Path, result: Mapping[str, Any]) -> Path:
    named = result.get("model")
    if named is not None:
        path = output_dir / str(named)
        if not path.exists():
            raise InvalidInput(f"{RESULT_FILE} names the model {named!r}, which is not in "
                               f"{output_dir}")
        return path
    found = sorted(
        path for path in output_dir.iterdir()
        if (path.is_file() and path.suffix.lower() in MODEL_SUFFIXES)
        or (path.is_dir() and (path / "MLmodel").is_file())
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise InvalidInput(
            f"the entry point finished but wrote no model into {output_dir}; write one "
            f"({', '.join(MODEL_SUFFIXES)} or an MLflow folder), return an estimator, or "
            f"name the file in {RESULT_FILE}"
        )
    raise InvalidInput(f"the entry point wrote several models ({', '.join(p.name for p in found)})"
                       f"; name the one to use in {RESULT_FILE} as {{\"model\": ...}}")


def _floats(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        return {}
    kept = {}
    for name, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            kept[str(name)] = float(value)
    return kept
