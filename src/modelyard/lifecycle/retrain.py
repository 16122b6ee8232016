"""The retraining loop: fresh labelled data → training run → candidate → gate → rollout.

:class:`Retrainer` runs one retrain of a model whose settings declare how
(``[lifecycle.models.NAME]``, :class:`~modelyard.settings.RetrainSettings`), whatever started
it — ``modelyard retrain NAME``, a firing alert or a schedule (:mod:`modelyard.lifecycle.triggers`):

1. **data** — the model's predictions of the last ``data_days`` joined with their labels
   (:mod:`modelyard.lifecycle.dataset`), in time order. The newest ``holdout_share`` of them is
   the gate's holdout; the older rows, plus the original reference data when
   ``include_reference`` (the champion's, or for a champion that came from a retrain — whose
   reference is an earlier holdout, already among the logged rows — its first ancestor's that
   did not), are the training set (``train.parquet``, ``holdout.parquet`` in the
   run's folder under ``HOME/runs``). Too few rows for the gate's ``min_rows`` ends the run
   here, before any training.
2. **training** — the entry point in a process of its own with a time limit, its logs kept
   (:mod:`modelyard.lifecycle.training`).
3. **registering** — the model it wrote becomes the next version, with the champion as its
   parent and the training set, the run, the trigger and the entry point's metrics in its
   provenance and tags. Its reference data is the holdout — the newest production data, so
   its monitor compares live traffic with the world it was chosen for, not with a blend of
   old and new that would read as drift at once.
4. **gate** — candidate and champion predict the holdout (:mod:`modelyard.lifecycle.gate`).
5. **approval** — with ``approval = true`` the run waits for ``modelyard approve``.
6. **rollout** — the configured rollout starts (:mod:`modelyard.rollout.state`); from here the
   rollout controller promotes or rolls back.

Every stage is recorded on the run (:mod:`modelyard.lifecycle.runs`) and every decision on the
audit log. A run never raises past its start: whatever goes wrong ends it ``failed`` with the
reason. :meth:`Retrainer.plan` (``--dry-run``) answers what a run would do, touching nothing.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from modelyard.api.predictor import Predictor, load
from modelyard.api.registration import register
from modelyard.api.workspace import open_registry
from modelyard.errors import Conflict, InvalidInput, ModelyardError, NotFound, first_line
from modelyard.events import Action
from modelyard.lifecycle.admin import RolloutAdmin
from modelyard.lifecycle.dataset import SOURCE_COLUMN, build_training_set
from modelyard.lifecycle.gate import GateConfig, GateResult, evaluate_gate, load_gate
from modelyard.lifecycle.runs import RetrainRun, RetrainRuns, Trigger
from modelyard.lifecycle.training import TrainingRun, is_callable_entry, run_training
from modelyard.live.predlog import PredictionLog
from modelyard.registry import Registry
from modelyard.rollout import analysis
from modelyard.rollout.state import STRATEGIES, RolloutStore
from modelyard.runtimes.base import sha256_file
from modelyard.settings import RetrainSettings, Settings
from modelyard.types import Task

log = logging.getLogger("modelyard.lifecycle")

DEFAULT_LABELS_COLUMN = "label"
_ROLLOUT_KEYS = ("strategy", "steps", "step_duration", "analysis", "sticky")

Progress = Callable[[str], None]


class Retrainer:
    """Retrains models as their settings say; see the module doc.

    ``predictions`` is the prediction log to read (by default the store's table; the server
    passes its own, which may write Parquet files); ``now`` is injectable for tests;
    ``progress`` hears one line per stage.
    """

    def __init__(
        self, settings: Settings, registry: Registry | None = None, *,
        predictions: PredictionLog | None = None, now: Callable[[], datetime] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or open_registry(settings)
        self.now = now or (lambda: datetime.now(UTC))
        self.runs = RetrainRuns(self.registry, now=self.now)
        self.rollouts = RolloutStore(self.registry, now=self.now)
        self.predictions = predictions
        self.progress = progress or (lambda _line: None)

    # -- configuration -------------------------------------------------------------------

    def config(self, model: str) -> RetrainSettings:
        """The model's retraining settings, checked; :class:`InvalidInput` names what is wrong."""
        found = self.settings.lifecycle.models.get(model)
        if found is None:
            raise InvalidInput(
                f"model {model!r} has no retraining settings: add a [lifecycle.models.{model}] "
                "table with entry_point = \"package.module:function\" (or a command) to "
                "modelyard.toml"
            )
        check_settings(found)
        return found

    def plan(self, model: str) -> dict[str, Any]:
        """What a run would do now (``--dry-run``): nothing is trained, written or started."""
        config = self.config(model)
        info = self.registry.get_model(model)
        champion = self._champion(model)
        gate = load_gate(config.gate)
        since, until = self._window(config)
        blockers = self._blockers(model)
        labelled = _count_labelled(self, model, since, until)
        holdout = math.ceil(labelled * config.holdout_share) if labelled else 0
        if holdout < gate.min_rows:
            blockers.append(f"the gate needs {gate.min_rows} held-out labelled rows; the last "
                            f"{config.data_days:g} days give {holdout} of {labelled}")
        reference_rows, origin = 0, None
        if config.include_reference:
            original = self._original(champion)
            if original is not None:
                reference = original.manifest.reference
                reference_rows = reference.rows if reference is not None else 0
                origin = original.info.ref
        return {
            "model": info.name,
            "champion": champion.version,
            "would_run": not blockers,
            "blockers": blockers,
            "data": {"since": since.isoformat(), "until": until.isoformat(),
                     "labelled_rows": labelled, "holdout_rows": holdout,
                     "training_rows": labelled - holdout + reference_rows,
                     "reference_rows": reference_rows, "reference_from": origin},
            "training": {"entry_point": config.entry_point, "params": config.params,
                         "timeout_s": config.timeout_s,
                         "workdir": str(config.workdir or Path.cwd())},
            "gate": gate.to_dict(),
            "approval": config.approval,
            "rollout": dict(config.rollout),
        }

    def labels_short(self, model: str) -> str | None:
        """Why a run would stop at its data stage now (too few labelled rows for the gate's
        holdout), else ``None``; triggers wait on this rather than spend their firing."""
        config = self.config(model)
        gate = load_gate(config.gate)
        since, until = self._window(config)
        labelled = _count_labelled(self, model, since, until)
        held = math.ceil(labelled * config.holdout_share)
        if held >= gate.min_rows:
            return None
        return (f"{held} held-out labelled rows of {labelled}; the gate needs {gate.min_rows}")

    # -- a run ---------------------------------------------------------------------------

    def run(self, model: str, trigger: Trigger | None = None) -> RetrainRun:
        """One retrain, start to end (or to ``awaiting_approval``).

        Raises only before the run exists: settings that do not hold, an unknown model, a run
        or rollout already under way (:class:`Conflict`).
        """
        return self.proceed(self.begin(model, trigger))

    def begin(self, model: str, trigger: Trigger | None = None) -> RetrainRun:
        """The run's row, after every check that can refuse it (see :meth:`run`); then
        :meth:`proceed` carries it out, here or on another thread."""
        self.config(model)
        trigger = trigger or Trigger("manual", f"started by {self.registry.actor}")
        champion = self._champion(model)
        blockers = self._blockers(model)
        if blockers:
            raise Conflict(blockers[0])
        run = self.runs.start(model, trigger, champion.version)
        self.progress(f"retraining run {run.id} of {model}: {trigger.reason}")
        return run

    def proceed(self, run: RetrainRun) -> RetrainRun:
        """Carry a begun run through its stages; never raises."""
        try:
            config = self.config(run.model)
            champion = load(f"{run.model}:{run.champion}", self.settings)
            return self._stages(run, config, champion)
        except Exception as error:  # a run ends with its reason, whatever went wrong
            if not isinstance(error, ModelyardError):
                log.exception("retraining run %s of %s failed", run.id, run.model)
            message = first_line(str(error)) or type(error).__name__
            current = self.runs.get(run.id)
            return self._fail(current, f"{current.stage}: {message}")

    def approve(self, model: str, run_id: int | None = None) -> RetrainRun:
        """Start the rollout of a run that awaits approval."""
        run = self._awaiting(model, run_id)
        return self._roll_out(run, self.config(model), approved=True)

    def decline(self, model: str, run_id: int | None = None, reason: str = "") -> RetrainRun:
        """Refuse a candidate that awaits approval; the champion stays."""
        run = self._awaiting(model, run_id)
        message = f"declined by {self.registry.actor}" + (f": {reason}" if reason else "")
        return self.runs.finish(run, "declined", message, Action.RETRAIN_DECLINE,
                                {"reason": reason}, expected=("awaiting_approval",))

    # -- stages --------------------------------------------------------------------------

    def _stages(self, run: RetrainRun, config: RetrainSettings,
                champion: Predictor) -> RetrainRun:
        model = run.model
        gate = load_gate(config.gate)
        folder = self.settings.resolved_runs_dir / f"{model}-{run.id}"
        data = self._data(run, config, champion, gate, folder)
        if isinstance(data, str):
            return self._fail(run, data)
        train_path, holdout, labels_column, data_detail = data
        run = self.runs.stage(run, "training", None, {"data": data_detail})
        self.progress(f"  data: {data_detail['training_rows']} training rows, "
                      f"{data_detail['holdout_rows']} held out for the gate")

        training = self._train(config, train_path, folder / "training", run)
        run = self.runs.stage(run, "registering" if training.succeeded else "training",
                              Action.RETRAIN_TRAINING, {"training": _training_detail(training)})
        self.progress(f"  training: {training.status} in {training.seconds:.1f} s"
                      + ("" if training.succeeded else f" — {training.message}"))
        if not training.succeeded:
            return self._fail(run, f"training {training.status.replace('_', ' ')}: "
                                   f"{training.message}")

        candidate = self._register(run, config, champion, training, holdout, labels_column,
                                   data_detail)
        run = self.runs.stage(run, "gate", None, {}, candidate=candidate.version)
        self.progress(f"  registered {candidate.info.ref} (parent {champion.info.ref})")

        result = self._gate(candidate, champion, holdout, labels_column, gate)
        verdict = {"gate": result.to_dict()}
        if not result.passed:
            self.progress("  gate: rejected — " + "; ".join(result.reasons))
            return self.runs.finish(run, "rejected", "the gate rejected version "
                                    f"{candidate.version}: " + "; ".join(result.reasons),
                                    Action.RETRAIN_GATE, verdict)
        run = self.runs.stage(run, "approval" if config.approval else "rollout",
                              Action.RETRAIN_GATE, verdict)
        self.progress("  gate: passed — " + "; ".join(result.reasons))
        if config.approval:
            message = (f"version {candidate.version} passed the gate; waiting for "
                       f"`modelyard approve {model}`")
            self.progress(f"  {message}")
            return self.runs.await_approval(run, message)
        return self._roll_out(run, config, approved=False)

    def _data(self, run: RetrainRun, config: RetrainSettings, champion: Predictor,
              gate: GateConfig, folder: Path
              ) -> tuple[Path, pd.DataFrame, str, dict[str, Any]] | str:
        """The training set and the holdout, or why there is not enough to go on."""
        labels_column = _labels_column(champion)
        features = champion.signature.input_names if champion.signature.columnar else None
        since, until = self._window(config)
        try:
            labelled_set = build_training_set(
                self.registry.db, run.model, since=since, until=until,
                out=folder / "labelled.parquet", labels_column=labels_column,
                predictions=self.predictions, features=features)
        except InvalidInput as error:
            return str(error)
        labelled = pd.read_parquet(labelled_set.path)
        (folder / "labelled.parquet").unlink()
        held = math.ceil(len(labelled) * config.holdout_share)
        if held < gate.min_rows:
            return (f"only {held} held-out labelled rows (the newest "
                    f"{config.holdout_share:.0%} of {len(labelled)} labelled predictions in "
                    f"the last {config.data_days:g} days); the gate needs {gate.min_rows}: "
                    "post more labels or lower gate.min_rows")
        holdout = labelled.iloc[len(labelled) - held:].drop(columns=[SOURCE_COLUMN])
        parts = [labelled.iloc[:len(labelled) - held]]
        reference_rows, origin = 0, None
        original = self._original(champion) if config.include_reference else None
        if original is not None:
            reference = original.reference()
            kept = reference[[*labelled_set.features, _labels_column(original)]].copy()
            kept.columns = pd.Index([*labelled_set.features, labels_column])
            kept[SOURCE_COLUMN] = "reference"
            parts.append(kept)
            reference_rows, origin = len(kept), original.info.ref
        train = pd.concat(parts, ignore_index=True)
        train_path = folder / "train.parquet"
        train.to_parquet(train_path, index=False)
        holdout.to_parquet(folder / "holdout.parquet", index=False)
        return train_path, holdout, labels_column, {
            "since": since.isoformat(), "until": until.isoformat(),
            "labelled_rows": len(labelled), "holdout_rows": held,
            "training_rows": len(train), "reference_rows": reference_rows,
            "reference_from": origin,
            "training_set": str(train_path), "training_set_sha256": sha256_file(train_path),
            "holdout": str(folder / "holdout.parquet"), "features": labelled_set.features,
            "labels_column": labels_column,
        }

    def _train(self, config: RetrainSettings, data: Path, run_dir: Path,
               run: RetrainRun) -> TrainingRun:
        workdir = (config.workdir or Path.cwd()).resolve()
        env: dict[str, str] = {}
        if is_callable_entry(config.entry_point):
            paths = [str(workdir), os.environ.get("PYTHONPATH", "")]
            env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        return run_training(config.entry_point, data, run_dir, timeout_s=config.timeout_s,
                            params=config.params, cwd=workdir, env=env,
                            run_id=f"{run.model}-{run.id}")

    def _register(self, run: RetrainRun, config: RetrainSettings, champion: Predictor,
                  training: TrainingRun, holdout: pd.DataFrame, labels_column: str,
                  data: Mapping[str, Any]) -> Predictor:
        """The trained model as the next version. Its reference (what its monitor compares
        live traffic with, and its baseline metrics) is the holdout: the newest production
        data, the world the gate chose it for. Its provenance names the training set."""
        assert training.model_path is not None
        train_path = Path(data["training_set"])
        info = register(
            training.model_path, run.model, reference=holdout, labels_column=labels_column,
            task=champion.task, parent=champion.info.ref,
            description=f"retrained by run {run.id} ({run.trigger}: {run.reason})",
            params={**config.params, **training.params},
            metrics=training.metrics, trust_pickle=config.trust_pickle,
            data_uri=train_path.resolve().as_uri(), data_sha256=data["training_set_sha256"],
            tags={"retrain_run": str(run.id), "trigger": run.trigger,
                  "training_run": training.run_id},
            settings=self.settings,
        )
        return load(info.ref, self.settings)

    @staticmethod
    def _gate(candidate: Predictor, champion: Predictor, holdout: pd.DataFrame,
              labels_column: str, gate: GateConfig) -> GateResult:
        task = champion.task
        proba = task is Task.CLASSIFICATION and any(
            m in ("roc_auc", "log_loss") for m in gate.metrics_for(task))
        return evaluate_gate(
            candidate.predict, champion.predict, holdout, labels_column, gate, task,
            candidate_proba=candidate.predict_proba if proba else None,
            champion_proba=champion.predict_proba if proba else None,
            classes=champion.classes,
            features=[c for c in holdout.columns if c != labels_column],
        )

    def _roll_out(self, run: RetrainRun, config: RetrainSettings, approved: bool) -> RetrainRun:
        assert run.candidate is not None
        assert run.champion is not None
        spec = {**config.rollout, "candidate": run.candidate, "baseline": run.champion}
        expected = ("awaiting_approval",) if approved else ("running",)
        try:
            rollout = RolloutAdmin(self.rollouts).start_rollout(run.model, spec)
        except ModelyardError as error:
            return self.runs.finish(run, "failed", f"the rollout could not start: "
                                    f"{first_line(str(error))}", Action.RETRAIN_FAIL,
                                    expected=expected)
        message = (f"{rollout.strategy} rollout {rollout.id} of version {run.candidate} "
                   f"started" + (f" (approved by {self.registry.actor})" if approved else ""))
        self.progress(f"  {message}")
        return self.runs.finish(run, "rollout_started", message,
                                Action.RETRAIN_APPROVE if approved else None,
                                {"rollout": {"id": rollout.id, "strategy": rollout.strategy}},
                                expected=expected, stage="rollout", rollout_id=rollout.id)

    # -- helpers -------------------------------------------------------------------------

    def _fail(self, run: RetrainRun, message: str) -> RetrainRun:
        self.progress(f"  failed: {message}")
        log.warning("retraining run %s of %s failed: %s", run.id, run.model, message)
        return self.runs.finish(run, "failed", message, Action.RETRAIN_FAIL,
                                expected=("running",))

    def _original(self, champion: Predictor) -> Predictor | None:
        """The version whose labelled reference is the *original* training data: the champion
        itself, or — when it came from a retrain, whose reference is a holdout taken from the
        prediction log (and so already among the logged rows) — its first ancestor that did
        not. None when that version kept no labelled reference."""
        found, seen = champion, set()
        while found.info.tags.get("retrain_run") and found.manifest.provenance.parent:
            parent = found.manifest.provenance.parent
            if parent in seen:
                break
            seen.add(parent)
            try:
                found = load(parent, self.settings)
            except ModelyardError:  # the parent was deleted: no original to add
                return None
        return found if _has_labelled_reference(found) else None

    def _champion(self, model: str) -> Predictor:
        return load(model, self.settings)

    def _window(self, config: RetrainSettings) -> tuple[datetime, datetime]:
        until = self.now()
        return until - timedelta(days=config.data_days), until

    def _blockers(self, model: str) -> list[str]:
        found = []
        active = self.runs.active(model)
        if active is not None:
            found.append(f"model {model!r} already has retraining run {active.id} "
                         f"({active.state.replace('_', ' ')}); "
                         + (f"approve or decline it first (modelyard approve {model})"
                            if active.state == "awaiting_approval" else "wait for it to end"))
        rollout = self.rollouts.active(model)
        if rollout is not None:
            found.append(f"model {model!r} has a {rollout.state} {rollout.strategy} rollout of "
                         f"version {rollout.candidate}; retrain after it ends")
        return found

    def _awaiting(self, model: str, run_id: int | None) -> RetrainRun:
        self.config(model)
        if run_id is not None:
            run = self.runs.get(run_id)
            if run.model != model:
                raise NotFound(f"retraining run {run_id} is of {run.model!r}, not {model!r}")
        else:
            found = self.runs.active(model)
            if found is None:
                raise NotFound(f"model {model!r} has no retraining run awaiting approval")
            run = found
        if run.state != "awaiting_approval":
            raise Conflict(f"retraining run {run.id} of {model} is "
                           f"{run.state.replace('_', ' ')}, not awaiting approval")
        return run


def check_settings(config: RetrainSettings) -> None:
    """A model's retraining settings hold what a run reads: its gate and its rollout."""
    load_gate(config.gate)
    check_rollout_spec(config.rollout)


def check_rollout_spec(spec: Mapping[str, Any]) -> None:
    """The rollout settings of a retrain, checked before anything is trained."""
    unknown = [key for key in spec if key not in _ROLLOUT_KEYS]
    if unknown:
        raise InvalidInput(f"unknown rollout setting {unknown[0]!r}; expected "
                           f"{', '.join(_ROLLOUT_KEYS)}")
    strategy = spec.get("strategy", "canary")
    if strategy not in STRATEGIES:
        raise InvalidInput(f"unknown rollout strategy {strategy!r}; choose one of "
                           f"{', '.join(STRATEGIES)}")
    if spec.get("analysis"):
        analysis.load_checks(spec["analysis"])


def _labels_column(predictor: Predictor) -> str:
    reference = predictor.manifest.reference
    if reference is not None and reference.labels_column:
        return reference.labels_column
    return DEFAULT_LABELS_COLUMN


def _has_labelled_reference(predictor: Predictor) -> bool:
    reference = predictor.manifest.reference
    return reference is not None and reference.labels_column is not None


def _count_labelled(retrainer: Retrainer, model: str, since: datetime, until: datetime) -> int:
    from modelyard.live.feedback import FeedbackStore

    log_ = retrainer.predictions or PredictionLog(retrainer.registry.db)
    labels = FeedbackStore(retrainer.registry.db, predictions=log_).labels_for(
        model, None, since, until)
    return len(labels)


def _training_detail(training: TrainingRun) -> dict[str, Any]:
    return {key: value for key, value in training.to_dict().items() if key != "tail"} | {
        "tail": training.tail[-5:]}
