from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from modelyard.registry import PackageManifest, Registry, VersionInfo
from modelyard.types import FlavorSpec, Signature, Task, TensorSpec

RegisterFn = Callable[..., VersionInfo]


def package(directory: Path, name: str, description: str = "") -> tuple[PackageManifest, str]:
    """A package folder with a manifest and a small stand-in model file: the catalog stores
    packages without opening models, so these tests need no real model."""
    (directory / "model").mkdir(parents=True)
    (directory / "model" / "model.bin").write_bytes(b"weights")
    manifest = PackageManifest(
        name=name,
        description=description,
        flavor=FlavorSpec(name="sklearn", serialization="skops", file="model.bin", sha256="0" * 64),
        task=Task.REGRESSION,
        signature=Signature(inputs=[TensorSpec(name="x", datatype="FP64", shape=[-1])]),
    )
    return manifest, manifest.dump(directory)


@pytest.fixture
def add_version(registry: Registry, tmp_path: Path) -> RegisterFn:
    counter = itertools.count()

    def add(name: str, **kwargs: object) -> VersionInfo:
        folder = tmp_path / f"pkg{next(counter)}"
        manifest, digest = package(folder, name)
        return registry.create_version(folder, manifest, digest, **kwargs)  # type: ignore[arg-type]

    return add
