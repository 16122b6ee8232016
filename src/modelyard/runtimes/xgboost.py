"""XGBoost models in XGBoost's own JSON or UBJSON format (no pickle involved).

A scikit-learn wrapper (``XGBClassifier`` …) is loaded back as that wrapper so predictions match
the original object; a bare ``Booster`` predicts through a ``DMatrix``. XGBoost is imported only
here, when a model is saved, imported or loaded.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from modelyard.errors import CorruptArtifact, InvalidInput, UnknownFormat, first_line
from modelyard.runtimes._estimator import EstimatorRuntime
from modelyard.runtimes._files import pinned_spec, staged_copy
from modelyard.runtimes._tabular import as_table, python_list
from modelyard.runtimes.base import Consent, ModelInput, Runtime, require_extra, verify_file
from modelyard.types import FlavorSpec, Task

# Most specific first: XGBRFClassifier is an XGBClassifier.
WRAPPERS = ("XGBRFClassifier", "XGBRFRegressor", "XGBClassifier", "XGBRegressor", "XGBRanker")
_SERIALIZATIONS = {".json": "xgboost-json", ".ubj": "xgboost-ubj"}
_ESTIMATOR_TYPES = {
    "classifier": "XGBClassifier",
    "regressor": "XGBRegressor",
    "ranker": "XGBRanker",
}


def save(model: Any, directory: Path) -> FlavorSpec:
    """Write a fitted ``XGBModel`` or ``Booster`` as ``model.json``."""
    xgb = require_extra("xgboost", "xgboost", "saving an XGBoost model")
    if isinstance(model, xgb.Booster):
        wrapper = "Booster"
    elif isinstance(model, xgb.XGBModel):
        wrapper = next((name for name in WRAPPERS if isinstance(model, getattr(xgb, name))), "")
        if not wrapper:
            raise UnknownFormat(f"unsupported XGBoost model type {type(model).__name__}")
        if not model.__sklearn_is_fitted__():
            raise InvalidInput(f"the {wrapper} is not fitted; call fit() before registering it")
    else:
        raise UnknownFormat(f"{type(model).__name__} is not an XGBoost model")
    target = directory / "model.json"
    model.save_model(str(target))
    return pinned_spec("xgboost", "xgboost-json", target, _options(model, wrapper))


def import_file(path: Path, directory: Path, consent: Consent) -> FlavorSpec:
    """Copy an XGBoost ``.json``/``.ubj`` model; a wrapper's saved estimator type is kept."""
    del consent  # XGBoost's own formats hold data only
    xgb = require_extra("xgboost", "xgboost", "registering an XGBoost model")
    serialization = _SERIALIZATIONS.get(path.suffix.lower())
    if serialization is None:
        raise UnknownFormat(f"{path.name} is not an XGBoost model; expected .json or .ubj")
    with staged_copy(path, directory, f"model{path.suffix.lower()}") as target:
        booster = _read_booster(xgb, target, str(path))
        wrapper = _saved_wrapper(booster)
        model = booster
        if wrapper != "Booster":
            model = getattr(xgb, wrapper)()
            model.load_model(str(target))
        return pinned_spec("xgboost", serialization, target, _options(model, wrapper))


def load(directory: Path, spec: FlavorSpec) -> Runtime:
    """The package's model as its wrapper class, or as a ``Booster``."""
    path = verify_file(directory, spec)
    xgb = require_extra("xgboost", "xgboost", "loading an XGBoost model")
    wrapper = spec.options.get("wrapper", "Booster")
    if wrapper == "Booster":
        return BoosterRuntime(_read_booster(xgb, path, spec.file), xgb)
    if wrapper not in WRAPPERS:
        raise UnknownFormat(f"unknown XGBoost wrapper {wrapper!r}; expected one of {WRAPPERS}")
    model = getattr(xgb, wrapper)()
    try:
        model.load_model(str(path))
    except xgb.core.XGBoostError as exc:
        raise CorruptArtifact(f"cannot load {spec.file}: {first_line(str(exc))}") from exc
    return XGBoostEstimatorRuntime(model)


class XGBoostEstimatorRuntime(EstimatorRuntime):
    """An ``XGBClassifier``/``XGBRegressor``: the scikit-learn API, XGBoost underneath."""

    flavor = "xgboost"


class BoosterRuntime(Runtime):
    """A bare ``xgboost.Booster``: one ``predict`` output, whatever its objective yields."""

    flavor = "xgboost"

    def __init__(self, booster: Any, xgb: ModuleType) -> None:
        self.booster = booster
        self._xgb = xgb

    @property
    def feature_names(self) -> list[str] | None:
        names = self.booster.feature_names
        return None if names is None else [str(name) for name in names]

    @property
    def n_features(self) -> int | None:
        return int(self.booster.num_features())

    @property
    def task(self) -> Task | None:
        return None

    def params(self) -> dict[str, Any]:
        config = json.loads(self.booster.save_config())
        return {
            "objective": config["learner"]["objective"]["name"],
            "num_boosted_rounds": int(self.booster.num_boosted_rounds()),
        }

    def predict(
        self, inputs: ModelInput, outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        table = as_table(inputs, self.feature_names, self.n_features)
        return {"predict": np.asarray(self.booster.predict(self._xgb.DMatrix(table)))}


def _read_booster(xgb: ModuleType, path: Path, shown: str) -> Any:
    try:
        return xgb.Booster(model_file=str(path))
    except xgb.core.XGBoostError as exc:
        raise CorruptArtifact(
            f"{shown} is not a readable XGBoost model: {first_line(str(exc))}"
        ) from exc


def _saved_wrapper(booster: Any) -> str:
    """The wrapper class XGBoost's scikit-learn API recorded in the file, else ``Booster``."""
    try:
        recorded = json.loads(booster.attr("scikit_learn") or "{}")
    except json.JSONDecodeError:
        return "Booster"
    if not isinstance(recorded, dict):
        return "Booster"
    return _ESTIMATOR_TYPES.get(str(recorded.get("_estimator_type")), "Booster")


def _options(model: Any, wrapper: str) -> dict[str, Any]:
    options: dict[str, Any] = {"wrapper": wrapper}
    if hasattr(model, "classes_") and hasattr(model, "predict_proba"):
        options["classes"] = python_list(model.classes_)
    return options
