"""LightGBM models in LightGBM's text format (``model.txt``), run through a ``Booster``.

The text format holds the trees but not the scikit-learn wrapper, so ``save`` records the wrapper
class and, for classifiers, the class labels; ``predict_proba`` is rebuilt from the booster's
output exactly as ``LGBMClassifier`` does it. LightGBM is imported only here.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import CorruptArtifact, InvalidInput, UnknownFormat, first_line
from modelyard.runtimes._files import pinned_spec, staged_copy
from modelyard.runtimes._tabular import as_frame, check_width, json_safe, python_list
from modelyard.runtimes.base import Consent, ModelInput, Runtime, require_extra, verify_file
from modelyard.types import FlavorSpec, Task

MODEL_FILE = "model.txt"
WRAPPERS = ("LGBMClassifier", "LGBMRegressor", "LGBMRanker")
_AUTO_NAME = re.compile(r"Column_\d+")


def save(model: Any, directory: Path) -> FlavorSpec:
    """Write a fitted ``LGBMModel`` or ``Booster`` as LightGBM text, ``model.txt``."""
    lgb = require_extra("lightgbm", "lightgbm", "saving a LightGBM model")
    options: dict[str, Any] = {}
    if isinstance(model, lgb.Booster):
        booster, options["wrapper"] = model, "Booster"
    elif isinstance(model, lgb.LGBMModel):
        wrapper = next((name for name in WRAPPERS if isinstance(model, getattr(lgb, name))), "")
        if not wrapper:
            raise UnknownFormat(f"unsupported LightGBM model type {type(model).__name__}")
        if not model.__sklearn_is_fitted__():
            raise InvalidInput(f"the {wrapper} is not fitted; call fit() before registering it")
        booster, options["wrapper"] = model.booster_, wrapper
        if wrapper == "LGBMClassifier":
            options["classes"] = python_list(model.classes_)
    else:
        raise UnknownFormat(f"{type(model).__name__} is not a LightGBM model")
    target = directory / MODEL_FILE
    booster.save_model(str(target))
    return pinned_spec("lightgbm", "lightgbm-txt", target, options)


def import_file(path: Path, directory: Path, consent: Consent) -> FlavorSpec:
    """Copy a LightGBM text model file; it is registered as a ``Booster``."""
    del consent  # LightGBM's text format holds data only
    lgb = require_extra("lightgbm", "lightgbm", "registering a LightGBM model")
    with staged_copy(path, directory, MODEL_FILE) as target:
        _read_booster(lgb, target, str(path))
        return pinned_spec("lightgbm", "lightgbm-txt", target, {"wrapper": "Booster"})


def load(directory: Path, spec: FlavorSpec) -> LightGBMRuntime:
    """The package's booster; a classifier's labels come from ``spec.options["classes"]``."""
    path = verify_file(directory, spec)
    lgb = require_extra("lightgbm", "lightgbm", "loading a LightGBM model")
    wrapper = spec.options.get("wrapper", "Booster")
    if wrapper != "Booster" and wrapper not in WRAPPERS:
        raise UnknownFormat(f"unknown LightGBM wrapper {wrapper!r}; expected one of {WRAPPERS}")
    classes = spec.options.get("classes") if wrapper == "LGBMClassifier" else None
    return LightGBMRuntime(_read_booster(lgb, path, spec.file), wrapper, classes)


class LightGBMRuntime(Runtime):
    """A LightGBM booster; with class labels it also gives ``predict_proba``."""

    flavor = "lightgbm"

    def __init__(self, booster: Any, wrapper: str, classes: list[Any] | None) -> None:
        self.booster = booster
        self.wrapper = wrapper
        self._classes = classes

    @property
    def feature_names(self) -> list[str] | None:
        """Names as LightGBM stored them (spaces become ``_``); None if it made them up."""
        names = [str(name) for name in self.booster.feature_name()]
        return None if all(_AUTO_NAME.fullmatch(name) for name in names) else names

    @property
    def n_features(self) -> int | None:
        return int(self.booster.num_feature())

    @property
    def classes(self) -> list[Any] | None:
        return self._classes

    @property
    def task(self) -> Task | None:
        if self._classes is not None:
            return Task.CLASSIFICATION
        return Task.REGRESSION if self.wrapper == "LGBMRegressor" else None

    def params(self) -> dict[str, Any]:
        params = getattr(self.booster, "params", None) or {}
        return {str(key): json_safe(value) for key, value in params.items()}

    def predict(
        self, inputs: ModelInput, outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        table = self._in_training_order(as_frame(inputs))
        check_width(table, self.n_features)
        raw = np.asarray(self.booster.predict(table))
        if self._classes is None:
            return {"predict": raw}
        proba = raw if raw.ndim == 2 else np.vstack((1.0 - raw, raw)).transpose()
        labels = np.asarray(self._classes)[np.argmax(proba, axis=1)]
        return {"predict": labels, "predict_proba": proba}

    def _in_training_order(self, table: pd.DataFrame | np.ndarray) -> pd.DataFrame | np.ndarray:
        """A frame whose columns carry the trained names, reordered to match; else as given.

        LightGBM itself matches columns by position. The frame stays a frame so that pandas
        categorical columns are encoded the way they were in training.
        """
        names = self.feature_names
        if not isinstance(table, pd.DataFrame) or names is None:
            return table
        by_name = {str(column).replace(" ", "_"): column for column in table.columns}
        if not all(name in by_name for name in names):
            return table
        columns = [by_name[name] for name in names]
        return table if columns == list(table.columns) else table[columns]


def _read_booster(lgb: ModuleType, path: Path, shown: str) -> Any:
    try:
        return lgb.Booster(model_file=str(path))
    except lgb.basic.LightGBMError as exc:
        raise CorruptArtifact(
            f"{shown} is not a readable LightGBM model: {first_line(str(exc))}"
        ) from exc
