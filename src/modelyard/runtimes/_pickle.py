"""Pickle and joblib files: accepted only for the exact content the user vouched for.

Unpickling runs whatever code the file names, so a pickle is never opened unless the user
passed ``--trust-pickle`` together with the file's SHA-256, and the stored copy still has it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from modelyard.errors import ArtifactError, CorruptArtifact, MissingExtra, UnsafeFormat, first_line
from modelyard.runtimes.base import Consent, sha256_file

SUFFIXES: dict[str, str] = {".pkl": "pickle", ".pickle": "pickle", ".joblib": "joblib"}


def require_consent(source: Path, consent: Consent) -> str:
    """The SHA-256 the user pinned for ``source``, or ``UnsafeFormat`` saying what is missing."""
    if not consent.trust_pickle:
        raise UnsafeFormat(
            f"{source} is a pickle, and unpickling runs arbitrary code from the file on load, "
            f"so it is refused by default; after checking where the file comes from, pass "
            f"--trust-pickle --sha256 <hex> with the SHA-256 you expect (sha256sum prints it), "
            f"or re-save the model with skops or ONNX"
        )
    if not consent.sha256:
        raise UnsafeFormat(
            f"--trust-pickle for {source} also needs --sha256 <hex>, the file's SHA-256, so that "
            f"only the content you checked is ever unpickled"
        )
    return consent.sha256.strip().lower()


def check_hash(source: Path, copy: Path, expected: str) -> str:
    """The SHA-256 of ``copy`` if it is ``expected``; ``source`` is only named in the message."""
    actual = sha256_file(copy)
    if actual != expected:
        raise UnsafeFormat(
            f"{source} has SHA-256 {actual}, not the {expected} given with --sha256; "
            f"it is not the file you checked, so it is refused"
        )
    return actual


def unpickle(path: Path, serialization: str) -> Any:
    """The object in a pickle or joblib file, which the caller has already verified."""
    try:
        if serialization == "joblib":
            import joblib

            return joblib.load(path)
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "cloudpickle":
            raise MissingExtra("cloudpickle", "mlflow", "loading this cloudpickled model") from exc
        raise ArtifactError(
            f"the pickled model {path.name} needs the Python module {exc.name!r}, which is not "
            f"installed; install the package that provides it and load again"
        ) from exc
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
        raise CorruptArtifact(
            f"cannot unpickle {path.name}: {first_line(str(exc))}; it may be truncated or "
            f"written by incompatible library versions"
        ) from exc
