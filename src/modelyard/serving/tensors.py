"""Decoding tensors from the wire and encoding them back, for every adapter.

Declared shapes are checked against the data (and against a size limit) *before* anything is
allocated: a request declaring ``[1, 10**12]`` gets a clear error, never an allocation.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.serving.types import Tensor
from modelyard.types import DATATYPES

_LE = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")


def wire_dtype(datatype: str) -> np.dtype[Any]:
    """The little-endian numpy dtype of a numeric OIP datatype."""
    return _LE[datatype]


def check_header(name: str, datatype: str, shape: Sequence[Any], max_elements: int) -> int:
    """The element count a tensor declares, after checking its datatype and shape."""
    if datatype not in DATATYPES:
        raise InvalidInput(
            f"input {name!r} has unknown datatype {datatype!r}; "
            f"expected one of {', '.join(sorted(DATATYPES))}"
        )
    if not isinstance(shape, (list, tuple)):
        raise InvalidInput(f"input {name!r} has shape {shape!r}; expected a list of integers")
    count = 1
    for d in shape:
        if type(d) is not int:  # bool is a subclass of int, and no dimension
            raise InvalidInput(f"input {name!r} has shape {shape!r}; expected a list of "
                               "integers")
        if d < 0:
            raise InvalidInput(
                f"input {name!r} has a negative dimension in shape {list(shape)}")
        count *= d
    if count > max_elements:
        raise PayloadTooLarge(
            f"input {name!r} declares shape {list(shape)} ({count} elements), over the limit "
            f"of {max_elements}"
        )
    return count


def from_json(
    name: str, datatype: str, shape: list[int], data: Any, max_elements: int
) -> Tensor:
    """A tensor from OIP JSON ``data`` (flat or nested, row-major)."""
    count = check_header(name, datatype, shape, max_elements)
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r} data must be a list, got {type(data).__name__}")
    if datatype == "BYTES":
        flat = _flatten(data, name)
        _check_count(name, shape, count, len(flat))
        try:
            values = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in flat]
        except (TypeError, ValueError):
            raise InvalidInput(f"input {name!r} is BYTES but holds non-text values") from None
        array = np.empty(count, dtype=object)
        array[:] = values
        return Tensor(name, datatype, list(shape), array.reshape(shape))
    try:
        array = np.asarray(data, dtype=_LE[datatype])
    except (TypeError, ValueError, OverflowError):
        sample = next((v for v in _flatten(data, name) if not _is_number(v)), None)
        what = f" such as {sample!r}" if sample is not None else ""
        raise InvalidInput(
            f"input {name!r} is {datatype} but holds values that are not{what}"
        ) from None
    if datatype != "BOOL" and _has_bools(data):
        raise InvalidInput(f"input {name!r} is {datatype} but holds true/false values")
    _check_count(name, shape, count, array.size)
    return Tensor(name, datatype, list(shape), array.reshape(shape))


def from_raw(
    name: str, datatype: str, shape: list[int], raw: bytes | memoryview, max_elements: int
) -> Tensor:
    """A tensor from the binary extension / gRPC ``raw_input_contents`` (little-endian)."""
    count = check_header(name, datatype, shape, max_elements)
    if datatype == "BYTES":
        values = _split_bytes(name, raw)
        _check_count(name, shape, count, len(values))
        array = np.empty(count, dtype=object)
        array[:] = values
        return Tensor(name, datatype, list(shape), array.reshape(shape))
    dtype = _LE[datatype]
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(
            f"input {name!r} has {len(raw)} bytes of data, but shape {list(shape)} of "
            f"{datatype} needs {count * dtype.itemsize}"
        )
    return Tensor(name, datatype, list(shape), np.frombuffer(raw, dtype=dtype).reshape(shape))


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    """The binary form of a tensor: little-endian values, or length-prefixed BYTES."""
    if datatype == "BYTES":
        parts = []
        for value in array.ravel():
            item = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(_LENGTH.pack(len(item)))
            parts.append(item)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=_LE[datatype]).tobytes()


def to_json_data(array: np.ndarray, datatype: str) -> list[Any]:
    """A flat, JSON-ready list of a tensor's values."""
    flat = array.ravel()
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat]
    result: list[Any] = flat.tolist()
    return result


def _check_count(name: str, shape: list[int], declared: int, actual: int) -> None:
    if declared != actual:
        raise InvalidInput(
            f"input {name!r} has {actual} values, but shape {list(shape)} needs {declared}"
        )


def _flatten(data: list[Any], name: str) -> list[Any]:
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _has_bools(data: list[Any]) -> bool:
    head = data
    while head and isinstance(head[0], list):
        head = head[0]
    return bool(head) and isinstance(head[0], bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _split_bytes(name: str, raw: bytes | memoryview) -> list[bytes]:
    view = memoryview(raw)
    values: list[bytes] = []
    offset = 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise InvalidInput(f"input {name!r} BYTES data ends inside a length prefix")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidInput(
                f"input {name!r} BYTES element of {length} bytes runs past the end of the data"
            )
        values.append(bytes(view[offset : offset + length]))
        offset += length
    return values
