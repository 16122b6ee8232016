"""Small real datasets and models shared by the runtime tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine


@pytest.fixture(scope="session")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    """Binary classification, 30 float columns with spaces in their names."""
    frame, target = load_breast_cancer(return_X_y=True, as_frame=True)
    return frame, target


@pytest.fixture(scope="session")
def wine() -> tuple[pd.DataFrame, pd.Series]:
    """Three classes, 13 float columns."""
    frame, target = load_wine(return_X_y=True, as_frame=True)
    return frame, target


@pytest.fixture(scope="session")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    """Regression on a plain array (no column names)."""
    data, target = load_diabetes(return_X_y=True)
    return data, target


@pytest.fixture(scope="session")
def mixed() -> tuple[pd.DataFrame, np.ndarray]:
    """Two numeric columns and a string column, with a label that depends on all three."""
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, n),
            "income": rng.normal(50, 15, n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
        }
    )
    score = (frame["age"] - 50) / 30 + (frame["income"] - 50) / 15 + (frame["plan"] == "pro") * 1.5
    label = np.where(score + rng.normal(0, 0.5, n) > 0.5, "churn", "stay")
    return frame, label


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """An empty model folder, as the registry hands to ``save``/``import_file``."""
    directory = tmp_path / "package"
    directory.mkdir()
    return directory


@pytest.fixture
def tamper() -> Callable[[Path], None]:
    """A function that changes one byte in the middle of a file, as a disk error or edit would."""

    def flip_a_byte(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    return flip_a_byte
