"""whylogs' profiles and drift scores on two Parquet files (run in whylogs' own venv).

    /root/.cache/bench-monitoring/whylogs/bin/python benchmarks/monitoring/whylogs_runner.py \
        REFERENCE CURRENT --rows N

Phases: ``read`` (``pd.read_parquet`` of both files), ``profile_reference`` /
``profile_current`` (``why.log(frame).view()``, default schema), ``drift``
(``whylogs.viz.drift.column_drift_algorithms.calculate_drift_scores`` with its default
thresholds: KS from the KLL sketches for numbers, chi-square from frequent items for strings).
A column is drifted when whylogs' category is ``DRIFT`` (p < 0.05); ``POSSIBLE_DRIFT``
(0.05 ≤ p < 0.15) is counted separately and not as drift.
"""

from __future__ import annotations

import pandas as pd
import whylogs as why
from _runner import Run
from whylogs.viz.drift.column_drift_algorithms import calculate_drift_scores


def main() -> None:
    run = Run("whylogs", why.__version__)
    args = run.args
    with run.phase("read"):
        reference = pd.read_parquet(args.reference)
        current = pd.read_parquet(args.current)
    with run.phase("profile_reference"):
        reference_view = why.log(reference).view()
    with run.phase("profile_current"):
        current_view = why.log(current).view()
    with run.phase("drift"):
        scores = calculate_drift_scores(
            target_view=current_view, reference_view=reference_view, with_thresholds=True
        )
    drifted, possible, per_column, unscored = [], [], {}, []
    for name, score in scores.items():
        if not score:
            unscored.append(name)
            continue
        per_column[name] = {
            "method": score["algorithm"],
            "pvalue": score["pvalue"],
            "statistic": score["statistic"],
            "category": score["drift_category"],
        }
        if score["drift_category"] == "DRIFT":
            drifted.append(name)
        elif score["drift_category"] == "POSSIBLE_DRIFT":
            possible.append(name)
    run.emit(
        drifted,
        columns=len(per_column),
        possible_drift=sorted(possible),
        unscored=unscored,
        per_column=per_column,
        pandas=pd.__version__,
    )


if __name__ == "__main__":
    main()
