"""XGBoost flavor: wrappers and boosters in XGBoost's own JSON/UBJSON formats."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from modelyard.errors import CorruptArtifact, InvalidInput
from modelyard.runtimes import xgboost as xgboost_flavor
from modelyard.runtimes.base import Consent
from modelyard.types import Task


@pytest.fixture(scope="module")
def classifier(wine: tuple[pd.DataFrame, pd.Series]) -> xgb.XGBClassifier:
    frame, target = wine
    return xgb.XGBClassifier(n_estimators=8, max_depth=3, n_jobs=1).fit(frame, target)


def test_classifier_round_trip(
    classifier: xgb.XGBClassifier, wine: tuple[pd.DataFrame, pd.Series], package: Path
) -> None:
    frame, _ = wine
    spec = xgboost_flavor.save(classifier, package)
    runtime = xgboost_flavor.load(package, spec)

    assert (spec.name, spec.serialization, spec.file) == ("xgboost", "xgboost-json", "model.json")
    assert spec.options == {"wrapper": "XGBClassifier", "classes": [0, 1, 2]}
    assert runtime.classes == [0, 1, 2]
    assert runtime.task is Task.CLASSIFICATION
    assert runtime.feature_names == list(frame.columns)
    for batch in (frame, frame.to_numpy()):
        outputs = runtime.predict(batch)
        np.testing.assert_array_equal(outputs["predict"], classifier.predict(frame))
        np.testing.assert_allclose(
            outputs["predict_proba"], classifier.predict_proba(frame), rtol=0, atol=0
        )
    json.dumps(runtime.params(), allow_nan=False)


def test_regressor_round_trip(diabetes: tuple[np.ndarray, np.ndarray], package: Path) -> None:
    data, target = diabetes
    model = xgb.XGBRegressor(n_estimators=8, n_jobs=1).fit(data, target)
    runtime = xgboost_flavor.load(package, xgboost_flavor.save(model, package))

    outputs = runtime.predict(data)

    assert runtime.task is Task.REGRESSION
    assert runtime.classes is None
    np.testing.assert_array_equal(outputs["predict"], model.predict(data))


def test_booster_round_trip(cancer: tuple[pd.DataFrame, pd.Series], package: Path) -> None:
    frame, target = cancer
    params = {"objective": "binary:logistic", "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(frame, label=target), num_boost_round=5)
    spec = xgboost_flavor.save(booster, package)
    runtime = xgboost_flavor.load(package, spec)

    assert spec.options == {"wrapper": "Booster"}
    assert runtime.feature_names == list(frame.columns)
    assert runtime.n_features == 30
    assert runtime.params() == {"objective": "binary:logistic", "num_boosted_rounds": 5}
    expected = booster.predict(xgb.DMatrix(frame))
    np.testing.assert_array_equal(runtime.predict(frame)["predict"], expected)
    np.testing.assert_array_equal(runtime.predict(frame.to_numpy())["predict"], expected)


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_native_file_keeps_the_wrapper_it_was_saved_from(
    suffix: str,
    classifier: xgb.XGBClassifier,
    wine: tuple[pd.DataFrame, pd.Series],
    tmp_path: Path,
    package: Path,
) -> None:
    frame, _ = wine
    source = tmp_path / f"wine{suffix}"
    classifier.save_model(source)

    spec = xgboost_flavor.import_file(source, package, Consent())
    outputs = xgboost_flavor.load(package, spec).predict(frame)

    assert spec.serialization == f"xgboost-{suffix[1:]}"
    assert spec.file == f"model{suffix}"
    assert spec.options == {"wrapper": "XGBClassifier", "classes": [0, 1, 2]}
    np.testing.assert_array_equal(outputs["predict_proba"], classifier.predict_proba(frame))


def test_native_booster_file_is_a_booster(
    classifier: xgb.XGBClassifier,
    wine: tuple[pd.DataFrame, pd.Series],
    tmp_path: Path,
    package: Path,
) -> None:
    frame, _ = wine
    source = tmp_path / "booster.json"
    classifier.get_booster().save_model(source)  # a bare booster records no wrapper

    spec = xgboost_flavor.import_file(source, package, Consent())
    outputs = xgboost_flavor.load(package, spec).predict(frame)

    assert spec.options == {"wrapper": "Booster"}
    np.testing.assert_array_equal(outputs["predict"], classifier.predict_proba(frame))


def test_unreadable_model_is_corrupt(tmp_path: Path, package: Path) -> None:
    source = tmp_path / "model.json"
    source.write_text('{"learner": {"objective": 1}, "version": [3, 0, 0]}')
    with pytest.raises(CorruptArtifact, match="not a readable XGBoost model"):
        xgboost_flavor.import_file(source, package, Consent())
    assert list(package.iterdir()) == []


def test_unfitted_model_is_refused(package: Path) -> None:
    with pytest.raises(InvalidInput, match="call fit"):
        xgboost_flavor.save(xgb.XGBClassifier(), package)


def test_file_changed_after_registration_is_caught_on_load(
    classifier: xgb.XGBClassifier, package: Path, tamper: Callable[[Path], None]
) -> None:
    spec = xgboost_flavor.save(classifier, package)
    tamper(package / spec.file)
    with pytest.raises(CorruptArtifact, match="changed after registration"):
        xgboost_flavor.load(package, spec)
