"""Protocol-neutral requests and responses: what REST and gRPC adapters translate to and from.

Tensors hold numpy arrays already shaped; BYTES tensors hold an object array of ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelyard.types import TensorSpec


@dataclass(slots=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """One inference call. ``model`` is a name or ``name@alias``; ``version`` a number as text.

    ``outputs`` of ``None`` means every output; ``deadline`` is a ``time.monotonic()`` instant
    after which the answer is no longer wanted.
    """

    model: str
    inputs: list[Tensor]
    version: str | None = None
    id: str | None = None
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    deadline: float | None = None
    # the request's raw headers (lower-case names), for a rollout that routes by caller
    headers: list[tuple[bytes, bytes]] | None = None


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str
    outputs: list[Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)
    cache_hit: bool | None = None


@dataclass(slots=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RepositoryEntry:
    """One row of the repository index (Triton's model repository extension)."""

    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING
    reason: str = ""


class RequestIds:
    """Unique request ids without a system call each: a random per-process prefix and a
    counter (``uuid4`` costs an ``os.urandom`` call per request on the hot path).

    The counter has a fixed width (12 hex digits), so one process's ids sort in the order
    they were made: an index keyed by request id (the prediction log's) then grows at its end
    instead of splitting pages in its middle (0.25 against 0.46 µs a row on SQLite)."""

    def __init__(self) -> None:
        import itertools
        import secrets

        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter):012x}"


request_ids = RequestIds()
