"""Evidently's default data-drift report on two Parquet files (run in Evidently's own venv).

    /root/.cache/bench-monitoring/evidently/bin/python benchmarks/monitoring/evidently_runner.py \
        REFERENCE CURRENT --rows N

Phases: ``read`` (``pd.read_parquet`` of both files, as a user loads them), ``dataset``
(``Dataset.from_pandas`` with the column kinds given, so Evidently and modelyard treat the same
columns as numerical and categorical), ``report`` (``Report([DataDriftPreset()]).run``: every
per-column test and the dataset drift share, with the preset's defaults). A column is drifted
when Evidently says so: a p-value below its threshold, or a distance at or above it (as in
``evidently.legacy.calculations.stattests``); the count is checked against the preset's own
``DriftedColumnsCount``.
"""

from __future__ import annotations

import re

import evidently
import pandas as pd
from _runner import Run
from data import CATEGORICAL, NUMERIC
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

_VALUE_DRIFT = re.compile(r"ValueDrift\(column=(?P<column>.+),method=(?P<method>.+),threshold=")


def main() -> None:
    run = Run("evidently", evidently.__version__)
    args = run.args
    with run.phase("read"):
        reference = pd.read_parquet(args.reference)
        current = pd.read_parquet(args.current)
    with run.phase("dataset"):
        definition = DataDefinition(
            numerical_columns=[name for name, *_ in NUMERIC],
            categorical_columns=[name for name, *_ in CATEGORICAL],
        )
        reference_data = Dataset.from_pandas(reference, data_definition=definition)
        current_data = Dataset.from_pandas(current, data_definition=definition)
    with run.phase("report"):
        snapshot = Report([DataDriftPreset()]).run(current_data, reference_data)
        metrics = snapshot.dict()["metrics"]
    drifted, per_column, reported = [], {}, None
    for metric in metrics:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            reported = int(metric["value"]["count"])
            continue
        found = _VALUE_DRIFT.match(metric["metric_name"])
        if not found:
            continue
        score, threshold = float(metric["value"]), float(config["threshold"])
        method = found["method"]
        is_p_value = "p_value" in method
        detected = score < threshold if is_p_value else score >= threshold
        per_column[found["column"]] = {"method": method, "score": score, "threshold": threshold}
        if detected:
            drifted.append(found["column"])
    run.emit(
        drifted,
        columns=len(per_column),
        evidently_drifted_count=reported,
        count_agrees=reported == len(drifted),
        per_column=per_column,
        pandas=pd.__version__,
    )


if __name__ == "__main__":
    main()
