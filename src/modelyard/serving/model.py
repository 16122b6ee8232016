"""A model version as the server holds it: request tensors in, named output tensors out.

Each request is checked and converted on its own (``prepare``), so one bad request fails alone;
prepared requests of one version can then be stacked by rows (``stack``), run once (``run``)
and cut apart again (``split``).

Tabular models take either one 2-D tensor ``[rows, columns]`` (any name, columns in signature
order) or one 1-D tensor per column, named as the columns. When all columns share a numeric
datatype the batch is a plain 2-D array — no DataFrame on the hot path.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, cast

import numpy as np
import pandas as pd

from modelyard.errors import InvalidInput, SignatureMismatch
from modelyard.registry import PackageManifest
from modelyard.registry.signature import cast_array, to_frame, to_tensors
from modelyard.runtimes.base import Runtime
from modelyard.serving.types import ModelMetadata, RequestedOutput, Tensor
from modelyard.types import TensorSpec, datatype_of, numpy_dtype

ModelBatch = np.ndarray | pd.DataFrame | dict[str, np.ndarray]
_DATA = attrgetter("data")


@dataclass(slots=True)
class Prepared:
    """One request's input as the model takes it, and what the data plane adds on its way:
    the outputs it asks for, the id its answer will carry (made before the model runs, so
    that a batch can be handed to monitoring whole) and when it began (``perf_counter``)."""

    data: ModelBatch
    rows: int
    outputs: list[str] | None = None  # the outputs this request wants; None: all
    request_id: str = ""
    started: float = 0.0


class ServedModel:
    def __init__(
        self, name: str, version: int, manifest: PackageManifest, runtime: Runtime
    ) -> None:
        self.name = name
        self.version = version
        self.key = f"{name}:{version}"
        self.manifest = manifest
        self.runtime = runtime
        self.signature = manifest.signature
        self.columns = self.signature.input_names
        self.output_names = [spec.name for spec in self.signature.outputs]
        kinds = {spec.datatype for spec in self.signature.inputs}
        self.matrix_dtype: np.dtype[Any] | None = None
        if (
            self.signature.columnar
            and runtime.takes_arrays
            and len(kinds) == 1
            and "BYTES" not in kinds
        ):
            self.matrix_dtype = numpy_dtype(next(iter(kinds)))
        # One tensor input: a request that already matches it is taken as it is. Kept as its
        # name, datatype, dtype, rank and the (axis, size) pairs its shape fixes.
        self._single: tuple[str, str, np.dtype[Any], int, tuple[tuple[int, int], ...]] | None
        self._single = None
        if not self.signature.columnar and len(self.signature.inputs) == 1:
            spec = self.signature.inputs[0]
            fixed = tuple((axis, size) for axis, size in enumerate(spec.shape) if size != -1)
            self._single = (spec.name, spec.datatype, numpy_dtype(spec.datatype),
                            len(spec.shape), fixed)

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            name=self.name,
            versions=[str(self.version)],
            platform=f"modelyard_{self.manifest.flavor.name}",
            inputs=list(self.signature.inputs),
            outputs=list(self.signature.outputs),
            parameters={"task": self.manifest.task.value},
        )

    # -- one request ---------------------------------------------------------------------

    def check_outputs(
        self, requested: list[RequestedOutput] | None, default: list[str] | None = None
    ) -> list[str]:
        """The output names to answer with: those requested, else ``default``, else all."""
        if requested is None:
            if default is None:
                return self.output_names
            names = list(default)
        else:
            names = [out.name for out in requested]
        unknown = [n for n in names if n not in self.output_names]
        if unknown:
            raise InvalidInput(
                f"model {self.key} has no output {unknown[0]!r}; "
                f"its outputs: {', '.join(self.output_names)}"
            )
        return names

    def prepare(self, inputs: list[Tensor]) -> Prepared:
        if not inputs:
            raise InvalidInput("the request has no inputs")
        if not self.signature.columnar:
            return self._prepare_tensors(inputs)
        if len(inputs) == 1 and len(inputs[0].shape) == 2 and (
            len(self.columns) > 1 or inputs[0].name not in self.columns
        ):
            return self._prepare_matrix(inputs[0])
        return self._prepare_columns(inputs)

    def _prepare_matrix(self, tensor: Tensor) -> Prepared:
        rows, width = tensor.shape
        if width != len(self.columns):
            raise SignatureMismatch(
                f"input {tensor.name!r} has {width} columns, model {self.key} takes "
                f"{len(self.columns)}: {_names(self.columns)}"
            )
        if rows == 0:
            raise SignatureMismatch(f"input {tensor.name!r} has no rows")
        if self.matrix_dtype is not None:
            if tensor.datatype == "BYTES":
                raise SignatureMismatch(
                    f"input {tensor.name!r} is BYTES, model {self.key} takes numbers "
                    f"({self.signature.inputs[0].datatype})"
                )
            return Prepared(self._cast_matrix(tensor.data, tensor.name), rows)
        frame = pd.DataFrame(_text(tensor.data), columns=self.columns)
        return Prepared(to_frame(frame, self.signature), rows)

    def _cast_matrix(self, data: np.ndarray, name: str) -> np.ndarray:
        if data.dtype == self.matrix_dtype:
            return data
        datatype = self.signature.inputs[0].datatype
        return cast_array(data, TensorSpec(name=name, datatype=datatype, shape=[-1, -1]))

    def _prepare_columns(self, inputs: list[Tensor]) -> Prepared:
        by_name = {t.name: t for t in inputs}
        missing = [c for c in self.columns if c not in by_name]
        extra = [n for n in by_name if n not in self.columns]
        if missing or extra:
            problem = (
                f"lacks input(s) {_names(missing)}" if missing else f"has unknown input(s) "
                f"{_names(extra)}"
            )
            raise SignatureMismatch(
                f"the request {problem}; model {self.key} takes one 2-D tensor "
                f"[rows, {len(self.columns)}] or one tensor per column: {_names(self.columns)}"
            )
        rows = {t.shape[0] if t.shape else -1 for t in inputs}
        if len(rows) != 1 or any(len(t.shape) not in (1, 2) or t.data.size != t.shape[0]
                                 for t in inputs):
            raise SignatureMismatch(
                "every column input must have shape [rows] or [rows, 1], with the same rows"
            )
        (count,) = rows
        if count == 0:
            raise SignatureMismatch("the request has no rows")
        if self.matrix_dtype is not None:
            if any(t.datatype == "BYTES" for t in inputs):
                raise SignatureMismatch(f"model {self.key} takes numbers, not BYTES")
            data = np.column_stack([by_name[c].data.reshape(-1) for c in self.columns])
            return Prepared(self._cast_matrix(data, "columns"), count)
        frame = pd.DataFrame({c: _text(by_name[c].data.reshape(-1)) for c in self.columns})
        return Prepared(to_frame(frame, self.signature), count)

    def _prepare_tensors(self, inputs: list[Tensor]) -> Prepared:
        single = self._single
        if single is not None and len(inputs) == 1:
            name, datatype, dtype, rank, fixed = single
            only = inputs[0]
            array = only.data
            if (only.name == name and only.datatype == datatype and array.dtype == dtype
                    and array.ndim == rank and rank > 0 and array.shape[0] > 0):
                shape = array.shape
                for axis, size in fixed:
                    if shape[axis] != size:
                        break
                else:
                    return Prepared({name: array}, shape[0])
        expected = self.signature.input_names
        names = [t.name for t in inputs]
        unknown = [n for n in names if n not in expected]
        if unknown:
            raise SignatureMismatch(
                f"model {self.key} has no input {unknown[0]!r}; its inputs: {_names(expected)}"
            )
        by_name = {t.name: t for t in inputs}
        for spec in self.signature.inputs:
            tensor = by_name.get(spec.name)
            if tensor is not None and tensor.datatype != spec.datatype:
                raise SignatureMismatch(
                    f"input {spec.name!r} is {tensor.datatype}, model {self.key} takes "
                    f"{spec.datatype}"
                )
        data = to_tensors({t.name: t.data for t in inputs}, self.signature)
        first = next(iter(data.values()))
        if first.ndim == 0 or first.shape[0] == 0:
            raise SignatureMismatch("the request has no rows")
        return Prepared(data, int(first.shape[0]))

    # -- a batch -------------------------------------------------------------------------

    def stack(self, parts: list[Prepared]) -> ModelBatch:
        if len(parts) == 1:
            return parts[0].data
        datas = list(map(_DATA, parts))
        first = datas[0]
        if isinstance(first, np.ndarray):
            return np.concatenate(cast(list[np.ndarray], datas))
        if isinstance(first, pd.DataFrame):
            return pd.concat(cast(list[pd.DataFrame], datas), ignore_index=True)
        return {key: np.concatenate(list(map(itemgetter(key), datas))) for key in first}

    def run(
        self, batch: ModelBatch, outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        return self.runtime.predict(batch, outputs)

    @staticmethod
    def split(outputs: dict[str, np.ndarray], rows: list[int]) -> list[dict[str, np.ndarray]]:
        if len(rows) == 1:
            return [outputs]
        items = list(outputs.items())
        pieces = []
        start = 0
        for count in rows:  # views, as np.split makes, without its per-piece overhead
            end = start + count
            pieces.append({name: value[start:end] for name, value in items})
            start = end
        return pieces

    def to_tensors(self, outputs: dict[str, np.ndarray], names: list[str]) -> list[Tensor]:
        tensors = []
        for name in names:
            value = np.asarray(outputs[name])
            datatype = datatype_of(value.dtype)
            tensors.append(Tensor(name, datatype, list(value.shape), value))
        return tensors


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:8])
    return shown + (f" … ({len(names)} in all)" if len(names) > 8 else "")


def _text(values: np.ndarray) -> np.ndarray:
    """BYTES values as text, the way a model trained on string columns saw them."""
    if values.dtype != np.dtype(object):
        return values
    out = np.empty(values.shape, dtype=object)
    out.ravel()[:] = [
        v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values.ravel()
    ]
    return out
