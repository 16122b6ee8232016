"""``modelyard.load``: a registered version, ready to predict, guarded by its signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard import runtimes
from modelyard.api.workspace import open_registry
from modelyard.errors import InvalidInput
from modelyard.monitoring.profile import TableProfile, profile_table
from modelyard.registry import ModelRef, PackageManifest, VersionInfo
from modelyard.registry.manifest import MODEL_DIR
from modelyard.registry.signature import to_frame, to_tensors
from modelyard.runtimes.base import Runtime
from modelyard.settings import Settings
from modelyard.types import Signature, Task


class Predictor:
    """One loaded model version. Inputs are checked against the signature before the model
    sees them; a mismatch raises :class:`~modelyard.errors.SignatureMismatch`."""

    def __init__(
        self, version: VersionInfo, manifest: PackageManifest, runtime: Runtime, directory: Path
    ) -> None:
        self.info = version
        self.manifest = manifest
        self.runtime = runtime
        self.directory = directory

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> int:
        return self.info.version

    @property
    def signature(self) -> Signature:
        return self.manifest.signature

    @property
    def task(self) -> Task:
        return self.manifest.task

    @property
    def classes(self) -> list[Any] | None:
        return self.manifest.classes

    def run(self, data: Any) -> dict[str, np.ndarray]:
        """Every output by name."""
        if self.signature.columnar:
            return self.runtime.predict(to_frame(data, self.signature))
        return self.runtime.predict(to_tensors(data, self.signature))

    def predict(self, data: Any) -> np.ndarray:
        """The main output: labels for classifiers, values for regressors."""
        outputs = self.run(data)
        return outputs["predict"] if "predict" in outputs else next(iter(outputs.values()))

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities, one column per class in ``classes`` order."""
        outputs = self.run(data)
        if "predict_proba" not in outputs:
            raise InvalidInput(f"{self.info.ref} gives no class probabilities")
        return outputs["predict_proba"]

    def reference(self) -> pd.DataFrame:
        """The reference data kept with this version (features and, if given, labels)."""
        if self.manifest.reference is None:
            raise InvalidInput(f"{self.info.ref} was registered without reference data")
        return pd.read_parquet(self.directory / self.manifest.reference.file)

    def reference_profile(self) -> TableProfile:
        """The reference's profile stored at registration (profiled now for older versions)."""
        info = self.manifest.reference
        if info is None:
            raise InvalidInput(f"{self.info.ref} was registered without reference data")
        if info.profile is None:
            return profile_table(self.directory / info.file)
        return TableProfile.from_bytes((self.directory / info.profile).read_bytes())

    def __repr__(self) -> str:
        return f"<Predictor {self.info.ref} {self.manifest.flavor.name} {self.task.value}>"


def load(ref: str, settings: Settings | None = None) -> Predictor:
    """Load ``name``, ``name@alias`` or ``name:N`` from the registry.

    A bare name loads the ``champion`` alias when it is set, else the newest version.
    """
    registry = open_registry(settings)
    version = registry.get_version(ModelRef.parse(ref))
    directory = registry.artifacts.open_dir(version.artifact_uri)
    manifest = PackageManifest.read(directory, expected_sha256=version.manifest_sha256)
    runtime = runtimes.load_runtime(directory / MODEL_DIR, manifest.flavor)
    return Predictor(version, manifest, runtime, directory)
