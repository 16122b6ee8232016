"""Copying a model file into a package so that only the stored copy is checked and pinned."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelyard.runtimes.base import sha256_file
from modelyard.types import FlavorSpec


@contextmanager
def staged_copy(source: Path, directory: Path, name: str) -> Iterator[Path]:
    """Copy ``source`` to ``directory/name``; the copy is removed if the block raises.

    Checks run on the copy, not the source, so the file that passed them is the one pinned.
    """
    target = directory / name
    shutil.copyfile(source, target)
    try:
        yield target
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def pinned_spec(
    name: str, serialization: str, path: Path, options: dict[str, Any] | None = None
) -> FlavorSpec:
    """A FlavorSpec for ``path`` (a file directly inside the package folder), hash included."""
    return FlavorSpec(
        name=name,
        serialization=serialization,
        file=path.name,
        sha256=sha256_file(path),
        options=options or {},
    )

