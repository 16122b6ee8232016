"""Custom Python models: code shipped in the package, hooks run in order, streaming, batching."""

from __future__ import annotations

import importlib
import json
import runpy
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.errors import ArtifactError, CorruptArtifact, InvalidInput
from modelyard.runtimes import (
    detect_format,
    import_model,
    load_runtime,
    python,
    requirements,
    sklearn,
)
from modelyard.runtimes.base import Consent

DOUBLER = """
    import numpy as np
    from modelyard.runtimes.python import PythonModel

    class Doubler(PythonModel):
        def setup(self, context):
            self.factor = 2.0

        def predict(self, inputs):
            return inputs.to_numpy() * self.factor
"""

FRAME = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0], "b": [0.5, -1.0, 0.0, 2.0, 3.5]})


def write(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """A folder, outside the package, where the user keeps their model code."""
    return tmp_path / "code"


@pytest.fixture
def importable(code: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``code`` on ``sys.path``, as a user's project is; modules imported from it are forgotten."""
    code.mkdir(exist_ok=True)
    monkeypatch.syspath_prepend(str(code))
    before = set(sys.modules)
    yield code
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_import_file_round_trip_matches_the_class(code: Path, package: Path) -> None:
    path = write(code, "my_model.py", DOUBLER)
    spec = python.import_file(path, package, Consent())
    assert (spec.name, spec.file) == ("python", "code/my_model.py")
    assert spec.options == {"module": "my_model", "class": "Doubler", "artifacts": {}}
    assert (package / spec.file).read_bytes() == path.read_bytes()

    runtime = load_runtime(package, spec)
    assert isinstance(runtime, python.PythonRuntime)
    assert runtime.flavor == "python"
    np.testing.assert_array_equal(runtime.predict(FRAME)["predict"], FRAME.to_numpy() * 2.0)
    assert not (package / "code" / "__pycache__").exists()  # the package holds only pinned files


def test_save_class_or_instance_from_an_importable_module(importable: Path, tmp_path: Path) -> None:
    write(importable, "doubling.py", DOUBLER)
    cls = importlib.import_module("doubling").Doubler
    expected = cls()
    expected.setup(python.Context(tmp_path, {}))
    for i, model in enumerate([cls, cls()]):
        directory = tmp_path / f"package{i}"
        directory.mkdir()
        spec = import_model(model, directory)
        assert spec.file == "code/doubling.py"
        assert spec.options["class"] == "Doubler"
        outputs = load_runtime(directory, spec).predict(FRAME)
        np.testing.assert_array_equal(outputs["predict"], expected.predict(FRAME))


def test_dispatch_detects_py_files_with_or_without_a_class(code: Path, package: Path) -> None:
    path = write(code, "my_model.py", DOUBLER)
    assert detect_format(path) == "python"
    assert detect_format(Path(f"{path}:Doubler")) == "python"
    with pytest.raises(InvalidInput, match="not found"):
        detect_format(code / "missing.py:Doubler")
    spec = import_model(Path(f"{path}:Doubler"), package)
    assert spec.options["class"] == "Doubler"
    assert set(requirements(spec)) == {"numpy"}
    assert python.split_class(Path("C:/models/m.py")) == (Path("C:/models/m.py"), None)


def test_preprocess_and_postprocess_run_around_predict(code: Path, package: Path) -> None:
    path = write(
        code,
        "scaled.py",
        """
        import numpy as np
        from modelyard.runtimes.python import PythonModel

        class Scaled(PythonModel):
            def preprocess(self, inputs):
                return inputs[["a"]].to_numpy() - 1.0

            def predict(self, inputs):
                return {"score": inputs[:, 0] * 10.0}

            def postprocess(self, outputs):
                return {**outputs, "label": np.where(outputs["score"] > 15, "high", "low")}
        """,
    )
    runtime = load_runtime(package, python.import_file(path, package, Consent()))
    outputs = runtime.predict(FRAME)
    np.testing.assert_array_equal(outputs["score"], [0.0, 10.0, 20.0, 30.0, 40.0])
    assert outputs["label"].tolist() == ["low", "low", "high", "high", "high"]
    assert runtime.streams is False
    assert [chunk["score"].tolist() for chunk in runtime.stream(FRAME)] == [
        outputs["score"].tolist()
    ]


def test_generator_predict_streams_chunks_in_order(code: Path, package: Path) -> None:
    path = write(
        code,
        "chunked.py",
        """
        from modelyard.runtimes.python import PythonModel

        class Chunked(PythonModel):
            def predict(self, inputs):
                values = inputs["a"].to_numpy()
                for start in range(0, len(values), 2):
                    yield {"value": values[start : start + 2], "step": [start // 2]}

            def postprocess(self, outputs):
                return {**outputs, "value": outputs["value"] + 100}
        """,
    )
    runtime = load_runtime(package, python.import_file(path, package, Consent()))
    assert runtime.streams is True
    chunks = list(runtime.stream(FRAME))
    assert [c["value"].tolist() for c in chunks] == [[101.0, 102.0], [103.0, 104.0], [105.0]]
    assert [c["step"].tolist() for c in chunks] == [[0], [1], [2]]
    whole = runtime.predict(FRAME)
    np.testing.assert_array_equal(whole["value"], FRAME["a"].to_numpy() + 100)
    np.testing.assert_array_equal(whole["step"], [0, 1, 2])


def test_batch_flag_and_base_defaults(
    code: Path, package: Path, tmp_path: Path, cancer: tuple[pd.DataFrame, pd.Series]
) -> None:
    path = write(code, "single.py", DOUBLER + "        batch = False\n")
    assert load_runtime(package, python.import_file(path, package, Consent())).batch is False

    from sklearn.linear_model import LogisticRegression

    frame, target = cancer
    estimator = LogisticRegression(max_iter=5000).fit(frame, target)
    (tmp_path / "sk").mkdir()
    runtime = load_runtime(tmp_path / "sk", sklearn.save(estimator, tmp_path / "sk"))
    assert (runtime.batch, runtime.streams) == (True, False)
    [chunk] = runtime.stream(frame.head(3))
    np.testing.assert_array_equal(chunk["predict"], runtime.predict(frame.head(3))["predict"])


def test_tensor_inputs_reach_the_model_as_a_dict(code: Path, package: Path) -> None:
    path = write(
        code,
        "tensors.py",
        """
        from modelyard.runtimes.python import PythonModel

        class Sum(PythonModel):
            def predict(self, inputs):
                assert isinstance(inputs, dict), type(inputs)
                return inputs["x"] + inputs["y"]
        """,
    )
    runtime = load_runtime(package, python.import_file(path, package, Consent()))
    inputs = {"x": np.ones((2, 3), np.float32), "y": np.full((2, 3), 2, np.float32)}
    np.testing.assert_array_equal(runtime.predict(inputs)["predict"], np.full((2, 3), 3.0))


def test_setup_gets_artifacts_which_are_pinned(code: Path, package: Path) -> None:
    (code / "weights").mkdir(parents=True)
    (code / "weights" / "table.json").write_text(json.dumps({"a": 3.0, "b": -1.0}))
    path = write(
        code,
        "weighted.py",
        """
        import json
        from modelyard.runtimes.python import PythonModel

        class Weighted(PythonModel):
            artifacts = {"weights": "weights/table.json"}

            def setup(self, context):
                self.directory = context.directory
                self.weights = json.loads(context.artifacts["weights"].read_text())

            def predict(self, inputs):
                return sum(inputs[name].to_numpy() * w for name, w in self.weights.items())
        """,
    )
    spec = python.import_file(path, package, Consent())
    assert spec.options["artifacts"]["weights"]["file"] == "artifacts/weights/table.json"
    runtime = load_runtime(package, spec)
    assert isinstance(runtime, python.PythonRuntime)
    assert runtime.model.directory == package  # type: ignore[attr-defined]
    np.testing.assert_allclose(runtime.predict(FRAME)["predict"], FRAME["a"] * 3 - FRAME["b"])

    (package / "artifacts" / "weights" / "table.json").write_text('{"a": 0}')
    with pytest.raises(CorruptArtifact, match="changed after registration"):
        load_runtime(package, spec)


def test_missing_artifact_is_refused_at_registration(code: Path, package: Path) -> None:
    source = DOUBLER + '        artifacts = {"weights": "nowhere.bin"}\n'
    path = write(code, "my_model.py", source)
    with pytest.raises(InvalidInput, match=r"artifact 'weights' of Doubler not found"):
        python.import_file(path, package, Consent())


def test_several_classes_need_a_name(code: Path, package: Path) -> None:
    path = write(
        code,
        "two.py",
        DOUBLER
        + """
    class Tripler(Doubler):
        def setup(self, context):
            self.factor = 3.0
    """,
    )
    with pytest.raises(
        InvalidInput,
        match=r"several PythonModel subclasses: Doubler, Tripler; pick one as .*two.py:Doubler",
    ):
        python.import_file(path, package, Consent())
    spec = python.import_file(Path(f"{path}:Tripler"), package, Consent())
    assert spec.options["class"] == "Tripler"
    outputs = load_runtime(package, spec).predict(FRAME)
    np.testing.assert_array_equal(outputs["predict"], FRAME.to_numpy() * 3.0)
    with pytest.raises(
        InvalidInput, match=r"no PythonModel subclass with a predict\(\) named 'Quadrupler'"
    ):
        python.import_file(Path(f"{path}:Quadrupler"), package, Consent())


def test_file_without_a_model_class_is_refused(code: Path, package: Path) -> None:
    path = write(code, "empty.py", "import numpy as np\n")
    with pytest.raises(InvalidInput, match="empty.py defines no PythonModel subclass"):
        python.import_file(path, package, Consent())


def test_classes_that_cannot_be_imported_again_are_refused(code: Path, package: Path) -> None:
    script = write(code, "script.py", DOUBLER)
    main_class = runpy.run_path(str(script), run_name="__main__")["Doubler"]
    assert main_class.__module__ == "__main__"
    with pytest.raises(InvalidInput, match="put the class in a .py file"):
        import_model(main_class(), package)

    class Local(python.PythonModel):
        def predict(self, inputs: object) -> object:
            return inputs

    with pytest.raises(InvalidInput, match="put the class in a .py file"):
        python.save(Local, package)


def test_code_changed_after_registration_is_refused(code: Path, package: Path) -> None:
    path = write(code, "my_model.py", DOUBLER)
    spec = python.import_file(path, package, Consent())
    copy = package / spec.file
    copy.write_text(copy.read_text().replace("2.0", "20.0"))
    with pytest.raises(CorruptArtifact, match="changed after registration"):
        load_runtime(package, spec)


def test_failing_setup_names_the_class(code: Path, package: Path) -> None:
    source = DOUBLER.replace("self.factor = 2.0", "raise FileNotFoundError('no weights.bin')")
    spec = python.import_file(write(code, "broken.py", source), package, Consent())
    with pytest.raises(
        ArtifactError, match=r"model class Doubler failed in setup\(\): .*no weights.bin"
    ):
        load_runtime(package, spec)


def test_errors_from_predict_propagate_as_is(code: Path, package: Path) -> None:
    source = DOUBLER.replace(
        "return inputs.to_numpy() * self.factor", "raise ValueError('negative ages')"
    )
    runtime = load_runtime(
        package, python.import_file(write(code, "m.py", source), package, Consent())
    )
    with pytest.raises(ValueError, match="negative ages"):
        runtime.predict(FRAME)


def test_code_that_fails_to_import_is_an_artifact_error(code: Path, package: Path) -> None:
    path = write(code, "needs.py", "import not_a_real_module_for_modelyard\n")
    with pytest.raises(ArtifactError, match="importing needs.py failed: ModuleNotFoundError"):
        python.import_file(path, package, Consent())
    assert not (package / "code" / "needs.py").exists()


def test_user_module_is_not_left_under_its_own_name(code: Path, package: Path) -> None:
    path = write(code, "isolated_model.py", DOUBLER)
    before = set(sys.modules)
    spec = python.import_file(path, package, Consent())
    assert set(sys.modules) == before  # registration imports the file, then lets it go
    runtime = load_runtime(package, spec)
    assert isinstance(runtime, python.PythonRuntime)
    assert "isolated_model" not in sys.modules
    assert type(runtime.model).__module__.startswith("modelyard_code_isolated_model_")
    second = load_runtime(package, spec)
    assert isinstance(second, python.PythonRuntime)
    assert type(second.model) is not type(runtime.model)  # each load has its own namespace
