"""scikit-learn estimators: skops archives, or pickle/joblib files the user vouched for.

skops stores an estimator as data and, on load, builds only types it trusts; anything else
(say a tree's node array, which a crafted file could point out of bounds) must be reviewed and
named by the user. The trusted list is kept in ``spec.options["trusted_types"]``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelyard.errors import (
    ArtifactError,
    CorruptArtifact,
    InvalidInput,
    UnknownFormat,
    UnsafeFormat,
    first_line,
)
from modelyard.runtimes import _pickle
from modelyard.runtimes._estimator import EstimatorRuntime
from modelyard.runtimes._files import pinned_spec, staged_copy
from modelyard.runtimes.base import Consent, verify_file
from modelyard.types import FlavorSpec

SKOPS_FILE = "model.skops"


def save(model: Any, directory: Path) -> FlavorSpec:
    """Write a fitted estimator as ``model.skops``.

    The object already lives in this process, so the types it is made of are trusted as is.
    """
    import skops.io
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError as exc:
        raise InvalidInput(
            f"the {type(model).__name__} is not fitted; call fit() before registering it"
        ) from exc
    except TypeError as exc:  # check_is_fitted's answer for objects without fit()
        raise UnknownFormat(f"a {type(model).__name__} is not a scikit-learn estimator") from exc
    target = directory / SKOPS_FILE
    skops.io.dump(model, target)
    trusted = skops.io.get_untrusted_types(file=target)
    return pinned_spec("sklearn", "skops", target, {"trusted_types": sorted(trusted)})


def import_file(path: Path, directory: Path, consent: Consent) -> FlavorSpec:
    """Copy a ``.skops``, ``.pkl``/``.pickle`` or ``.joblib`` file into the package."""
    suffix = path.suffix.lower()
    if suffix == ".skops":
        return import_skops(path, directory, consent)
    if suffix in _pickle.SUFFIXES:
        return import_pickle(path, directory, consent, _pickle.SUFFIXES[suffix])
    raise UnknownFormat(
        f"{path.name} is not a scikit-learn model file; expected .skops, or .pkl/.pickle/.joblib "
        f"with --trust-pickle"
    )


def import_skops(
    path: Path, directory: Path, consent: Consent, declared: Sequence[str] = ()
) -> FlavorSpec:
    """Accept a skops archive if every type it needs is trusted by skops or by the user.

    ``declared`` lists types the file's author claims are safe (an MLflow ``MLmodel`` does);
    they are only mentioned in the error, since they come from the same untrusted source.
    """
    import skops.io

    with staged_copy(path, directory, SKOPS_FILE) as target:
        try:
            untrusted = skops.io.get_untrusted_types(file=target)
        except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
            raise CorruptArtifact(
                f"{path} is not a valid skops archive ({first_line(str(exc))}); "
                f"re-save the model with skops.io.dump"
            ) from exc
        refused = sorted(set(untrusted) - set(consent.trusted_types))
        if refused:
            flags = " ".join(f"--trust-type {name}" for name in refused)
            claim = (
                " (the MLmodel file lists them as trusted, but that comes with the file)"
                if set(refused) & set(declared)
                else ""
            )
            raise UnsafeFormat(
                f"{path} contains types skops does not trust by default: "
                f"{', '.join(refused)}{claim}; review what they do and, if you trust the "
                f"file's origin, pass {flags}"
            )
        return pinned_spec("sklearn", "skops", target, {"trusted_types": sorted(untrusted)})


def import_pickle(path: Path, directory: Path, consent: Consent, serialization: str) -> FlavorSpec:
    """Accept a pickle/joblib file only with ``--trust-pickle`` and its exact SHA-256."""
    expected = _pickle.require_consent(path, consent)
    name = "model.joblib" if serialization == "joblib" else "model.pkl"
    with staged_copy(path, directory, name) as target:
        digest = _pickle.check_hash(path, target, expected)
        return pinned_spec("sklearn", serialization, target, {"trusted_sha256": digest})


def load(directory: Path, spec: FlavorSpec) -> EstimatorRuntime:
    """The estimator in a package, after checking its file against the pinned hash."""
    path = verify_file(directory, spec)
    if spec.serialization == "skops":
        model = _load_skops(path, spec.options.get("trusted_types", []))
    elif spec.serialization in ("pickle", "joblib"):
        if spec.options.get("trusted_sha256") != spec.sha256:
            raise UnsafeFormat(
                f"{spec.file} is a pickle without a recorded --trust-pickle consent for its "
                f"hash; register it again with --trust-pickle --sha256 <hex>"
            )
        model = _pickle.unpickle(path, spec.serialization)
    else:
        raise UnknownFormat(
            f"unknown scikit-learn serialization {spec.serialization!r}; "
            f"expected skops, pickle or joblib"
        )
    if not callable(getattr(model, "predict", None)):
        raise ArtifactError(
            f"{spec.file} holds a {type(model).__name__}, which has no predict(); "
            f"register a fitted estimator or pipeline"
        )
    return EstimatorRuntime(model)


def _load_skops(path: Path, trusted: list[str]) -> Any:
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        return skops.io.load(path, trusted=list(trusted))
    except UntrustedTypesFoundException as exc:
        raise UnsafeFormat(
            f"{path.name} needs types that were not trusted at registration "
            f"({first_line(str(exc))}); register it again with --trust-type for each"
        ) from exc
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise CorruptArtifact(f"cannot load {path.name}: {first_line(str(exc))}") from exc
