"""Every supported format, registered and loaded back, predicts exactly what the original does
on the reference data."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnxruntime as ort
import pytest
import skops.io
from skl2onnx import to_onnx
from sklearn.datasets import load_wine
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelyard
from modelyard.errors import InvalidInput, UnsafeFormat
from modelyard.settings import Settings

X, y = load_wine(return_X_y=True, as_frame=True)
Outputs = dict[str, np.ndarray]
# Each case: write the model somewhere, return (what to register, extra register() arguments,
# the outputs the original model gives on X).
Case = Callable[[Path], tuple[Any, dict[str, Any], Outputs]]


def _logreg() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X, y)


def _sk(model: Any) -> Outputs:
    return {"predict": model.predict(X), "predict_proba": model.predict_proba(X)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sklearn_object(tmp: Path) -> tuple[Any, dict[str, Any], Outputs]:
    model = _logreg()
    return model, {}, _sk(model)


def skops_file(tmp: Path) -> tuple[Any, dict[str, Any], Outputs]:
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X, y)
    path = tmp / "hgb.skops"
    skops.io.dump(model, path)
    return path, {"trusted_types": skops.io.get_untrusted_types(file=path)}, _sk(model)


def onnx_file(tmp: Path) -> tuple[Any, dict[str, Any], Outputs]:
    graph = to_onnx(_logreg(), X.to_numpy(np.float32)[:1], options={"zipmap": False})
    path = tmp / "wine.onnx"
    path.write_bytes(graph.SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(None, {session.get_inputs()[0].name: X.to_numpy(np.float32)})
    return path, {}, dict(zip(names, values, strict=True))


def joblib_file(tmp: Path) -> tuple[Any, dict[str, Any], Outputs]:
    model = _logreg()
    path = tmp / "model.joblib"
    joblib.dump(model, path)
    return path, {"trust_pickle": True, "sha256": _sha(path)}, _sk(model)


def mlflow_skops(tmp: Path) -> tuple[Any, dict[str, Any], Outputs]:
    import mlflow.sklearn

    model = _logreg()
    mlflow.sklearn.save_model(model, tmp / "mlflow", serialization_format="skops",
                              pip_requirements=["scikit-learn"])
    return tmp / "mlflow", {}, _sk(model)


def mlflow_cloudpickle(tmp: Path) -> tuple[Any, dict[str, Any], Outputs]:
    import mlflow.sklearn

    model = _logreg()
    mlflow.sklearn.save_model(model, tmp / "mlflow", serialization_format="cloudpickle",
                              pip_requirements=["scikit-learn"])
    return tmp / "mlflow", {"trust_pickle": True, "sha256": _sha(tmp / "mlflow" / "model.pkl")}, \
        _sk(model)


def mlflow_onnx(tmp: Path) -> tuple[Any, dict[str, Any], Outputs]:
    import mlflow.onnx

    path, _, expected = onnx_file(tmp)
    import onnx

    mlflow.onnx.save_model(onnx.load(str(path)), tmp / "mlflow", pip_requirements=["onnx"])
    return tmp / "mlflow", {}, expected


def xgboost_object(tmp: Path) -> tuple[Any, dict[str, Any], Outputs]:
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y)
    return model, {}, _sk(model)


def xgboost_file(tmp: Path) -> tuple[Any, dict[str, Any], Outputs]:
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y)
    model.save_model(tmp / "model.json")
    return tmp / "model.json", {}, _sk(model)


def lightgbm_object(tmp: Path) -> tuple[Any, dict[str, Any], Outputs]:
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y)
    return model, {}, _sk(model)


def lightgbm_file(tmp: Path) -> tuple[Any, dict[str, Any], Outputs]:
    import lightgbm

    model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y)
    model.booster_.save_model(tmp / "model.txt")
    return tmp / "model.txt", {}, {"predict": model.booster_.predict(X)}


CASES = [
    sklearn_object, skops_file, onnx_file, joblib_file, mlflow_skops, mlflow_cloudpickle,
    mlflow_onnx, xgboost_object, xgboost_file, lightgbm_object, lightgbm_file,
]


# mlflow's own import emits this once; it is not ours to fix.
@pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType")
@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_round_trip_gives_identical_predictions(
    case: Case, sqlite_settings: Settings, tmp_path: Path
) -> None:
    source, extra, expected = case(tmp_path)
    version = modelyard.register(
        source, "wine", reference=X, labels=y, settings=sqlite_settings, **extra
    )
    loaded = modelyard.load(version.ref, settings=sqlite_settings)
    got = loaded.run(X)
    assert set(expected) <= set(got), (sorted(expected), sorted(got))
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert [s.name for s in loaded.signature.outputs] == list(got)
    assert loaded.reference().shape == (len(X), X.shape[1] + 1)


def test_pickles_need_consent_and_the_right_hash(sqlite_settings: Settings, tmp_path: Path) -> None:
    source, extra, _ = joblib_file(tmp_path)
    with pytest.raises(UnsafeFormat, match="--trust-pickle"):
        modelyard.register(source, "wine", reference=X, settings=sqlite_settings)
    with pytest.raises(UnsafeFormat, match=extra["sha256"][:12]):
        modelyard.register(source, "wine", reference=X, trust_pickle=True, sha256="ab" * 32,
                           settings=sqlite_settings)
    assert modelyard.open_registry(sqlite_settings).list_models() == []


def test_untrusted_skops_types_are_named_and_refused(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    source, _, _ = skops_file(tmp_path)
    with pytest.raises(UnsafeFormat, match="TreePredictor.*--trust-type"):
        modelyard.register(source, "wine", reference=X, settings=sqlite_settings)


def test_an_onnx_graph_registers_without_reference_data(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    source, _, expected = onnx_file(tmp_path)
    loaded = modelyard.load(
        modelyard.register(source, "wine-onnx", settings=sqlite_settings).ref,
        settings=sqlite_settings,
    )
    assert not loaded.signature.columnar
    assert loaded.signature.inputs[0].shape == [-1, 13]
    got = loaded.run(X.to_numpy(np.float32))
    np.testing.assert_array_equal(got["label"], expected["label"])
    with pytest.raises(InvalidInput, match="registered without reference data"):
        loaded.reference()
