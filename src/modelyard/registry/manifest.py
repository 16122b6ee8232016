"""The model package manifest, ``modelyard.yaml``: what a version is and where it came from."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from modelyard.errors import CorruptArtifact
from modelyard.types import FlavorSpec, Signature, Task

MANIFEST_FILE = "modelyard.yaml"
MODEL_DIR = "model"
REFERENCE_FILE = "reference.parquet"
PROFILE_FILE = "reference.profile"
FORMAT_VERSION = 1


class Provenance(BaseModel):
    """Where a version came from: data, code, parameters, metrics, parent."""

    data_uri: str | None = None
    data_sha256: str | None = None
    code_version: str | None = Field(None, description="git commit of the caller's repository")
    code_dirty: bool | None = Field(None, description="uncommitted changes at registration")
    code_repository: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    parent: str | None = Field(None, description="the version this one derives from, name:N")


class ReferenceInfo(BaseModel):
    """The reference data kept with the version (features plus the labels column, if any)."""

    file: str = REFERENCE_FILE
    rows: int
    columns: list[str]
    labels_column: str | None = None
    sha256: str
    profile: str | None = Field(
        None, description="file of the reference's TableProfile (monitoring), if stored"
    )


class PackageManifest(BaseModel):
    format_version: int = FORMAT_VERSION
    name: str
    description: str = ""
    flavor: FlavorSpec
    task: Task
    signature: Signature
    classes: list[Any] | None = None
    input_example: list[dict[str, Any]] | None = None
    requirements: dict[str, str] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    reference: ReferenceInfo | None = None

    def dump(self, directory: Path) -> str:
        """Write ``modelyard.yaml`` into ``directory``; returns the file's SHA-256."""
        text = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        data = text.encode("utf-8")
        (directory / MANIFEST_FILE).write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def read(cls, directory: Path, expected_sha256: str | None = None) -> PackageManifest:
        path = directory / MANIFEST_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CorruptArtifact(f"the package at {directory} has no {MANIFEST_FILE}") from None
        if expected_sha256 and hashlib.sha256(data).hexdigest() != expected_sha256:
            raise CorruptArtifact(
                f"{path} does not match the hash recorded at registration; "
                "the package was changed afterwards"
            )
        try:
            return cls.model_validate(yaml.safe_load(data))
        except (yaml.YAMLError, ValidationError) as exc:
            raise CorruptArtifact(f"{path} is not a valid manifest: {exc}") from None
