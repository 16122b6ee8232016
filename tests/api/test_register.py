"""Registering from Python and loading back: package contents, provenance, bad input."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

import modelyard
from modelyard.errors import (
    CorruptArtifact,
    InvalidInput,
    ModelNotFound,
    ReferenceMismatch,
    SignatureMismatch,
)
from modelyard.registry import PackageManifest
from modelyard.settings import Settings

Data = tuple[pd.DataFrame, pd.Series]


def test_a_registered_classifier_loads_back_and_predicts_identically(
    settings: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    X, y = cancer
    v = modelyard.register(cancer_model, "cancer", reference=X, labels=y, settings=settings)
    assert v.ref == "cancer:1"
    loaded = modelyard.load("cancer", settings=settings)
    np.testing.assert_array_equal(loaded.predict(X), cancer_model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), cancer_model.predict_proba(X))
    assert loaded.classes == [0, 1]
    assert loaded.task.value == "classification"


def test_the_package_describes_the_model(
    sqlite_settings: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    X, y = cancer
    modelyard.register(
        cancer_model, "cancer", reference=X, labels=y.rename("malignant"),
        description="screening", tags={"team": "onc"}, params={"owner": "ana"},
        metrics={"holdout_auc": 0.99}, settings=sqlite_settings,
    )
    p = modelyard.load("cancer:1", settings=sqlite_settings)
    m = PackageManifest.read(p.directory)
    assert m.flavor.name == "sklearn"
    assert m.flavor.serialization == "skops"
    assert m.signature.input_names == list(X.columns)
    assert {s.datatype for s in m.signature.inputs} == {"FP64"}
    assert [(o.name, o.shape) for o in m.signature.outputs] == [
        ("predict", [-1]), ("predict_proba", [-1, 2])
    ]
    assert m.classes == [0, 1]
    assert m.input_example is not None
    assert len(m.input_example) == 5
    assert set(m.input_example[0]) == set(X.columns)
    assert {"python", "scikit-learn", "skops", "numpy"} <= set(m.requirements)
    assert m.provenance.parameters["owner"] == "ana"
    assert m.provenance.metrics["holdout_auc"] == 0.99
    assert 0.9 < m.provenance.metrics["accuracy"] <= 1.0
    assert {"f1_macro", "roc_auc", "log_loss"} <= set(m.provenance.metrics)
    assert m.reference is not None
    assert m.reference.labels_column == "malignant"
    stored = p.reference()
    pd.testing.assert_frame_equal(stored.drop(columns="malignant"), X, check_dtype=True)
    np.testing.assert_array_equal(stored["malignant"], y)
    digest = hashlib.sha256((p.directory / "reference.parquet").read_bytes()).hexdigest()
    assert m.provenance.data_sha256 == digest == m.reference.sha256
    assert p.info.tags == {"team": "onc"}


def test_provenance_records_the_callers_git_commit(
    sqlite_settings: Settings, cancer: Data, cancer_model: Pipeline, tmp_path: Path
) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@x", *args],
            cwd=tmp_path, check=True, capture_output=True, text=True,
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "train.py").write_text("print('train')\n")
    git("add", "train.py")
    git("commit", "-qm", "train")
    X, y = cancer
    modelyard.register(cancer_model, "cancer", reference=X, labels=y, settings=sqlite_settings)
    (tmp_path / "train.py").write_text("print('changed')\n")
    modelyard.register(cancer_model, "cancer", reference=X, labels=y, settings=sqlite_settings)
    first = modelyard.load("cancer:1", settings=sqlite_settings).manifest.provenance
    second = modelyard.load("cancer:2", settings=sqlite_settings).manifest.provenance
    assert first.code_version == git("rev-parse", "HEAD")
    assert (first.code_dirty, second.code_dirty) == (False, True)


def test_registering_from_files_records_the_data_file(
    sqlite_settings: Settings, cancer: Data, cancer_model: Pipeline, tmp_path: Path
) -> None:
    import skops.io

    X, y = cancer
    model_file = tmp_path / "model.skops"
    skops.io.dump(cancer_model, model_file)
    data_file = tmp_path / "train.parquet"
    X.assign(y=y).to_parquet(data_file)
    v = modelyard.register(
        model_file, "cancer", reference=data_file, labels_column="y", alias="champion",
        settings=sqlite_settings,
    )
    assert v.aliases == ["champion"]
    prov = modelyard.load("cancer@champion", settings=sqlite_settings).manifest.provenance
    assert prov.data_uri == data_file.resolve().as_uri()
    assert prov.data_sha256 == hashlib.sha256(data_file.read_bytes()).hexdigest()


def test_a_regressor_gets_regression_metrics(sqlite_settings: Settings) -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = Ridge().fit(X, y)
    modelyard.register(model, "diabetes", reference=X, labels=y, settings=sqlite_settings)
    p = modelyard.load("diabetes", settings=sqlite_settings)
    assert p.task.value == "regression"
    assert set(p.manifest.provenance.metrics) == {"mae", "rmse", "r2"}
    np.testing.assert_allclose(p.predict(X), model.predict(X))


def test_a_parent_is_checked_and_recorded(
    sqlite_settings: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    X, _ = cancer
    modelyard.register(cancer_model, "cancer", reference=X, settings=sqlite_settings)
    modelyard.register(
        cancer_model, "cancer", reference=X, parent="cancer:1", settings=sqlite_settings
    )
    assert modelyard.load("cancer:2", settings=sqlite_settings).manifest.provenance.parent == (
        "cancer:1"
    )
    with pytest.raises(ModelNotFound):
        modelyard.register(
            cancer_model, "cancer", reference=X, parent="ghost:1", settings=sqlite_settings
        )


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda X, y: {"reference": X.assign(y=y)}, ReferenceMismatch,
         "does not take: y .if one is the label, pass --labels-column"),
        (lambda X, y: {"reference": X.drop(columns="mean radius")}, ReferenceMismatch,
         "lacks column.* the model was trained on: mean radius"),
        (lambda X, y: {"reference": X, "labels": y[:10]}, ReferenceMismatch,
         "10 labels were given for 569 reference rows"),
        (lambda X, y: {"reference": X, "labels_column": "target"}, ReferenceMismatch,
         "labels column 'target' is not in the reference"),
        (lambda X, y: {"reference": X.head(0)}, InvalidInput, "no rows"),
        (lambda X, y: {"reference": None}, InvalidInput,
         "cannot infer the model's signature: pass reference data"),
        (lambda X, y: {"reference": X, "task": "clustering"}, InvalidInput,
         "task 'clustering' is unknown"),
        (lambda X, y: {"reference": "missing.parquet"}, InvalidInput,
         "data file not found: missing.parquet"),
    ],
)
def test_reference_data_that_does_not_fit_is_refused(
    sqlite_settings: Settings, cancer: Data, cancer_model: Pipeline,
    change: object, error: type[Exception], message: str,
) -> None:
    X, y = cancer
    with pytest.raises(error, match=message):
        modelyard.register(cancer_model, "cancer", settings=sqlite_settings,
                           **change(X, y))  # type: ignore[operator]
    assert modelyard.open_registry(sqlite_settings).list_models() == []


def test_a_model_that_fails_on_its_reference_is_refused(sqlite_settings: Settings) -> None:
    X = np.random.default_rng(0).normal(size=(50, 3))
    model = Ridge().fit(X, X[:, 0])
    text = pd.DataFrame({"f0": ["a"] * 50, "f1": 1.0, "f2": 2.0})
    with pytest.raises(ReferenceMismatch, match="failed on the reference data"):
        modelyard.register(model, "r", reference=text, settings=sqlite_settings)


def test_loading_checks_inputs_against_the_signature(
    sqlite_settings: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    X, _ = cancer
    modelyard.register(cancer_model, "cancer", reference=X, settings=sqlite_settings)
    p = modelyard.load("cancer", settings=sqlite_settings)
    with pytest.raises(SignatureMismatch, match="missing column.*'worst fractal dimension'"):
        p.predict(X.drop(columns="worst fractal dimension"))
    with pytest.raises(SignatureMismatch, match="'mean radius' should be FP64 but holds 'big'"):
        p.predict(X.head(2).astype({"mean radius": object}).assign(**{"mean radius": "big"}))
    shuffled = X[list(reversed(X.columns))]
    np.testing.assert_array_equal(p.predict(shuffled), cancer_model.predict(X))
    np.testing.assert_array_equal(p.predict(X.to_numpy()), cancer_model.predict(X))


def test_a_package_changed_after_registration_is_refused(
    sqlite_settings: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    X, _ = cancer
    modelyard.register(cancer_model, "cancer", reference=X, settings=sqlite_settings)
    folder = modelyard.load("cancer", settings=sqlite_settings).directory
    model_file = next((folder / "model").iterdir())
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    with pytest.raises(CorruptArtifact, match="changed after registration"):
        modelyard.load("cancer", settings=sqlite_settings)
    manifest = folder / "modelyard.yaml"
    manifest.write_text(manifest.read_text().replace("classification", "regression"))
    with pytest.raises(CorruptArtifact, match="changed afterwards"):
        modelyard.load("cancer", settings=sqlite_settings)


def test_a_remote_artifact_store_is_read_through_the_local_cache(
    tmp_path: Path, cancer: Data, cancer_model: Pipeline
) -> None:
    import fsspec

    settings = Settings(
        home=tmp_path / "home", artifacts_uri=f"memory://modelyard-{tmp_path.name}", actor="t"
    )
    X, _ = cancer
    v = modelyard.register(cancer_model, "cancer", reference=X, settings=settings)
    assert v.artifact_uri.startswith("memory://")
    fs = fsspec.filesystem("memory")
    assert fs.exists(v.artifact_uri + "/modelyard.yaml")
    loaded = modelyard.load("cancer", settings=settings)
    assert loaded.directory.is_relative_to(tmp_path / "home" / "cache")
    np.testing.assert_array_equal(loaded.predict(X), cancer_model.predict(X))


def test_the_reference_profile_is_stored_with_the_version(
    sqlite_settings: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    X, y = cancer
    modelyard.register(cancer_model, "cancer", reference=X, labels=y, settings=sqlite_settings)
    loaded = modelyard.load("cancer", settings=sqlite_settings)
    assert loaded.manifest.reference is not None
    assert loaded.manifest.reference.profile == "reference.profile"
    profile = loaded.reference_profile()
    assert profile.rows == len(X)
    assert list(profile.schema) == [*X.columns, loaded.manifest.reference.labels_column]
    radius = profile.result()["mean radius"]
    assert radius.max == X["mean radius"].max()
    assert radius.mean == pytest.approx(X["mean radius"].mean())
