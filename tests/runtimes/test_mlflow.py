"""MLflow flavor: directories written by MLflow itself, read without importing MLflow."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from modelyard.errors import CorruptArtifact, UnknownFormat, UnsafeFormat
from modelyard.runtimes import mlflow as mlflow_flavor
from modelyard.runtimes import onnx as onnx_flavor
from modelyard.runtimes import requirements, sklearn
from modelyard.runtimes.base import Consent

# Importing mlflow.pyfunc warns about its own type hints ("Any type hint is inferred as
# AnyType"); nothing in these tests can avoid it, so exactly that warning is allowed here.
pytestmark = pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType")

TREE = "sklearn.tree._tree.Tree"
LEAN = {"pip_requirements": ["scikit-learn"]}  # skips MLflow's slow requirement inference


@pytest.fixture(scope="module")
def model(cancer: tuple[pd.DataFrame, pd.Series]) -> LogisticRegression:
    frame, target = cancer
    return LogisticRegression(max_iter=5000).fit(frame, target)


@pytest.fixture(scope="module")
def saved(
    model: LogisticRegression, cancer: tuple[pd.DataFrame, pd.Series], tmp_path_factory: Any
) -> dict[str, Path]:
    """MLflow directories of the same model in each serialization MLflow offers."""
    import mlflow.onnx
    import mlflow.sklearn
    from mlflow.models import infer_signature

    frame, target = cancer
    root: Path = tmp_path_factory.mktemp("mlflow")
    signature = infer_signature(frame, model.predict(frame))
    mlflow.sklearn.save_model(
        model, root / "skops", serialization_format="skops", signature=signature, **LEAN
    )
    mlflow.sklearn.save_model(
        model, root / "cloudpickle", serialization_format="cloudpickle", **LEAN
    )
    graph = to_onnx(model, frame.to_numpy(np.float32)[:1])
    mlflow.onnx.save_model(graph, root / "onnx", pip_requirements=["onnx"])
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(frame, target)
    mlflow.sklearn.save_model(
        forest,
        root / "forest",
        serialization_format="skops",
        skops_trusted_types=[TREE],
        **LEAN,
    )
    return {path.name: path for path in root.iterdir()}


def test_skops_directory_round_trip_keeps_the_signature(
    saved: dict[str, Path],
    model: LogisticRegression,
    cancer: tuple[pd.DataFrame, pd.Series],
    package: Path,
) -> None:
    frame, _ = cancer
    spec = mlflow_flavor.import_file(saved["skops"], package, Consent())

    assert (spec.name, spec.serialization, spec.file) == ("sklearn", "skops", "model.skops")
    assert spec.options["source"] == "mlflow"
    inputs = spec.options["mlflow_signature"]["inputs"]
    assert [column["name"] for column in inputs] == list(frame.columns)
    assert spec.options["mlflow_signature"]["outputs"][0]["type"] == "tensor"
    outputs = sklearn.load(package, spec).predict(frame)
    np.testing.assert_array_equal(outputs["predict"], model.predict(frame))
    np.testing.assert_allclose(outputs["predict_proba"], model.predict_proba(frame), atol=1e-12)


def test_types_the_mlmodel_declares_trusted_still_need_the_users_trust(
    saved: dict[str, Path], cancer: tuple[pd.DataFrame, pd.Series], package: Path
) -> None:
    frame, _ = cancer
    with pytest.raises(
        UnsafeFormat, match=f"MLmodel file lists them as trusted.*--trust-type {TREE}"
    ):
        mlflow_flavor.import_file(saved["forest"], package, Consent())
    assert list(package.iterdir()) == []

    spec = mlflow_flavor.import_file(saved["forest"], package, Consent(trusted_types=(TREE,)))
    assert sklearn.load(package, spec).predict(frame)["predict"].shape == (len(frame),)


def test_cloudpickle_directory_needs_consent_for_its_pickle(
    saved: dict[str, Path],
    model: LogisticRegression,
    cancer: tuple[pd.DataFrame, pd.Series],
    package: Path,
) -> None:
    frame, _ = cancer
    pickled = saved["cloudpickle"] / "model.pkl"
    digest = hashlib.sha256(pickled.read_bytes()).hexdigest()

    with pytest.raises(UnsafeFormat, match="model.pkl is a pickle"):
        mlflow_flavor.import_file(saved["cloudpickle"], package, Consent())
    spec = mlflow_flavor.import_file(
        saved["cloudpickle"], package, Consent(trust_pickle=True, sha256=digest)
    )

    assert (spec.name, spec.serialization, spec.sha256) == ("sklearn", "pickle", digest)
    assert spec.options["mlflow_serialization"] == "cloudpickle"
    assert "mlflow_signature" not in spec.options
    assert "cloudpickle" in requirements(spec)
    outputs = sklearn.load(package, spec).predict(frame)
    np.testing.assert_array_equal(outputs["predict"], model.predict(frame))


def test_onnx_directory(
    saved: dict[str, Path],
    model: LogisticRegression,
    cancer: tuple[pd.DataFrame, pd.Series],
    package: Path,
) -> None:
    frame, _ = cancer
    spec = mlflow_flavor.import_file(saved["onnx"], package, Consent())

    assert (spec.name, spec.file, spec.options["source"]) == ("onnx", "model.onnx", "mlflow")
    outputs = onnx_flavor.load(package, spec).predict(frame)
    np.testing.assert_array_equal(outputs["output_label"], model.predict(frame))
    np.testing.assert_allclose(
        outputs["output_probability"], model.predict_proba(frame), rtol=1e-5, atol=1e-6
    )


def test_onnx_is_chosen_over_a_pickle(
    saved: dict[str, Path], tmp_path: Path, package: Path
) -> None:
    both = tmp_path / "both"
    both.mkdir()
    for source in (saved["cloudpickle"] / "model.pkl", saved["onnx"] / "model.onnx"):
        (both / source.name).write_bytes(source.read_bytes())
    flavors = {
        "sklearn": {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"},
        "onnx": {"data": "model.onnx"},
    }
    (both / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors}))

    spec = mlflow_flavor.import_file(both, package, Consent())

    assert spec.name == "onnx"


def test_unsupported_flavors_are_listed(
    saved: dict[str, Path], tmp_path: Path, package: Path
) -> None:
    torch_dir = tmp_path / "torch"
    torch_dir.mkdir()
    flavors = {
        "python_function": {"loader_module": "mlflow.pytorch"},
        "pytorch": {"model_data": "data"},
    }
    (torch_dir / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors}))

    with pytest.raises(UnknownFormat, match="flavors python_function, pytorch; .*sklearn and onnx"):
        mlflow_flavor.import_file(torch_dir, package, Consent())


def test_a_flavor_file_outside_the_directory_is_refused(
    saved: dict[str, Path], tmp_path: Path, package: Path
) -> None:
    escape = tmp_path / "escape"
    escape.mkdir()
    (tmp_path / "model.onnx").write_bytes((saved["onnx"] / "model.onnx").read_bytes())
    (escape / "MLmodel").write_text(
        yaml.safe_dump({"flavors": {"onnx": {"data": "../model.onnx"}}})
    )

    with pytest.raises(CorruptArtifact, match="outside the model directory"):
        mlflow_flavor.import_file(escape, package, Consent())
