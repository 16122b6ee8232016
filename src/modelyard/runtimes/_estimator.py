"""A fitted estimator with the scikit-learn API (scikit-learn itself, XGBoost's wrappers)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from modelyard.runtimes._tabular import as_table, json_safe, python_list
from modelyard.runtimes.base import ModelInput, Runtime
from modelyard.types import Task


class EstimatorRuntime(Runtime):
    """Calls ``predict`` and, for classifiers, ``predict_proba`` on a fitted estimator."""

    flavor = "sklearn"

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def feature_names(self) -> list[str] | None:
        names = getattr(self.model, "feature_names_in_", None)
        return None if names is None else [str(name) for name in names]

    @property
    def n_features(self) -> int | None:
        count = getattr(self.model, "n_features_in_", None)
        return None if count is None else int(count)

    @property
    def classes(self) -> list[Any] | None:
        if not self.is_classifier:
            return None
        return python_list(self.model.classes_)

    @property
    def is_classifier(self) -> bool:
        return hasattr(self.model, "predict_proba") and hasattr(self.model, "classes_")

    @property
    def task(self) -> Task | None:
        if self.is_classifier:
            return Task.CLASSIFICATION
        from sklearn.base import is_regressor

        return Task.REGRESSION if is_regressor(self.model) else None

    def params(self) -> dict[str, Any]:
        get_params = getattr(self.model, "get_params", None)
        if get_params is None:
            return {}
        return {str(key): json_safe(value) for key, value in get_params(deep=False).items()}

    def predict(
        self, inputs: ModelInput, outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        table = as_table(inputs, self.feature_names, self.n_features)
        wanted = {"predict", "predict_proba"} if outputs is None else set(outputs)
        result: dict[str, np.ndarray] = {}
        if "predict" in wanted or not self.is_classifier:
            result["predict"] = np.asarray(self.model.predict(table))
        if self.is_classifier and "predict_proba" in wanted:
            proba = np.asarray(self.model.predict_proba(table))
            if not np.issubdtype(proba.dtype, np.floating):
                proba = proba.astype(np.float64)
            result["predict_proba"] = proba
        return result
