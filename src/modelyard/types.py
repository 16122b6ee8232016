"""Value types shared by every layer: tasks, tensor specs, signatures, flavor specs.

Datatypes use the Open Inference Protocol's names (``FP32``, ``INT64``, ``BYTES`` …) so that a
signature written at registration is the one the server validates requests against.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import InvalidInput


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    OTHER = "other"


_NUMPY_TO_OIP: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
_OIP_TO_NUMPY: dict[str, str] = {v: k for k, v in _NUMPY_TO_OIP.items()}
DATATYPES: frozenset[str] = frozenset([*_OIP_TO_NUMPY, "BYTES"])
_DTYPE_OF: dict[str, np.dtype[Any]] = {
    **{k: np.dtype(v) for k, v in _OIP_TO_NUMPY.items()}, "BYTES": np.dtype(object)
}
# The common case on the hot path, without building a dtype name each call.
_BY_DTYPE: dict[Any, str] = {np.dtype(k): v for k, v in _NUMPY_TO_OIP.items()}


def datatype_of(dtype: Any) -> str:
    """The OIP datatype for a numpy (or pandas) dtype; strings and objects are ``BYTES``.

    >>> datatype_of(np.dtype("float32")), datatype_of(np.dtype("O"))
    ('FP32', 'BYTES')
    """
    found = _BY_DTYPE.get(dtype)
    if found is not None:
        return found
    try:
        name = np.dtype(dtype).name
    except TypeError:  # pandas extension dtypes (string, category, nullable ints)
        name = str(getattr(dtype, "numpy_dtype", "object"))
    return _NUMPY_TO_OIP.get(name, "BYTES")


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype for an OIP datatype (``BYTES`` maps to ``object``).

    >>> numpy_dtype("INT64")
    dtype('int64')
    """
    try:
        return _DTYPE_OF[datatype]
    except KeyError:
        raise InvalidInput(
            f"unknown datatype {datatype!r}; expected one of {', '.join(sorted(DATATYPES))}"
        ) from None


class TensorSpec(BaseModel):
    """One named input or output: OIP datatype and shape, ``-1`` for a variable dimension."""

    model_config = ConfigDict(frozen=True)

    name: str
    datatype: str
    shape: list[int]

    def describe(self) -> str:
        return f"{self.name}: {self.datatype}{self.shape}"


class Signature(BaseModel):
    """What a model takes and gives.

    ``columnar`` signatures name one input per table column, each of shape ``[-1]``; the model
    sees them side by side as a 2-D table. Otherwise each input is a tensor fed as is (ONNX).
    """

    inputs: list[TensorSpec]
    outputs: list[TensorSpec] = Field(default_factory=list)
    columnar: bool = True

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]


class FlavorSpec(BaseModel):
    """How the files of a model package are read back.

    ``serialization`` is the on-disk format (``skops``, ``pickle``, ``joblib``, ``onnx``,
    ``xgboost-json``, ``xgboost-ubj``, ``lightgbm-txt``); ``sha256`` pins the main file;
    ``options`` carries flavor details such as skops trusted types or a wrapper class.
    """

    name: str
    serialization: str
    file: str
    sha256: str
    options: dict[str, Any] = Field(default_factory=dict)
