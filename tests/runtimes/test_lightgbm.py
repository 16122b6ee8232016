"""LightGBM flavor: text models with the wrapper's classes kept beside them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from modelyard.errors import CorruptArtifact
from modelyard.runtimes import lightgbm as lightgbm_flavor
from modelyard.runtimes.base import Consent
from modelyard.types import Task

QUIET = {"n_estimators": 8, "verbose": -1, "n_jobs": 1}


def test_multiclass_round_trip(wine: tuple[pd.DataFrame, pd.Series], package: Path) -> None:
    frame, target = wine
    labels = np.array(["nebbiolo", "grignolino", "barbera"])[target]
    model = lgb.LGBMClassifier(**QUIET).fit(frame, labels)
    spec = lightgbm_flavor.save(model, package)
    runtime = lightgbm_flavor.load(package, spec)

    assert (spec.name, spec.serialization, spec.file) == ("lightgbm", "lightgbm-txt", "model.txt")
    assert spec.options == {
        "wrapper": "LGBMClassifier",
        "classes": ["barbera", "grignolino", "nebbiolo"],
    }
    assert runtime.task is Task.CLASSIFICATION
    assert runtime.feature_names == list(frame.columns)
    for batch in (frame, frame.to_numpy()):
        outputs = runtime.predict(batch)
        np.testing.assert_array_equal(outputs["predict"], model.predict(frame))
        np.testing.assert_allclose(outputs["predict_proba"], model.predict_proba(frame), atol=0)


def test_columns_are_matched_by_name_when_the_model_has_names(
    cancer: tuple[pd.DataFrame, pd.Series], package: Path
) -> None:
    frame, target = cancer
    model = lgb.LGBMClassifier(**QUIET).fit(frame, target)
    runtime = lightgbm_flavor.load(package, lightgbm_flavor.save(model, package))

    outputs = runtime.predict(frame[frame.columns[::-1]])

    assert runtime.feature_names is not None
    assert "mean_radius" in runtime.feature_names  # LightGBM stores spaces as underscores
    np.testing.assert_array_equal(outputs["predict_proba"], model.predict_proba(frame))


def test_binary_probabilities_get_two_columns(
    cancer: tuple[pd.DataFrame, pd.Series], package: Path
) -> None:
    frame, target = cancer
    data = frame.to_numpy()
    model = lgb.LGBMClassifier(**QUIET).fit(data, target.to_numpy())
    runtime = lightgbm_flavor.load(package, lightgbm_flavor.save(model, package))

    outputs = runtime.predict(data)

    assert runtime.classes == [0, 1]
    assert runtime.feature_names is None  # fitted on an array: LightGBM made the names up
    assert outputs["predict_proba"].shape == (len(data), 2)
    np.testing.assert_array_equal(outputs["predict"], model.predict(data))
    np.testing.assert_allclose(outputs["predict_proba"], model.predict_proba(data), atol=0)


def test_regressor_round_trip(diabetes: tuple[np.ndarray, np.ndarray], package: Path) -> None:
    data, target = diabetes
    model = lgb.LGBMRegressor(**QUIET).fit(data, target)
    runtime = lightgbm_flavor.load(package, lightgbm_flavor.save(model, package))

    assert runtime.task is Task.REGRESSION
    assert runtime.n_features == 10
    np.testing.assert_array_equal(runtime.predict(data)["predict"], model.predict(data))


def test_text_file_imports_as_a_booster(
    diabetes: tuple[np.ndarray, np.ndarray], tmp_path: Path, package: Path
) -> None:
    data, target = diabetes
    params = {"objective": "regression", "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(data, label=target), num_boost_round=5)
    source = tmp_path / "diabetes.txt"
    booster.save_model(source)

    spec = lightgbm_flavor.import_file(source, package, Consent())
    runtime = lightgbm_flavor.load(package, spec)

    assert spec.options == {"wrapper": "Booster"}
    assert runtime.classes is None
    assert runtime.params()["objective"] == "regression"
    np.testing.assert_array_equal(runtime.predict(data)["predict"], booster.predict(data))


def test_unreadable_model_is_corrupt(tmp_path: Path, package: Path) -> None:
    source = tmp_path / "model.txt"
    source.write_text("tree\nversion=v4\nthis is not a model\n")
    with pytest.raises(CorruptArtifact, match="not a readable LightGBM model"):
        lightgbm_flavor.import_file(source, package, Consent())
    assert list(package.iterdir()) == []


def test_file_changed_after_registration_is_caught_on_load(
    diabetes: tuple[np.ndarray, np.ndarray], package: Path, tamper: Callable[[Path], None]
) -> None:
    data, target = diabetes
    spec = lightgbm_flavor.save(lgb.LGBMRegressor(**QUIET).fit(data, target), package)
    tamper(package / spec.file)
    with pytest.raises(CorruptArtifact, match="changed after registration"):
        lightgbm_flavor.load(package, spec)
