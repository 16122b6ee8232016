"""``modelyard.report``: a drift report over two tables, optionally scored by a registered model.

With ``model``, each chunk of both tables runs through the model: its predictions and class
probabilities become columns (``prediction``, ``proba_<class>``) that the report compares like
any other and uses for performance; the version's stored reference is the default reference
and its labels column the default target.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard.api.predictor import Predictor, load
from modelyard.errors import InvalidInput
from modelyard.monitoring._tables import label_of
from modelyard.monitoring.nulls import NullTables
from modelyard.monitoring.report import Report, ReportOptions, Roles, build_report
from modelyard.settings import Settings
from modelyard.types import Task

PREDICTION = "prediction"
PROBABILITY_PREFIX = "proba_"


def report(
    current: Any,
    reference: Any = None,
    *,
    model: str | None = None,
    roles: Roles | None = None,
    options: ReportOptions | None = None,
    settings: Settings | None = None,
    progress: Any = None,
) -> Report:
    """Compare ``current`` with ``reference`` (see :func:`modelyard.monitoring.build_report`).

    ``model`` (``name``, ``name@alias`` or ``name:N``) scores both tables with that version;
    then ``reference`` defaults to the reference stored with it.
    """
    roles = roles or Roles()
    options = options or ReportOptions()
    if options.tables is None and settings is not None:
        options = replace(options, tables=NullTables(settings.cache_dir / "nulls"))
    if model is None:
        if reference is None:
            raise InvalidInput("give a reference table, or a model whose reference to use")
        return build_report(reference, current, roles=roles, options=options, progress=progress)
    predictor = load(model, settings)
    if reference is None:
        info = predictor.manifest.reference
        if info is None:
            raise InvalidInput(
                f"{predictor.info.ref} was registered without reference data; pass --reference"
            )
        reference = Path(predictor.directory) / info.file
    roles = _model_roles(predictor, roles)
    return build_report(
        reference, current, roles=roles, options=options, score=_scorer(predictor, roles),
        progress=progress,
    )


def _model_roles(predictor: Predictor, roles: Roles) -> Roles:
    info = predictor.manifest.reference
    target = roles.target or (info.labels_column if info else None)
    classes = predictor.classes or []
    probabilities = dict(roles.probabilities)
    if predictor.task is Task.CLASSIFICATION and classes and not probabilities:
        probabilities = {label_of(c): f"{PROBABILITY_PREFIX}{label_of(c)}" for c in classes}
    task = roles.task or (
        predictor.task.value if predictor.task in (Task.CLASSIFICATION, Task.REGRESSION) else None
    )
    return replace(roles, target=target, prediction=roles.prediction or PREDICTION,
                   probabilities=probabilities, task=task)


def _scorer(predictor: Predictor, roles: Roles) -> Any:
    features = predictor.signature.input_names
    added = [roles.prediction, *roles.probabilities.values()]

    def score(frame: pd.DataFrame) -> pd.DataFrame:
        clash = [name for name in added if name in frame.columns]
        if clash:
            raise InvalidInput(
                f"the table already has a column {clash[0]!r}, which the model's outputs would "
                "replace; rename it"
            )
        absent = [name for name in features if name not in frame.columns]
        if absent:
            raise InvalidInput(
                f"the table lacks the model's input column {absent[0]!r}"
                + (f" and {len(absent) - 1} more" if len(absent) > 1 else "")
            )
        outputs = predictor.run(frame[features])
        scored = frame.copy()
        main = outputs["predict"] if "predict" in outputs else next(iter(outputs.values()))
        scored[roles.prediction or PREDICTION] = np.asarray(main).reshape(len(frame), -1)[:, 0]
        if roles.probabilities and "predict_proba" in outputs:
            proba = np.asarray(outputs["predict_proba"], dtype=np.float64)
            for i, column in enumerate(roles.probabilities.values()):
                scored[column] = proba[:, i]
        return scored

    return score
