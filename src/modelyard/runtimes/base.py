"""What every flavor provides: a loaded model that turns a table or tensors into named outputs.

A flavor module (``sklearn``, ``onnx``, ``xgboost``, ``lightgbm``) offers three functions:

- ``save(model, directory) -> FlavorSpec`` writes an in-memory model object into a package,
- ``import_file(path, directory, consent) -> FlavorSpec`` copies a model file into a package,
- ``load(directory, spec) -> Runtime`` reads it back, checking ``spec.sha256`` first.

Output names are the same across flavors where the meaning is the same: ``predict`` (labels or
values) and, for classifiers, ``predict_proba`` (one column per class, in ``classes`` order).
ONNX models keep the output names their graph declares.
"""

from __future__ import annotations

import hashlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from modelyard.errors import CorruptArtifact, MissingExtra
from modelyard.types import FlavorSpec, Signature, Task

ModelInput = pd.DataFrame | np.ndarray | Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Consent:
    """What the user explicitly allowed for this registration.

    ``trust_pickle`` with ``sha256`` allows one pickle/joblib file whose SHA-256 matches;
    ``trusted_types`` lists the extra skops types the user reviewed and accepts.
    """

    trust_pickle: bool = False
    sha256: str | None = None
    trusted_types: tuple[str, ...] = ()


class Runtime(ABC):
    """A model loaded into memory, ready to predict."""

    flavor: ClassVar[str]
    takes_arrays: ClassVar[bool] = True
    """Whether a plain 2-D array is an acceptable form of a table for this runtime (the server
    then skips building DataFrames); user code that indexes columns by name says False."""

    @property
    def feature_names(self) -> list[str] | None:
        """Column names the model was fitted on, when it knows them."""
        return None

    @property
    def n_features(self) -> int | None:
        """Number of input columns the model expects, when it knows it."""
        return None

    @property
    def classes(self) -> list[Any] | None:
        """Class labels in ``predict_proba`` column order, for classifiers."""
        return None

    @property
    def task(self) -> Task | None:
        """The task the model itself reveals (a classifier has classes), if any."""
        return Task.CLASSIFICATION if self.classes is not None else None

    def native_signature(self) -> Signature | None:
        """The signature the artifact declares itself (ONNX graphs do), if any."""
        return None

    def params(self) -> dict[str, Any]:
        """Hyperparameters, JSON-safe, for provenance."""
        return {}

    @abstractmethod
    def predict(
        self, inputs: ModelInput, outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Outputs by name for a batch of rows: all of them, or at least those in ``outputs``
        (a runtime skips work for outputs nobody asked for where it can)."""

    # Streaming and batching (added with the ``python`` flavor); other flavors keep the defaults.
    @property
    def streams(self) -> bool:
        """Whether ``stream`` yields partial results as they come, not one whole result."""
        return False

    @property
    def batch(self) -> bool:
        """Whether ``predict`` takes many rows at once, so the server may stack requests."""
        return True

    def stream(self, inputs: ModelInput) -> Iterator[dict[str, np.ndarray]]:
        """Outputs chunk by chunk; by default the whole ``predict`` result as one chunk."""
        yield self.predict(inputs)


def require_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(module, extra, purpose) from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(directory: Path, spec: FlavorSpec) -> Path:
    """The path of ``spec.file`` in ``directory``, after checking it exists and matches its hash."""
    path = directory / spec.file
    if not path.is_file():
        raise CorruptArtifact(
            f"model file {spec.file!r} is missing from the package at {directory}"
        )
    actual = sha256_file(path)
    if actual != spec.sha256:
        raise CorruptArtifact(
            f"model file {spec.file!r} has SHA-256 {actual[:12]}…, but the package pins "
            f"{spec.sha256[:12]}…; it was changed after registration"
        )
    return path
