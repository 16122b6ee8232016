"""The model registry: versioned packages, aliases, tags, signatures, provenance, audit."""

from modelyard.registry.artifacts import ArtifactStore
from modelyard.registry.catalog import ModelInfo, Registry, VersionInfo
from modelyard.registry.manifest import PackageManifest, Provenance, ReferenceInfo
from modelyard.registry.refs import ModelRef

__all__ = [
    "ArtifactStore",
    "ModelInfo",
    "ModelRef",
    "PackageManifest",
    "Provenance",
    "ReferenceInfo",
    "Registry",
    "VersionInfo",
]
