"""The package's public API: format detection, import by path or object, load, requirements."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import onnx
import pandas as pd
import pytest
import xgboost as xgb
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from modelyard.errors import InvalidInput, UnknownFormat
from modelyard.runtimes import (
    Consent,
    detect_format,
    import_model,
    load_runtime,
    requirements,
    sklearn,
)
from modelyard.types import FlavorSpec


@pytest.fixture(scope="module")
def model(cancer: tuple[pd.DataFrame, pd.Series]) -> LogisticRegression:
    frame, target = cancer
    return LogisticRegression(max_iter=5000).fit(frame.to_numpy(), target)


@pytest.fixture(scope="module")
def files(model: LogisticRegression, tmp_path_factory: Any) -> dict[str, Path]:
    """One file (or directory) per format, by the name ``detect_format`` should give."""
    root: Path = tmp_path_factory.mktemp("formats")
    (root / "pkg").mkdir()
    sklearn.save(model, root / "pkg")
    data = np.random.default_rng(0).normal(size=(40, 3))
    target = data[:, 0] > 0
    booster = xgb.train({"nthread": 1}, xgb.DMatrix(data, label=target), num_boost_round=2)
    booster.save_model(root / "model.json")
    booster.save_model(root / "model.ubj")
    lgb_params = {"verbose": -1, "num_threads": 1, "min_data_in_leaf": 5}
    lgb.train(lgb_params, lgb.Dataset(data, label=target), 2).save_model(root / "model.txt")
    onnx.save_model(to_onnx(model, np.zeros((1, 30), np.float32)), str(root / "model.onnx"))
    (root / "model.pkl").write_bytes(pickle.dumps(model))
    joblib.dump(model, root / "model.joblib")
    (root / "mlflow").mkdir()
    (root / "mlflow" / "MLmodel").write_text("flavors: {}\n")
    return {
        "skops": root / "pkg" / "model.skops",
        "pickle": root / "model.pkl",
        "joblib": root / "model.joblib",
        "onnx": root / "model.onnx",
        "mlflow": root / "mlflow",
        "xgboost": root / "model.json",
        "xgboost-ubj": root / "model.ubj",
        "lightgbm": root / "model.txt",
    }


@pytest.mark.parametrize(
    "name", ["skops", "pickle", "joblib", "onnx", "mlflow", "xgboost", "xgboost-ubj", "lightgbm"]
)
def test_detect_format(name: str, files: dict[str, Path]) -> None:
    assert detect_format(files[name]) == name.removesuffix("-ubj")


def test_xgboost_json_is_recognised_whatever_its_key_order(
    files: dict[str, Path], tmp_path: Path
) -> None:
    reordered = tmp_path / "booster.json"
    data = json.loads(files["xgboost"].read_text())
    reordered.write_text(json.dumps({"version": data["version"], "learner": data["learner"]}))
    assert detect_format(reordered) == "xgboost"


def test_lightgbm_text_is_recognised_by_content(files: dict[str, Path], tmp_path: Path) -> None:
    renamed = tmp_path / "model.lgb"
    renamed.write_bytes(files["lightgbm"].read_bytes())
    assert detect_format(renamed) == "lightgbm"


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="model file not found: .*nothing.onnx"):
        detect_format(tmp_path / "nothing.onnx")


@pytest.mark.parametrize(
    ("name", "content"), [("data.csv", "a,b\n1,2\n"), ("config.json", '{"name": "x"}')]
)
def test_unknown_file_lists_the_supported_formats(name: str, content: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(
        UnknownFormat, match=f"{name}.*\\.skops, \\.onnx, an MLflow model directory"
    ):
        detect_format(path)


def test_directory_without_mlmodel(tmp_path: Path) -> None:
    with pytest.raises(UnknownFormat, match="directory without an MLmodel file"):
        detect_format(tmp_path)


@pytest.mark.parametrize("name", ["skops", "onnx", "xgboost", "lightgbm"])
def test_import_by_path_then_load(name: str, files: dict[str, Path], tmp_path: Path) -> None:
    spec = import_model(str(files[name]), tmp_path)
    runtime = load_runtime(tmp_path, spec)
    width = 30 if name in ("skops", "onnx") else 3
    outputs = runtime.predict(np.zeros((2, width)))
    assert runtime.flavor == spec.name
    assert all(len(values) == 2 for values in outputs.values())


def test_import_pickle_by_path_passes_consent(files: dict[str, Path], tmp_path: Path) -> None:
    digest = hashlib.sha256(files["joblib"].read_bytes()).hexdigest()
    spec = import_model(files["joblib"], tmp_path, Consent(trust_pickle=True, sha256=digest))
    assert (spec.name, spec.serialization) == ("sklearn", "joblib")


def _objects(data: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    estimator = LogisticRegression().fit(data, target)
    return {
        "sklearn": estimator,
        "xgboost": xgb.XGBRegressor(n_estimators=2, n_jobs=1).fit(data, target),
        "lightgbm": lgb.LGBMRegressor(n_estimators=2, verbose=-1, min_child_samples=5).fit(
            data, target
        ),
        "onnx": to_onnx(estimator, data[:1].astype(np.float32)),
    }


@pytest.mark.parametrize("flavor", ["sklearn", "xgboost", "lightgbm", "onnx"])
def test_import_in_memory_objects_by_type(flavor: str, tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(size=(40, 3))
    target = (data[:, 0] > 0).astype(int)
    spec = import_model(_objects(data, target)[flavor], tmp_path)
    assert spec.name == flavor
    assert load_runtime(tmp_path, spec).n_features == 3


def test_import_an_object_of_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(UnknownFormat, match="builtins.dict"):
        import_model({"weights": [1, 2]}, tmp_path)


def test_load_unknown_flavor(tmp_path: Path) -> None:
    spec = FlavorSpec(name="torch", serialization="torchscript", file="m.pt", sha256="0" * 64)
    with pytest.raises(UnknownFormat, match="'torch'.*sklearn, onnx, xgboost, lightgbm"):
        load_runtime(tmp_path, spec)


def test_requirements_name_installed_versions(model: LogisticRegression, tmp_path: Path) -> None:
    skops_spec = sklearn.save(model, tmp_path)
    onnx_spec = FlavorSpec(name="onnx", serialization="onnx", file="model.onnx", sha256="0")

    assert requirements(skops_spec) == {
        name: metadata.version(name) for name in ("scikit-learn", "numpy", "skops")
    }
    assert set(requirements(onnx_spec)) == {"onnx", "onnxruntime", "numpy"}


def test_missing_optional_library_names_the_extra(tmp_path: Path) -> None:
    # A child interpreter where importing xgboost fails, as it does when it is not installed.
    (tmp_path / "model.json").write_text("{}")
    spec = FlavorSpec(
        name="xgboost",
        serialization="xgboost-json",
        file="model.json",
        sha256=hashlib.sha256(b"{}").hexdigest(),
    )
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["xgboost"] = None
        from pathlib import Path
        from modelyard.errors import MissingExtra
        from modelyard.runtimes import load_runtime
        from modelyard.types import FlavorSpec
        spec = FlavorSpec.model_validate_json({spec.model_dump_json()!r})
        try:
            load_runtime(Path({str(tmp_path)!r}), spec)
        except MissingExtra as exc:
            print(exc)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == (
        "loading an XGBoost model needs the 'xgboost' package: pip install 'modelyard[xgboost]'"
    )
