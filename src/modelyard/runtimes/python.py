"""Custom Python models: a class with ``setup``/``preprocess``/``predict``/``postprocess`` hooks.

The class's module file is copied into the package (``code/<module>.py``) and pinned by SHA-256,
as are the files it names in ``artifacts`` (``artifacts/<name>/<file>``). Loading imports that
copy under a unique module name, so nothing shadows or is shadowed by the user's own imports.
Only that one file is shipped: whatever else it imports must be installed where it is served.
"""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import sys
import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any, ClassVar, TypeGuard

import numpy as np

from modelyard.errors import ArtifactError, InvalidInput, first_line
from modelyard.runtimes._files import staged_copy
from modelyard.runtimes.base import Consent, ModelInput, Runtime, sha256_file, verify_file
from modelyard.types import FlavorSpec

CODE_DIR = "code"
ARTIFACTS_DIR = "artifacts"
DEFAULT_OUTPUT = "predict"


@dataclass(frozen=True)
class Context:
    """What ``setup`` gets: the model's folder in the package and its artifact files by name."""

    directory: Path
    artifacts: Mapping[str, Path]


class PythonModel(ABC):
    """Base class for a model written in Python; its hooks run in order for every request.

    ``setup(context)`` runs once at load; ``preprocess`` → ``predict`` → ``postprocess`` per
    request. ``predict`` gets a DataFrame (columnar signature) or a dict of arrays (tensors) and
    returns an array (output ``predict``) or a dict of arrays; written with ``yield``, it streams
    partial results. ``batch = False`` makes the server call it one request at a time.
    ``artifacts`` names files shipped with the model (paths relative to the class's .py file).
    Only the class is stored: attributes set on an instance are not kept, set them in ``setup``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> class Doubler(PythonModel):
    ...     def setup(self, context):
    ...         self.factor = 2.0
    ...     def predict(self, inputs):
    ...         return inputs.to_numpy() * self.factor
    >>> model = Doubler()
    >>> model.setup(Context(Path("."), {}))
    >>> model.predict(pd.DataFrame({"x": [1.0, 2.0]})).ravel().tolist()
    [2.0, 4.0]
    >>> import_model(Path("my_model.py:Doubler"), package_dir)  # doctest: +SKIP
    """

    batch: ClassVar[bool] = True
    artifacts: ClassVar[Mapping[str, str | Path]] = {}

    def setup(self, context: Context) -> None:
        """Load weights, open files, build lookups: runs once when the model is loaded."""
        del context  # nothing to set up unless a subclass says so

    def preprocess(self, inputs: Any) -> Any:
        """Turn request inputs into what ``predict`` takes; by default they pass unchanged."""
        return inputs

    @abstractmethod
    def predict(self, inputs: Any) -> Any:
        """An array, a dict of arrays, or a generator of either to stream partial results."""

    def postprocess(self, outputs: dict[str, np.ndarray]) -> Mapping[str, Any]:
        """Reshape or relabel the outputs of ``predict``; by default they pass unchanged."""
        return outputs


def split_class(path: Path) -> tuple[Path, str | None]:
    """``my_model.py:Doubler`` → ``(Path("my_model.py"), "Doubler")``; no suffix → ``None``."""
    head, sep, name = str(path).rpartition(":")
    if sep and head.lower().endswith(".py") and all(p.isidentifier() for p in name.split(".")):
        return Path(head), name
    return path, None


def save(model: PythonModel | type[PythonModel], directory: Path) -> FlavorSpec:
    """Copy the .py file that defines the model's class (and its artifacts) into the package."""
    cls = model if isinstance(model, type) else type(model)
    source = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__ or not source:
        raise InvalidInput(
            f"{cls.__qualname__} is defined in {cls.__module__} (a script, notebook or "
            f"function), which cannot be imported again; put the class in a .py file, import "
            f"it from there and register it, or register 'file.py:{cls.__name__}'"
        )
    path = Path(source)
    if path.suffix != ".py":
        raise InvalidInput(f"the source of {cls.__qualname__} is {path.name}, not a .py file")
    stem = path.stem if path.stem != "__init__" else cls.__module__.rpartition(".")[2]
    (directory / CODE_DIR).mkdir(exist_ok=True)
    with staged_copy(path, directory / CODE_DIR, f"{stem}.py") as target:
        return _pin(cls, target, path.parent, directory)


def import_file(path: Path, directory: Path, consent: Consent) -> FlavorSpec:
    """Copy ``file.py`` (or ``file.py:ClassName``) into the package, with its model class.

    The copy is imported to find the class, as the user's own code, under a unique module name.
    """
    del consent  # the user registers code they wrote; there is no foreign file to vouch for
    path, name = split_class(path)
    if not path.is_file():
        raise InvalidInput(f"model file not found: {path}")
    (directory / CODE_DIR).mkdir(exist_ok=True)
    with staged_copy(path, directory / CODE_DIR, f"{path.stem}.py") as target:
        module = _import(target, path.stem)
        try:
            return _pin(_find_class(module, name, path), target, path.parent, directory)
        finally:
            sys.modules.pop(module.__name__, None)


def load(directory: Path, spec: FlavorSpec) -> PythonRuntime:
    """Import the package's copy of the code, build the class and run its ``setup``."""
    path = verify_file(directory, spec)
    artifacts = {
        name: verify_file(directory, spec.model_copy(update=entry))
        for name, entry in spec.options.get("artifacts", {}).items()
    }
    module = _import(path, spec.options["module"])
    try:
        cls = _find_class(module, spec.options["class"], path)
    except InvalidInput as exc:  # at load time, a broken package rather than a bad request
        raise ArtifactError(str(exc)) from exc
    try:
        model = cls()
    except Exception as exc:
        raise ArtifactError(f"cannot create model class {cls.__qualname__}: {_why(exc)}") from exc
    try:
        model.setup(Context(directory, artifacts))
    except Exception as exc:
        raise ArtifactError(
            f"model class {cls.__qualname__} failed in setup(): {_why(exc)}"
        ) from exc
    return PythonRuntime(model)


class PythonRuntime(Runtime):
    """Runs a ``PythonModel``'s hooks; a generator ``predict`` is streamed or concatenated."""

    flavor = "python"
    takes_arrays = False  # user hooks receive a DataFrame, as written in their code

    def __init__(self, model: PythonModel) -> None:
        self.model = model

    @property
    def streams(self) -> bool:
        return inspect.isgeneratorfunction(type(self.model).predict)

    @property
    def batch(self) -> bool:
        return bool(self.model.batch)

    def predict(
        self, inputs: ModelInput, outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        """All outputs at once; streamed chunks are joined along the first axis per output."""
        result = self.model.predict(self.model.preprocess(inputs))
        if not inspect.isgenerator(result):
            return self._finish(result)
        chunks = [self._finish(chunk) for chunk in result]
        names = list(chunks[0]) if chunks else []
        if any(set(chunk) != set(names) for chunk in chunks):
            raise ArtifactError(
                f"model class {type(self.model).__qualname__} yielded chunks with different "
                f"outputs: {sorted({tuple(chunk) for chunk in chunks})}"
            )
        return {k: np.concatenate([np.atleast_1d(c[k]) for c in chunks]) for k in names}

    def stream(self, inputs: ModelInput) -> Iterator[dict[str, np.ndarray]]:
        """Each partial result as ``predict`` yields it, postprocessed; else the one result.

        ``preprocess`` and a plain ``predict`` run before this returns, so their errors do too.
        """
        result = self.model.predict(self.model.preprocess(inputs))
        chunks = result if inspect.isgenerator(result) else iter([result])
        return map(self._finish, chunks)

    def _finish(self, chunk: Any) -> dict[str, np.ndarray]:
        return _outputs(self.model.postprocess(_outputs(chunk)))


def _outputs(result: Any) -> dict[str, np.ndarray]:
    if isinstance(result, Mapping):
        return {str(name): np.asarray(value) for name, value in result.items()}
    return {DEFAULT_OUTPUT: np.asarray(result)}


def _pin(cls: type[PythonModel], code: Path, origin: Path, directory: Path) -> FlavorSpec:
    """The spec pinning ``code`` and the class's artifacts, copied from next to ``origin``."""
    pinned: dict[str, dict[str, str]] = {}
    for name, file in dict(cls.artifacts).items():
        source = origin / file
        if not name.isidentifier():
            raise InvalidInput(f"artifact name {name!r} of {cls.__qualname__} is not an identifier")
        if not source.is_file():
            raise InvalidInput(f"artifact {name!r} of {cls.__qualname__} not found: {source}")
        copy = directory / ARTIFACTS_DIR / name / source.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
        pinned[name] = {"file": copy.relative_to(directory).as_posix(), "sha256": sha256_file(copy)}
    return FlavorSpec(
        name="python",
        serialization="python-source",
        file=code.relative_to(directory).as_posix(),
        sha256=sha256_file(code),
        options={"module": code.stem, "class": cls.__qualname__, "artifacts": pinned},
    )


class _SourceOnlyLoader(SourceFileLoader):
    """Compiles the .py itself: a ``__pycache__`` is neither trusted (unpinned) nor written."""

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


def _import(path: Path, stem: str) -> ModuleType:
    """Run ``path`` as a fresh module named ``modelyard_code_<stem>_<random>``."""
    name = f"modelyard_code_{stem}_{uuid.uuid4().hex[:12]}"
    loader = _SourceOnlyLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None  # never None when a loader is given
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look classes up by module name
    try:
        loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ArtifactError(f"importing {path.name} failed: {_why(exc)}") from exc
    return module


def _find_class(module: ModuleType, name: str | None, path: Path) -> type[PythonModel]:
    """The class called ``name`` in ``module``, or its only ``PythonModel`` subclass."""
    if name is None:
        found = [
            c for c in vars(module).values() if _is_model(c) and c.__module__ == module.__name__
        ]
        if not found:
            raise InvalidInput(
                f"{path.name} defines no PythonModel subclass with a predict(); "
                f"see modelyard.runtimes.python.PythonModel"
            )
        if len(found) > 1:
            raise InvalidInput(
                f"{path.name} defines several PythonModel subclasses: "
                f"{', '.join(c.__name__ for c in found)}; pick one as {path}:{found[0].__name__}"
            )
        return found[0]
    obj: Any = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if not _is_model(obj):
        raise InvalidInput(
            f"{path.name} has no PythonModel subclass with a predict() named {name!r}"
        )
    return obj


def _is_model(obj: object) -> TypeGuard[type[PythonModel]]:
    return isinstance(obj, type) and issubclass(obj, PythonModel) and not inspect.isabstract(obj)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(str(exc))}"
