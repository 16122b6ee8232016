"""The training entry point of ``modelyard demo``'s retrain (``lifecycle.models.*.entry_point``).

A user's would live in their own package; this one refits the demo's logistic regression on
what the retrain hands it: the logged predictions joined with their labels, and the champion's
reference data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def train(data: pd.DataFrame, output_dir: Path, max_iter: int = 2000) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = data.drop(columns=["malignant", "source"])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    return model.fit(X, data["malignant"])
