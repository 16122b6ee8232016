"""scikit-learn flavor: skops round trips, trusted types, pickle consent, input handling."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelyard.errors import (
    CorruptArtifact,
    InvalidInput,
    SignatureMismatch,
    UnknownFormat,
    UnsafeFormat,
)
from modelyard.runtimes import sklearn
from modelyard.runtimes.base import Consent
from modelyard.types import Task

TREE = "sklearn.tree._tree.Tree"


@pytest.fixture(scope="module")
def classifier(cancer: tuple[pd.DataFrame, pd.Series]) -> object:
    frame, target = cancer
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(frame, target)


@pytest.fixture(scope="module")
def forest(wine: tuple[pd.DataFrame, pd.Series]) -> RandomForestClassifier:
    frame, target = wine
    labels = np.array(["barolo", "grignolino", "barbera"])[target]
    return RandomForestClassifier(n_estimators=5, random_state=0).fit(frame, labels)


def test_classifier_round_trip_gives_identical_outputs(
    classifier: LogisticRegression, cancer: tuple[pd.DataFrame, pd.Series], package: Path
) -> None:
    frame, _ = cancer
    spec = sklearn.save(classifier, package)
    assert (spec.name, spec.serialization, spec.file) == ("sklearn", "skops", "model.skops")
    assert spec.sha256 == hashlib.sha256((package / "model.skops").read_bytes()).hexdigest()

    runtime = sklearn.load(package, spec)
    outputs = runtime.predict(frame)

    np.testing.assert_array_equal(outputs["predict"], classifier.predict(frame))
    np.testing.assert_allclose(
        outputs["predict_proba"], classifier.predict_proba(frame), rtol=0, atol=1e-12
    )
    assert outputs["predict_proba"].shape == (len(frame), 2)
    assert runtime.classes == [0, 1]
    assert all(type(label) is int for label in runtime.classes)
    assert runtime.task is Task.CLASSIFICATION
    assert runtime.feature_names == list(frame.columns)
    assert runtime.n_features == 30
    json.dumps(runtime.params(), allow_nan=False)  # a Pipeline's steps become text


def test_array_input_is_named_for_a_model_fitted_on_a_frame(
    classifier: LogisticRegression, cancer: tuple[pd.DataFrame, pd.Series], package: Path
) -> None:
    frame, _ = cancer
    runtime = sklearn.load(package, sklearn.save(classifier, package))

    from_array = runtime.predict(frame.to_numpy())
    reordered = runtime.predict(frame[frame.columns[::-1]])
    as_mapping = runtime.predict({name: frame[name].to_numpy() for name in frame.columns})

    for outputs in (from_array, reordered, as_mapping):
        np.testing.assert_array_equal(outputs["predict"], classifier.predict(frame))


def test_regressor_fitted_on_an_array_accepts_a_frame(
    diabetes: tuple[np.ndarray, np.ndarray], package: Path
) -> None:
    data, target = diabetes
    model = Ridge(alpha=0.5).fit(data, target)
    runtime = sklearn.load(package, sklearn.save(model, package))

    outputs = runtime.predict(pd.DataFrame(data, columns=[f"x{i}" for i in range(10)]))

    assert list(outputs) == ["predict"]
    np.testing.assert_array_equal(outputs["predict"], model.predict(data))
    assert runtime.classes is None
    assert runtime.feature_names is None
    assert runtime.n_features == 10
    assert runtime.task is Task.REGRESSION
    assert runtime.params()["alpha"] == 0.5


def test_pipeline_with_a_string_column(
    mixed: tuple[pd.DataFrame, np.ndarray], package: Path
) -> None:
    frame, label = mixed
    encode = ColumnTransformer([("plan", OneHotEncoder(), ["plan"])], remainder=StandardScaler())
    model = make_pipeline(encode, LogisticRegression()).fit(frame, label)
    runtime = sklearn.load(package, sklearn.save(model, package))

    outputs = runtime.predict(frame)
    from_objects = runtime.predict(frame.to_numpy(dtype=object))

    np.testing.assert_array_equal(outputs["predict"], model.predict(frame))
    np.testing.assert_allclose(outputs["predict_proba"], model.predict_proba(frame), atol=1e-12)
    np.testing.assert_array_equal(from_objects["predict"], model.predict(frame))
    assert runtime.classes == ["churn", "stay"]
    assert runtime.feature_names == ["age", "income", "plan"]


def test_wrong_input_shape_is_a_signature_mismatch(
    classifier: LogisticRegression, cancer: tuple[pd.DataFrame, pd.Series], package: Path
) -> None:
    frame, _ = cancer
    runtime = sklearn.load(package, sklearn.save(classifier, package))

    with pytest.raises(SignatureMismatch, match="3 columns, but the model expects 30"):
        runtime.predict(frame.to_numpy()[:, :3])
    with pytest.raises(SignatureMismatch, match="lacks column\\(s\\) 'mean radius'"):
        runtime.predict(frame.drop(columns=["mean radius"]))


def test_save_refuses_an_unfitted_estimator(package: Path) -> None:
    with pytest.raises(InvalidInput, match="not fitted; call fit"):
        sklearn.save(LogisticRegression(), package)


def test_skops_type_outside_the_defaults_needs_the_users_trust(
    forest: RandomForestClassifier,
    wine: tuple[pd.DataFrame, pd.Series],
    tmp_path: Path,
    package: Path,
) -> None:
    frame, _ = wine
    source = tmp_path / "forest.skops"
    skops.io.dump(forest, source)

    with pytest.raises(UnsafeFormat, match=f"{TREE}.*--trust-type {TREE}"):
        sklearn.import_file(source, package, Consent())
    assert list(package.iterdir()) == []  # nothing of a refused file stays in the package

    spec = sklearn.import_file(source, package, Consent(trusted_types=(TREE,)))
    assert spec.options["trusted_types"] == [TREE]
    outputs = sklearn.load(package, spec).predict(frame)
    np.testing.assert_array_equal(outputs["predict"], forest.predict(frame))
    np.testing.assert_array_equal(outputs["predict_proba"], forest.predict_proba(frame))


def test_saving_an_in_memory_model_trusts_its_own_types(
    forest: RandomForestClassifier, package: Path
) -> None:
    spec = sklearn.save(forest, package)
    assert spec.options["trusted_types"] == [TREE]
    assert sklearn.load(package, spec).classes == ["barbera", "barolo", "grignolino"]


def test_not_a_skops_archive_is_corrupt(tmp_path: Path, package: Path) -> None:
    source = tmp_path / "model.skops"
    source.write_bytes(b"this is not a zip archive")
    with pytest.raises(CorruptArtifact, match="not a valid skops archive"):
        sklearn.import_file(source, package, Consent())
    assert list(package.iterdir()) == []


def test_file_changed_after_registration_is_caught_on_load(
    classifier: LogisticRegression, package: Path, tamper: Callable[[Path], None]
) -> None:
    spec = sklearn.save(classifier, package)
    tamper(package / spec.file)
    with pytest.raises(CorruptArtifact, match="changed after registration"):
        sklearn.load(package, spec)


@pytest.fixture(params=["pickle", "joblib"])
def pickled(
    request: pytest.FixtureRequest, classifier: LogisticRegression, tmp_path: Path
) -> tuple[Path, str]:
    """A pickle or joblib file of the classifier and its SHA-256."""
    if request.param == "joblib":
        path = tmp_path / "model.joblib"
        joblib.dump(classifier, path)
    else:
        path = tmp_path / "model.pkl"
        path.write_bytes(pickle.dumps(classifier))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_pickle_is_refused_without_consent(pickled: tuple[Path, str], package: Path) -> None:
    path, digest = pickled
    with pytest.raises(UnsafeFormat, match="arbitrary code.*--trust-pickle --sha256"):
        sklearn.import_file(path, package, Consent())
    with pytest.raises(UnsafeFormat, match="also needs --sha256"):
        sklearn.import_file(path, package, Consent(trust_pickle=True))
    with pytest.raises(UnsafeFormat, match="arbitrary code"):
        sklearn.import_file(path, package, Consent(sha256=digest))  # a hash alone is no consent
    assert list(package.iterdir()) == []


def test_pickle_with_a_different_hash_is_refused_naming_both(
    pickled: tuple[Path, str], package: Path
) -> None:
    path, digest = pickled
    wrong = "0" * 64
    with pytest.raises(UnsafeFormat) as caught:
        sklearn.import_file(path, package, Consent(trust_pickle=True, sha256=wrong))
    assert digest in str(caught.value)
    assert wrong in str(caught.value)
    assert list(package.iterdir()) == []


def test_pickle_with_the_right_hash_round_trips(
    pickled: tuple[Path, str],
    classifier: LogisticRegression,
    cancer: tuple[pd.DataFrame, pd.Series],
    package: Path,
) -> None:
    frame, _ = cancer
    path, digest = pickled
    spec = sklearn.import_file(path, package, Consent(trust_pickle=True, sha256=digest.upper()))
    assert spec.name == "sklearn"
    assert spec.serialization == path.suffix.removeprefix(".").replace("pkl", "pickle")
    assert spec.sha256 == digest

    outputs = sklearn.load(package, spec).predict(frame)
    np.testing.assert_array_equal(outputs["predict"], classifier.predict(frame))
    np.testing.assert_allclose(outputs["predict_proba"], classifier.predict_proba(frame), atol=0)


def test_pickle_spec_without_recorded_consent_is_not_unpickled(
    pickled: tuple[Path, str], package: Path
) -> None:
    path, digest = pickled
    spec = sklearn.import_file(path, package, Consent(trust_pickle=True, sha256=digest))
    stripped = spec.model_copy(update={"options": {}})
    with pytest.raises(UnsafeFormat, match="--trust-pickle"):
        sklearn.load(package, stripped)


def test_unknown_suffix_is_refused(tmp_path: Path, package: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(b"\x00")
    with pytest.raises(UnknownFormat, match="expected .skops"):
        sklearn.import_file(source, package, Consent())
