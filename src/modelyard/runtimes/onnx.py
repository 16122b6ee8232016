"""ONNX graphs, run by onnxruntime on CPU; inputs and outputs keep the names the graph declares.

skl2onnx classifiers end in a ZipMap that yields one ``{class: probability}`` dict per row; that
output is turned into a 2-D float array with one column per class, in ``classes`` order.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import ArtifactError, CorruptArtifact, SignatureMismatch, first_line
from modelyard.runtimes._files import pinned_spec, staged_copy
from modelyard.runtimes._tabular import python_list
from modelyard.runtimes.base import Consent, ModelInput, Runtime, verify_file
from modelyard.types import FlavorSpec, Signature, TensorSpec, datatype_of

ONNX_FILE = "model.onnx"

# onnxruntime's element type names ("tensor(float)") → numpy dtype names.
_ELEMENT_DTYPES: dict[str, str] = {
    "float": "float32", "double": "float64", "float16": "float16", "bool": "bool",
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "string": "object",
}  # fmt: skip
_CLASSIFIER_OPS = ("ZipMap", "LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier")
_CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


def save(model: Any, directory: Path) -> FlavorSpec:
    """Write an in-memory ``onnx.ModelProto`` as ``model.onnx`` after checking it."""
    import onnx

    _check(model, "the ONNX model")
    target = directory / ONNX_FILE
    onnx.save_model(model, str(target))
    return pinned_spec("onnx", "onnx", target, _options(model))


def import_file(path: Path, directory: Path, consent: Consent) -> FlavorSpec:
    """Copy an ``.onnx`` file into the package; a damaged or invalid graph is refused."""
    del consent  # an ONNX graph runs no Python code, so there is nothing to consent to
    with staged_copy(path, directory, ONNX_FILE) as target:
        model = _read(target, str(path))
        return pinned_spec("onnx", "onnx", target, _options(model))


def load(directory: Path, spec: FlavorSpec) -> OnnxRuntime:
    """An onnxruntime session for the package's graph, after checking the pinned hash."""
    import onnxruntime

    path = verify_file(directory, spec)
    options = onnxruntime.SessionOptions()
    threads = spec.options.get("intra_op_num_threads")
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ArtifactError(
            f"onnxruntime {onnxruntime.__version__} cannot run {spec.file}: {first_line(str(exc))}"
        ) from exc
    return OnnxRuntime(session, spec.options.get("classes"))


class OnnxRuntime(Runtime):
    """Feeds tensors to an onnxruntime session and returns every graph output by name."""

    flavor = "onnx"

    def __init__(self, session: Any, classes: list[Any] | None = None) -> None:
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        self.session = session
        self._inputs = list(session.get_inputs())
        self._outputs = list(session.get_outputs())
        self._classes = classes
        # Read once: a one-row call is ~12 µs of onnxruntime, so per-call lookups show.
        self._rejected = InvalidArgument
        self._output_names = [arg.name for arg in self._outputs]
        self._zipmaps = {arg.name for arg in self._outputs if _is_zipmap(arg.type)}
        self._dtypes = [_numpy_dtype(arg.type) for arg in self._inputs]
        self._ranks = [len(arg.shape) for arg in self._inputs]

    @property
    def n_features(self) -> int | None:
        if len(self._inputs) == 1 and len(self._inputs[0].shape) == 2:
            last = self._inputs[0].shape[1]
            return last if isinstance(last, int) else None
        return None

    @property
    def classes(self) -> list[Any] | None:
        return self._classes

    def native_signature(self) -> Signature:
        inputs = [_tensor_spec(arg.name, arg.type, arg.shape) for arg in self._inputs]
        outputs = []
        for arg in self._outputs:
            if _is_zipmap(arg.type):
                width = len(self._classes) if self._classes is not None else -1
                outputs.append(TensorSpec(name=arg.name, datatype="FP32", shape=[-1, width]))
            else:
                outputs.append(_tensor_spec(arg.name, arg.type, arg.shape))
        return Signature(inputs=inputs, outputs=outputs, columnar=False)

    def predict(
        self, inputs: ModelInput, outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        names = self._output_names
        if outputs is not None and outputs != names:
            names = [name for name in names if name in outputs] or names
        try:
            results = self.session.run(names, self._feed(inputs))
        except self._rejected as exc:
            raise SignatureMismatch(
                f"the ONNX model rejected the input: {first_line(str(exc))}"
            ) from exc
        if len(names) == 1 and not self._zipmaps:
            value = results[0]
            return {names[0]: value if type(value) is np.ndarray else np.asarray(value)}
        zipmaps = self._zipmaps
        return {
            name: self._zipmap_to_array(value) if name in zipmaps else np.asarray(value)
            for name, value in zip(names, results, strict=True)
        }

    def _feed(self, inputs: ModelInput) -> dict[str, np.ndarray]:
        args = self._inputs
        if type(inputs) is dict and len(args) == 1:  # the server's own form of a request
            name = args[0].name
            if name in inputs:
                return {name: _cast(inputs[name], name, self._dtypes[0], self._ranks[0])}
        if isinstance(inputs, Mapping) or (
            isinstance(inputs, pd.DataFrame) and len(args) > 1
            and {arg.name for arg in args} <= set(inputs)
        ):
            missing = [arg.name for arg in args if arg.name not in inputs]
            if missing:
                raise SignatureMismatch(
                    f"the input lacks {', '.join(missing)}; the ONNX model takes: "
                    f"{', '.join(arg.name for arg in args)}"
                )
            return {arg.name: _cast(inputs[arg.name], arg.name, dtype, rank)
                    for arg, dtype, rank in zip(args, self._dtypes, self._ranks, strict=True)}
        if len(args) != 1:
            raise SignatureMismatch(
                f"the ONNX model has {len(args)} inputs "
                f"({', '.join(arg.name for arg in args)}); pass them by name"
            )
        return {args[0].name: _cast(inputs, args[0].name, self._dtypes[0], self._ranks[0])}

    def _zipmap_to_array(self, rows: list[dict[Any, float]]) -> np.ndarray:
        order = self._classes if self._classes is not None else list(rows[0]) if rows else []
        return np.array([[row[label] for label in order] for row in rows], dtype=np.float32)


def _cast(values: Any, name: str, dtype: np.dtype[Any], rank: int) -> np.ndarray:
    """``values`` as the dtype (and, for one column, the rank) an input declares."""
    if type(values) is np.ndarray and values.dtype == dtype and values.ndim == rank:
        return values  # what the server's validation already made of a request
    array = (
        values.to_numpy() if isinstance(values, pd.DataFrame | pd.Series) else np.asarray(values)
    )
    if array.ndim == 1 and rank == 2:
        array = array.reshape(-1, 1)
    try:
        return array.astype(str) if dtype == np.dtype(object) else array.astype(dtype, copy=False)
    except (ValueError, TypeError) as exc:
        raise SignatureMismatch(
            f"input {name!r} must be {datatype_of(dtype)}: {first_line(str(exc))}"
        ) from exc


def _numpy_dtype(ort_type: str) -> np.dtype[Any]:
    element = ort_type.removeprefix("tensor(").removesuffix(")")
    return np.dtype(_ELEMENT_DTYPES.get(element, "object"))


def _tensor_spec(name: str, ort_type: str, shape: list[Any]) -> TensorSpec:
    dims = [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in shape]
    return TensorSpec(name=name, datatype=datatype_of(_numpy_dtype(ort_type)), shape=dims)


def _is_zipmap(ort_type: str) -> bool:
    return ort_type.startswith("seq(map(")


def _read(path: Path, shown: str) -> Any:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends; the file is unreadable
        raise CorruptArtifact(
            f"{shown} is not a readable ONNX model ({first_line(str(exc)) or type(exc).__name__}); "
            f"it may be truncated or not ONNX at all"
        ) from exc
    _check(model, shown, path)
    return model


def _check(model: Any, shown: str, path: Path | None = None) -> None:
    """Refuse what onnxruntime could not run; ``path`` lets the checker handle >2 GB files."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    if not isinstance(model, onnx.ModelProto):
        raise ArtifactError(f"expected an onnx.ModelProto, got {type(model).__name__}")
    if any(uses_external_data(tensor) for tensor in model.graph.initializer):
        raise ArtifactError(
            f"{shown} keeps its weights in separate files, which are not copied; save it as "
            f"one file with onnx.save_model(model, path, save_as_external_data=False)"
        )
    try:
        onnx.checker.check_model(model if path is None else str(path))
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise CorruptArtifact(f"{shown} fails the ONNX checker: {first_line(str(exc))}") from exc


def _options(model: Any) -> dict[str, Any]:
    classes = _classes(model)
    return {} if classes is None else {"classes": classes}


def _classes(model: Any) -> list[Any] | None:
    """Class labels from the graph's classifier nodes (skl2onnx writes them), ZipMap first."""
    import onnx

    nodes = [node for node in model.graph.node if node.op_type in _CLASSIFIER_OPS]
    nodes.sort(key=lambda node: node.op_type != "ZipMap")
    for node in nodes:
        for attribute in node.attribute:
            if attribute.name in _CLASS_ATTRIBUTES:
                labels = onnx.helper.get_attribute_value(attribute)
                return python_list(
                    label.decode() if isinstance(label, bytes) else label for label in labels
                )
    return None
