"""ONNX flavor: skl2onnx graphs run by onnxruntime, ZipMap outputs, corrupt files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelyard.errors import CorruptArtifact, SignatureMismatch
from modelyard.runtimes import onnx as onnx_flavor
from modelyard.runtimes.base import Consent
from modelyard.types import Signature, TensorSpec

FLOAT32 = {"rtol": 1e-5, "atol": 1e-6}  # onnxruntime computes in float32


@pytest.fixture(scope="module")
def wine_model(wine: tuple[pd.DataFrame, pd.Series]) -> LogisticRegression:
    frame, target = wine  # fitted on an array: the ONNX graph takes one unnamed tensor
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(frame.to_numpy(), target)


def _write(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save_model(model, str(path))
    return path


def test_classifier_with_zipmap_round_trip(
    wine_model: LogisticRegression,
    wine: tuple[pd.DataFrame, pd.Series],
    tmp_path: Path,
    package: Path,
) -> None:
    frame, _ = wine
    rows = frame.to_numpy(dtype=np.float32)
    source = _write(to_onnx(wine_model, rows[:1]), tmp_path / "wine.onnx")

    spec = onnx_flavor.import_file(source, package, Consent())
    runtime = onnx_flavor.load(package, spec)
    outputs = runtime.predict(frame)  # float64 frame, cast to the graph's float32

    assert (spec.name, spec.serialization, spec.file) == ("onnx", "onnx", "model.onnx")
    assert spec.options["classes"] == [0, 1, 2]
    assert runtime.classes == [0, 1, 2]
    assert runtime.n_features == 13
    np.testing.assert_array_equal(outputs["output_label"], wine_model.predict(rows))
    assert outputs["output_probability"].dtype == np.float32
    np.testing.assert_allclose(
        outputs["output_probability"], wine_model.predict_proba(rows), **FLOAT32
    )
    assert runtime.native_signature() == Signature(
        inputs=[TensorSpec(name="X", datatype="FP32", shape=[-1, 13])],
        outputs=[
            TensorSpec(name="output_label", datatype="INT64", shape=[-1]),
            TensorSpec(name="output_probability", datatype="FP32", shape=[-1, 3]),
        ],
        columnar=False,
    )


def test_string_classes_keep_their_column_order(
    wine: tuple[pd.DataFrame, pd.Series], package: Path
) -> None:
    frame, target = wine
    rows = frame.to_numpy(dtype=np.float32)
    labels = np.array(["nebbiolo", "grignolino", "barbera"])[target]
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(rows, labels)

    runtime = onnx_flavor.load(package, onnx_flavor.save(to_onnx(forest, rows[:1]), package))
    outputs = runtime.predict(rows)

    assert runtime.classes == ["barbera", "grignolino", "nebbiolo"]
    np.testing.assert_array_equal(outputs["output_label"], forest.predict(rows))
    np.testing.assert_allclose(outputs["output_probability"], forest.predict_proba(rows), **FLOAT32)


def test_classes_without_zipmap_come_from_the_classifier_node(
    wine_model: LogisticRegression, wine: tuple[pd.DataFrame, pd.Series], package: Path
) -> None:
    frame, _ = wine
    rows = frame.to_numpy(dtype=np.float32)
    graph = to_onnx(wine_model, rows[:1], options={"zipmap": False})

    runtime = onnx_flavor.load(package, onnx_flavor.save(graph, package))
    outputs = runtime.predict(rows)

    assert runtime.classes == [0, 1, 2]
    assert set(outputs) == {"label", "probabilities"}
    np.testing.assert_allclose(outputs["probabilities"], wine_model.predict_proba(rows), **FLOAT32)


def test_double_regressor(diabetes: tuple[np.ndarray, np.ndarray], package: Path) -> None:
    data, target = diabetes
    model = Ridge().fit(data, target)
    runtime = onnx_flavor.load(package, onnx_flavor.save(to_onnx(model, data[:1]), package))

    outputs = runtime.predict(pd.DataFrame(data))

    assert runtime.classes is None
    assert runtime.task is None
    [output] = runtime.native_signature().outputs
    assert output.datatype == "FP64"
    np.testing.assert_allclose(outputs[output.name].ravel(), model.predict(data), rtol=1e-12)


def test_one_input_per_column_with_a_string_column(
    mixed: tuple[pd.DataFrame, np.ndarray], package: Path
) -> None:
    frame, label = mixed
    encode = ColumnTransformer([("plan", OneHotEncoder(), ["plan"])], remainder=StandardScaler())
    model = make_pipeline(encode, LogisticRegression()).fit(frame, label)
    graph = to_onnx(
        model,
        initial_types=[
            ("age", FloatTensorType([None, 1])),
            ("income", FloatTensorType([None, 1])),
            ("plan", StringTensorType([None, 1])),
        ],
    )
    runtime = onnx_flavor.load(package, onnx_flavor.save(graph, package))

    by_frame = runtime.predict(frame)
    by_name = runtime.predict({name: frame[name].to_numpy() for name in frame.columns})

    assert [spec.datatype for spec in runtime.native_signature().inputs] == [
        "FP32",
        "FP32",
        "BYTES",
    ]
    assert runtime.n_features is None
    for outputs in (by_frame, by_name):
        np.testing.assert_array_equal(outputs["output_label"], model.predict(frame))
        np.testing.assert_allclose(
            outputs["output_probability"], model.predict_proba(frame), **FLOAT32
        )
    with pytest.raises(SignatureMismatch, match="lacks plan"):
        runtime.predict({"age": frame["age"].to_numpy(), "income": frame["income"].to_numpy()})
    with pytest.raises(SignatureMismatch, match="3 inputs"):
        runtime.predict(frame[["age", "income"]].to_numpy())


def test_wrong_width_is_a_signature_mismatch(
    wine_model: LogisticRegression, wine: tuple[pd.DataFrame, pd.Series], package: Path
) -> None:
    frame, _ = wine
    rows = frame.to_numpy(dtype=np.float32)
    runtime = onnx_flavor.load(package, onnx_flavor.save(to_onnx(wine_model, rows[:1]), package))
    with pytest.raises(SignatureMismatch, match="rejected the input"):
        runtime.predict(rows[:, :5])
    with pytest.raises(SignatureMismatch, match="input 'X' must be FP32"):
        runtime.predict(np.full((2, 13), "twelve"))


def test_session_threads_come_from_the_spec(
    wine_model: LogisticRegression, wine: tuple[pd.DataFrame, pd.Series], package: Path
) -> None:
    frame, _ = wine
    rows = frame.to_numpy(dtype=np.float32)
    spec = onnx_flavor.save(to_onnx(wine_model, rows[:1]), package)
    spec = spec.model_copy(update={"options": {**spec.options, "intra_op_num_threads": 1}})

    runtime = onnx_flavor.load(package, spec)

    assert runtime.session.get_session_options().intra_op_num_threads == 1
    assert runtime.predict(rows[:2])["output_label"].shape == (2,)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file_is_refused(
    damage: str,
    wine_model: LogisticRegression,
    wine: tuple[pd.DataFrame, pd.Series],
    tmp_path: Path,
    package: Path,
) -> None:
    frame, _ = wine
    source = _write(to_onnx(wine_model, frame.to_numpy(np.float32)[:1]), tmp_path / "m.onnx")
    data = source.read_bytes()
    source.write_bytes(
        b"\x07not onnx at all" * 10 if damage == "garbage" else data[: len(data) // 2]
    )

    with pytest.raises(CorruptArtifact, match="m.onnx"):
        onnx_flavor.import_file(source, package, Consent())
    assert list(package.iterdir()) == []


def test_file_changed_after_registration_is_caught_on_load(
    wine_model: LogisticRegression,
    wine: tuple[pd.DataFrame, pd.Series],
    package: Path,
    tamper: Callable[[Path], None],
) -> None:
    frame, _ = wine
    spec = onnx_flavor.save(to_onnx(wine_model, frame.to_numpy(np.float32)[:1]), package)
    tamper(package / spec.file)
    with pytest.raises(CorruptArtifact, match="changed after registration"):
        onnx_flavor.load(package, spec)
