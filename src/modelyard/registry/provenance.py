"""Provenance facts gathered at registration: data hashes, the caller's git commit, metrics."""

from __future__ import annotations

import hashlib
import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics

from modelyard.types import Task


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """Commit, dirty flag and top folder of the git repository around ``cwd``, if any."""
    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    if commit is None:
        return {}
    status = run("status", "--porcelain", "--untracked-files=no")
    return {
        "code_version": commit,
        "code_dirty": bool(status),
        "code_repository": run("rev-parse", "--show-toplevel"),
    }


def baseline_metrics(
    task: Task, y_true: np.ndarray, outputs: dict[str, np.ndarray], classes: list[Any] | None
) -> dict[str, float]:
    """The model's metrics on its own reference data: the baseline later windows compare to."""
    predicted = outputs.get("predict")
    if predicted is None or len(predicted) != len(y_true):
        return {}
    result: dict[str, float] = {}
    if task is Task.CLASSIFICATION:
        result["accuracy"] = metrics.accuracy_score(y_true, predicted)
        result["f1_macro"] = metrics.f1_score(y_true, predicted, average="macro", zero_division=0)
        proba = outputs.get("predict_proba")
        if proba is not None and classes is not None and proba.ndim == 2:
            present = set(np.unique(y_true).tolist())
            if present <= set(classes) and len(present) == len(classes) >= 2:
                scores = proba[:, 1] if len(classes) == 2 else proba
                result["roc_auc"] = metrics.roc_auc_score(
                    y_true, scores, multi_class="ovr", labels=classes
                )
                result["log_loss"] = metrics.log_loss(y_true, proba, labels=classes)
    elif task is Task.REGRESSION:
        values = np.asarray(predicted, dtype=float).reshape(len(y_true), -1)[:, 0]
        result["mae"] = metrics.mean_absolute_error(y_true, values)
        result["rmse"] = math.sqrt(metrics.mean_squared_error(y_true, values))
        result["r2"] = metrics.r2_score(y_true, values)
    return {key: float(value) for key, value in result.items()}
