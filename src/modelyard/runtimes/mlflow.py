"""MLflow model directories: read ``MLmodel`` and register the safest flavor it offers.

MLflow itself is not needed. A directory may carry several flavors of one model; they are tried
safest first: scikit-learn saved with skops, then ONNX, then a scikit-learn pickle (which, like
any pickle, needs ``--trust-pickle`` and its SHA-256).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from modelyard.errors import CorruptArtifact, UnknownFormat
from modelyard.runtimes import onnx, sklearn
from modelyard.runtimes.base import Consent
from modelyard.types import FlavorSpec

MLMODEL = "MLmodel"
SUPPORTED_FLAVORS = ("sklearn", "onnx")
_PICKLE_FORMATS = ("cloudpickle", "pickle")


def import_file(path: Path, directory: Path, consent: Consent) -> FlavorSpec:
    """Copy the chosen flavor's file from the MLflow directory ``path`` into the package.

    The spec gets ``options["source"] = "mlflow"`` and, when ``MLmodel`` has one, the parsed
    MLflow signature as ``options["mlflow_signature"]`` (``inputs``/``outputs`` lists).
    """
    mlmodel = read_mlmodel(path)
    flavors = mlmodel.get("flavors")
    if not isinstance(flavors, dict):
        raise CorruptArtifact(f"{path / MLMODEL} has no 'flavors' section")
    spec = _import_flavor(path, flavors, directory, consent)
    options: dict[str, Any] = {**spec.options, "source": "mlflow"}
    signature = _signature(mlmodel.get("signature"))
    if signature is not None:
        options["mlflow_signature"] = signature
    return spec.model_copy(update={"options": options})


def read_mlmodel(path: Path) -> dict[str, Any]:
    """The parsed ``MLmodel`` file of an MLflow model directory."""
    try:
        with open(path / MLMODEL, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise CorruptArtifact(f"{path / MLMODEL} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise CorruptArtifact(f"{path / MLMODEL} is not an MLmodel file (no mapping at the top)")
    return data


def _import_flavor(
    path: Path, flavors: dict[str, Any], directory: Path, consent: Consent
) -> FlavorSpec:
    sk = flavors.get("sklearn")
    sk_format = sk.get("serialization_format", "cloudpickle") if isinstance(sk, dict) else None
    if isinstance(sk, dict) and sk_format == "skops":
        declared = sk.get("skops_trusted_types") or []
        source = _member(path, sk, "pickled_model")
        return sklearn.import_skops(source, directory, consent, declared=declared)
    if isinstance(flavors.get("onnx"), dict):
        source = _member(path, flavors["onnx"], "data")
        return onnx.import_file(source, directory, consent)
    if isinstance(sk, dict) and sk_format in _PICKLE_FORMATS:
        source = _member(path, sk, "pickled_model")
        spec = sklearn.import_pickle(source, directory, consent, "pickle")
        options = {**spec.options, "mlflow_serialization": sk_format}
        return spec.model_copy(update={"options": options})
    found = ", ".join(sorted(flavors)) or "none"
    detail = f" (sklearn serialization_format {sk_format!r})" if isinstance(sk, dict) else ""
    raise UnknownFormat(
        f"the MLflow model at {path} has flavors {found}{detail}; modelyard reads "
        f"{' and '.join(SUPPORTED_FLAVORS)} (sklearn saved as skops, pickle or cloudpickle)"
    )


def _member(path: Path, flavor: dict[str, Any], key: str) -> Path:
    """The file a flavor names, which must lie inside the MLflow directory."""
    relative = flavor.get(key)
    if not isinstance(relative, str) or not relative:
        raise CorruptArtifact(f"{path / MLMODEL} names no {key!r} file for its flavor")
    root = path.resolve()
    member = (root / relative).resolve()
    if not member.is_relative_to(root):
        raise CorruptArtifact(f"{path / MLMODEL} points {key!r} outside the model directory")
    if not member.is_file():
        raise CorruptArtifact(f"{path / MLMODEL} names {relative!r}, which is not a file in {path}")
    return member


def _signature(signature: Any) -> dict[str, Any] | None:
    """MLflow keeps ``inputs``/``outputs`` as JSON strings inside the YAML; parse them."""
    if not isinstance(signature, dict):
        return None
    parsed: dict[str, Any] = {}
    for key in ("inputs", "outputs"):
        value = signature.get(key)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise CorruptArtifact(f"the MLmodel signature's {key} is not JSON: {exc}") from exc
        parsed[key] = value
    return parsed
