"""The artifact store: one folder per version under a root that any fsspec URL can name.

A version's folder is named by a random id, not its number, and is complete before the
database row that makes it visible is written; a registration that dies half-way leaves at
most an unreferenced folder, which :meth:`ArtifactStore.orphans` finds.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from modelyard.errors import CorruptArtifact, StorageError

_STAGING = ".staging"


class ArtifactStore:
    def __init__(self, uri: str, cache_dir: Path | None = None) -> None:
        self.uri = uri
        self.fs, self.root = fsspec.core.url_to_fs(uri)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.cache_dir = cache_dir

    def put(self, model_name: str, source: Path) -> str:
        """Copy a finished package folder into the store; returns its URI."""
        key = uuid.uuid4().hex
        final = f"{self.root}/{model_name}/{key}"
        staging = f"{self.root}/{_STAGING}/{key}"
        try:
            self.fs.makedirs(f"{self.root}/{model_name}", exist_ok=True)
            self.fs.makedirs(f"{self.root}/{_STAGING}", exist_ok=True)
            self.fs.put(str(source), staging, recursive=True)
            self.fs.mv(staging, final, recursive=True)
        except OSError as exc:
            raise StorageError(f"cannot write to the artifact store {self.uri}: {exc}") from None
        return self._uri(final)

    def open_dir(self, uri: str) -> Path:
        """A local folder with the package's files (downloaded into the cache when remote)."""
        fs, path = fsspec.core.url_to_fs(uri)
        if isinstance(fs, LocalFileSystem):
            local = Path(path)
            if not local.is_dir():
                raise CorruptArtifact(f"the package folder {local} is missing from the store")
            return local
        if self.cache_dir is None:
            raise StorageError("a remote artifact store needs a local cache folder")
        target = self.cache_dir / Path(path).name
        if not target.is_dir():
            # Each process downloads into its own folder and renames it into place, so two
            # processes loading the same version never see each other's half-copied files.
            partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.part")
            try:
                fs.get(path, str(partial), recursive=True)
                partial.rename(target)
            except FileNotFoundError:
                raise CorruptArtifact(f"the package {uri} is missing from the store") from None
            except OSError as exc:
                if not target.is_dir():  # not a lost race with another process
                    raise StorageError(f"cannot fetch the package {uri}: {exc}") from None
            finally:
                shutil.rmtree(partial, ignore_errors=True)
        return target

    def remove(self, uri: str) -> None:
        fs, path = fsspec.core.url_to_fs(uri)
        if fs.exists(path):
            fs.rm(path, recursive=True)

    def orphans(self, referenced: set[str], min_age_s: float = 0.0) -> list[str]:
        """Package folders (and unfinished staging copies) that no version row points at and
        that were last written at least ``min_age_s`` ago."""
        found: list[str] = []
        cutoff = time.time() - min_age_s
        if not self.fs.exists(self.root):
            return found
        for model_dir in self.fs.ls(self.root, detail=False):
            for package in self.fs.ls(model_dir, detail=False):
                if self.fs.isdir(package):
                    uri = self._uri(package)
                    if uri not in referenced and self._modified(package) <= cutoff:
                        found.append(uri)
        return sorted(found)

    def _modified(self, path: str) -> float:
        times = [self.fs.modified(path).timestamp()] if self.local else []
        for entry in self.fs.find(path):
            times.append(self.fs.modified(entry).timestamp())
        return max(times, default=0.0)

    def _uri(self, path: str) -> str:
        return path if self.local else self.fs.unstrip_protocol(path)
