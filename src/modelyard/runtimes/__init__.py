"""Model flavors: detect a file's format, store a model in a package, load it back to predict.

>>> from modelyard.runtimes import detect_format, import_model, load_runtime
>>> spec = import_model(Path("model.skops"), package_dir)          # doctest: +SKIP
>>> load_runtime(package_dir, spec).predict(frame)["predict"]       # doctest: +SKIP

Safe formats need no consent: skops (types beyond skops' defaults must be named by the user),
ONNX, XGBoost JSON/UBJSON and LightGBM text. Pickle and joblib, including an MLflow
directory's pickled scikit-learn model, need ``Consent(trust_pickle=True, sha256=...)``.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

from modelyard.errors import InvalidInput, UnknownFormat
from modelyard.runtimes import lightgbm, mlflow, onnx, python, sklearn, xgboost
from modelyard.runtimes.base import Consent, ModelInput, Runtime
from modelyard.types import FlavorSpec

__all__ = [
    "FORMATS",
    "Consent",
    "ModelInput",
    "Runtime",
    "detect_format",
    "import_model",
    "load_runtime",
    "requirements",
]

FORMATS = ("skops", "pickle", "joblib", "onnx", "mlflow", "xgboost", "lightgbm", "python")
SUPPORTED = (
    ".skops, .onnx, an MLflow model directory, XGBoost .json/.ubj, LightGBM text (.txt), "
    "or .pkl/.pickle/.joblib with --trust-pickle, "
    "or a .py file with a PythonModel class (file.py:ClassName)"  # python flavor
)
_BY_SUFFIX = {
    ".skops": "skops",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".joblib": "joblib",
    ".onnx": "onnx",
    ".ubj": "xgboost",
}
_XGBOOST_JSON_START = re.compile(rb'^\s*\{\s*"learner"\s*:')
_LOADERS = {
    "sklearn": sklearn.load,
    "onnx": onnx.load,
    "xgboost": xgboost.load,
    "lightgbm": lightgbm.load,
    "python": python.load,  # python flavor
}
_PACKAGES = {
    "sklearn": ("scikit-learn", "numpy"),
    "onnx": ("onnx", "onnxruntime", "numpy"),
    "xgboost": ("xgboost", "numpy"),
    "lightgbm": ("lightgbm", "numpy"),
    "python": ("numpy",),  # python flavor: the user's own imports are theirs to install
}


def detect_format(path: Path) -> str:
    """The format of a model file or directory, one of ``FORMATS``.

    >>> detect_format(Path("churn.skops"))  # doctest: +SKIP
    'skops'
    """
    # python flavor: "file.py:ClassName" names a file that exists without the suffix.
    code, _ = python.split_class(path)
    if code.suffix.lower() == ".py":
        if not code.is_file():
            raise InvalidInput(f"model file not found: {code}")
        return "python"
    if not path.exists():
        raise InvalidInput(f"model file not found: {path}")
    if path.is_dir():
        if (path / mlflow.MLMODEL).is_file():
            return "mlflow"
        raise UnknownFormat(
            f"{path} is a directory without an MLmodel file; pass one of: {SUPPORTED}"
        )
    suffix = path.suffix.lower()
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    if suffix == ".json" and _is_xgboost_json(path):
        return "xgboost"
    if _is_lightgbm_text(path):
        return "lightgbm"
    raise UnknownFormat(f"cannot tell the model format of {path.name}; pass one of: {SUPPORTED}")


def import_model(
    source: object | Path, directory: Path, consent: Consent = Consent()
) -> FlavorSpec:
    """Store a model file, an MLflow directory or an in-memory model in the folder ``directory``.

    A path (or ``str``) is read by its detected format; a fitted scikit-learn estimator,
    XGBoost or LightGBM model or ``onnx.ModelProto`` is written in its safe format; a
    ``PythonModel`` subclass (or instance) is stored as the .py file that defines it.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        kind = detect_format(path)
        if kind == "mlflow":
            return mlflow.import_file(path, directory, consent)
        if kind in ("skops", "pickle", "joblib"):
            return sklearn.import_file(path, directory, consent)
        if kind == "onnx":
            return onnx.import_file(path, directory, consent)
        if kind == "xgboost":
            return xgboost.import_file(path, directory, consent)
        if kind == "python":  # python flavor
            return python.import_file(path, directory, consent)
        return lightgbm.import_file(path, directory, consent)
    # python flavor: a PythonModel instance or class ships its source file.
    if isinstance(source, python.PythonModel) or (
        isinstance(source, type) and issubclass(source, python.PythonModel)
    ):
        return python.save(source, directory)
    # Look at module names first, so XGBoost and LightGBM are imported only for their own models.
    modules = {cls.__module__.split(".")[0] for cls in type(source).__mro__}
    if "xgboost" in modules:
        return xgboost.save(source, directory)
    if "lightgbm" in modules:
        return lightgbm.save(source, directory)
    if "onnx" in modules and type(source).__name__ == "ModelProto":
        return onnx.save(source, directory)
    if "sklearn" in modules:
        from sklearn.base import BaseEstimator

        if isinstance(source, BaseEstimator):
            return sklearn.save(source, directory)
    raise UnknownFormat(
        f"cannot store a {type(source).__module__}.{type(source).__qualname__}; pass a fitted "
        f"scikit-learn estimator, an XGBoost or LightGBM model, an onnx.ModelProto, or a file"
    )


def load_runtime(directory: Path, spec: FlavorSpec) -> Runtime:
    """The model in ``directory`` described by ``spec``, loaded and ready to predict."""
    loader = _LOADERS.get(spec.name)
    if loader is None:
        raise UnknownFormat(
            f"unknown model flavor {spec.name!r}; this modelyard loads {', '.join(_LOADERS)}"
        )
    return loader(directory, spec)


def requirements(spec: FlavorSpec) -> dict[str, str]:
    """Installed versions of the packages needed to load ``spec``, for the package manifest."""
    if spec.name not in _PACKAGES:
        raise UnknownFormat(f"unknown model flavor {spec.name!r}")
    names = list(_PACKAGES[spec.name])
    if spec.serialization == "skops":
        names.append("skops")
    if spec.serialization == "joblib":
        names.append("joblib")
    if spec.options.get("mlflow_serialization") == "cloudpickle":
        names.append("cloudpickle")
    if spec.name == "xgboost" and spec.options.get("wrapper", "Booster") != "Booster":
        names.append("scikit-learn")
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _is_xgboost_json(path: Path) -> bool:
    """XGBoost writes ``{"learner": ...}``; a file that starts otherwise is parsed in full."""
    with open(path, "rb") as fh:
        head = fh.read(256)
    if _XGBOOST_JSON_START.match(head):
        return True
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "learner" in data


def _is_lightgbm_text(path: Path) -> bool:
    """LightGBM's text format starts with a line that says ``tree``."""
    with open(path, "rb") as fh:
        return fh.readline(64).rstrip(b"\r\n") == b"tree"
