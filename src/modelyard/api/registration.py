"""Registering a model: from an estimator or a file to a stored, numbered, audited version.

The package is assembled in a temporary folder — model file, reference data, manifest — and
checked end to end (the model is loaded back and run on the reference) before the registry
stores it, so a version that exists is a version that loads and predicts.
"""

from __future__ import annotations

import contextlib
import platform
import tempfile
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard import runtimes
from modelyard.api.tables import read_table, records
from modelyard.api.workspace import open_registry
from modelyard.errors import InvalidInput, ReferenceMismatch, first_line
from modelyard.monitoring.profile import profile_table
from modelyard.registry import ModelRef, PackageManifest, Provenance, ReferenceInfo, VersionInfo
from modelyard.registry.manifest import MODEL_DIR, PROFILE_FILE, REFERENCE_FILE
from modelyard.registry.provenance import baseline_metrics, git_state, sha256_bytes
from modelyard.registry.refs import check_name
from modelyard.registry.signature import columns_signature, output_specs, placeholder, to_frame
from modelyard.runtimes.base import Consent, Runtime, sha256_file
from modelyard.settings import Settings
from modelyard.types import Signature, Task, TensorSpec

DEFAULT_LABELS_COLUMN = "label"


def register(
    model: Any,
    name: str,
    *,
    reference: pd.DataFrame | np.ndarray | str | Path | None = None,
    labels: Sequence[Any] | np.ndarray | pd.Series | None = None,
    labels_column: str | None = None,
    task: Task | str | None = None,
    alias: str | None = None,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    input_example: pd.DataFrame | np.ndarray | None = None,
    signature: Signature | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    parent: str | None = None,
    data_uri: str | None = None,
    data_sha256: str | None = None,
    trust_pickle: bool = False,
    sha256: str | None = None,
    trusted_types: Sequence[str] = (),
    settings: Settings | None = None,
) -> VersionInfo:
    """Register ``model`` (an estimator, or the path of a model file or MLflow folder) as the
    next version of ``name``.

    ``reference`` is the data the model was trained or validated on (a DataFrame, an array, or
    a Parquet/CSV path); its labels come from ``labels`` or its ``labels_column``. It fixes the
    signature, is checked against the model, and is kept with the version for monitoring.
    ``data_uri`` and ``data_sha256`` name the training data in the provenance when it is not
    the reference file itself (a retrain's training set, say); ``parent`` is the version this
    one derives from.

    Examples
    --------
    >>> from sklearn.datasets import load_wine
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_wine(return_X_y=True, as_frame=True)
    >>> clf = LogisticRegression(max_iter=5000).fit(X, y)
    >>> v = register(clf, "wine", reference=X, labels=y)  # doctest: +SKIP
    """
    name = check_name(name)
    settings = settings or Settings.load()
    registry = open_registry(settings)
    if parent:
        parent = registry.get_version(ModelRef.parse(parent)).ref
    consent = Consent(trust_pickle=trust_pickle, sha256=sha256, trusted_types=tuple(trusted_types))
    source = Path(model) if isinstance(model, str | Path) else model

    with tempfile.TemporaryDirectory(prefix="modelyard-") as tmp:
        package = Path(tmp)
        (package / MODEL_DIR).mkdir()
        flavor = runtimes.import_model(source, package / MODEL_DIR, consent)
        runtime = runtimes.load_runtime(package / MODEL_DIR, flavor)

        data_sha = data_sha256
        frame: pd.DataFrame | None = None
        if isinstance(reference, str | Path):
            path = Path(reference)
            frame = read_table(path)
            data_uri = data_uri or path.resolve().as_uri()
            data_sha = data_sha or sha256_file(path)
        elif reference is not None:
            frame = _as_frame(reference, runtime)
        features, y, labels_name = _split_labels(frame, labels, labels_column)
        if features is not None:
            features = _check_against_model(features, runtime)

        sig = signature or _signature(features, input_example, runtime, flavor.options)
        sample_source: Any = features if features is not None else input_example
        if sample_source is None:
            sample_source = placeholder(sig)
        sample = to_frame(sample_source, sig) if sig.columnar else sample_source
        if isinstance(sample, pd.DataFrame):
            sample = sample.head(settings.registry.sample_rows)
        outputs = _predict(runtime, sample)
        sig = sig.model_copy(update={"outputs": sig.outputs or output_specs(outputs)})

        the_task = _task(task, runtime, y, outputs)
        metric_values: dict[str, float] = {}
        if y is not None and features is not None:
            full = outputs if len(features) <= settings.registry.sample_rows else _predict(
                runtime, to_frame(features, sig)
            )
            metric_values = baseline_metrics(the_task, y.to_numpy(), full, runtime.classes)
        metric_values.update({k: float(v) for k, v in (metrics or {}).items()})

        reference_info = None
        if features is not None:
            stored = features.copy()
            if y is not None:
                stored[labels_name] = y.to_numpy()
            stored.to_parquet(package / REFERENCE_FILE, index=False)
            data = (package / REFERENCE_FILE).read_bytes()
            (package / PROFILE_FILE).write_bytes(profile_table(stored).to_bytes())
            reference_info = ReferenceInfo(
                profile=PROFILE_FILE,
                rows=len(stored),
                columns=[str(c) for c in stored.columns],
                labels_column=labels_name if y is not None else None,
                sha256=sha256_bytes(data),
            )
            data_sha = data_sha or reference_info.sha256

        example = features if features is not None else input_example
        manifest = PackageManifest(
            name=name,
            description=description,
            flavor=flavor,
            task=the_task,
            signature=sig,
            classes=runtime.classes,
            input_example=(
                records(example.head(settings.registry.example_rows))
                if isinstance(example, pd.DataFrame)
                else None
            ),
            requirements=_requirements(flavor),
            provenance=Provenance(
                data_uri=data_uri,
                data_sha256=data_sha,
                parameters={**runtime.params(), **dict(params or {})},
                metrics=metric_values,
                parent=parent,
                **git_state(),
            ),
            reference=reference_info,
        )
        digest = manifest.dump(package)
        return registry.create_version(
            package, manifest, digest, tags=dict(tags or {}), alias=alias
        )


def _as_frame(data: pd.DataFrame | np.ndarray, runtime: Runtime) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    array = np.asarray(data)
    if array.ndim != 2:
        raise InvalidInput(f"reference data must be a 2-D table; got {array.ndim} dimensions")
    names = runtime.feature_names or [f"f{i}" for i in range(array.shape[1])]
    if len(names) != array.shape[1]:
        raise ReferenceMismatch(
            f"reference data has {array.shape[1]} columns, the model takes {len(names)}"
        )
    return pd.DataFrame(array, columns=names)


def _split_labels(
    frame: pd.DataFrame | None,
    labels: Sequence[Any] | np.ndarray | pd.Series | None,
    labels_column: str | None,
) -> tuple[pd.DataFrame | None, pd.Series | None, str]:
    if frame is None:
        if labels is not None or labels_column:
            raise InvalidInput("labels were given without reference data to go with them")
        return None, None, DEFAULT_LABELS_COLUMN
    if len(frame) == 0:
        raise InvalidInput("the reference data has no rows")
    if labels_column:
        if labels_column not in frame.columns:
            raise ReferenceMismatch(
                f"labels column {labels_column!r} is not in the reference data; "
                f"its columns: {', '.join(map(str, frame.columns))}"
            )
        if labels is not None:
            raise InvalidInput("give labels either as an array or as a column, not both")
        return frame.drop(columns=[labels_column]), frame[labels_column].reset_index(drop=True), \
            labels_column
    if labels is None:
        return frame, None, DEFAULT_LABELS_COLUMN
    series = labels if isinstance(labels, pd.Series) else pd.Series(np.asarray(labels))
    if len(series) != len(frame):
        raise ReferenceMismatch(
            f"{len(series)} labels were given for {len(frame)} reference rows"
        )
    name = str(series.name) if series.name is not None else DEFAULT_LABELS_COLUMN
    if name in frame.columns:
        raise ReferenceMismatch(f"the labels' name {name!r} is also a feature column")
    return frame, series.reset_index(drop=True), name


def _check_against_model(features: pd.DataFrame, runtime: Runtime) -> pd.DataFrame:
    """The reference features in the model's own column order, or a clear mismatch error."""
    known = runtime.feature_names
    if known is not None:
        columns = [str(c) for c in features.columns]
        missing = [c for c in known if c not in columns]
        extra = [c for c in columns if c not in known]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"lacks column(s) the model was trained on: {', '.join(missing)}")
            if extra:
                parts.append(
                    f"has column(s) the model does not take: {', '.join(extra)} "
                    "(if one is the label, pass --labels-column)"
                )
            raise ReferenceMismatch("the reference data " + "; ".join(parts))
        return features[list(known)]
    expected = runtime.n_features
    if expected is not None and features.shape[1] != expected:
        raise ReferenceMismatch(
            f"the reference data has {features.shape[1]} feature columns, the model takes "
            f"{expected} (if one of them is the label, pass --labels-column)"
        )
    return features


_MLFLOW_TYPES = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "binary": "BYTES",
}


def _signature(
    features: pd.DataFrame | None,
    example: pd.DataFrame | np.ndarray | None,
    runtime: Runtime,
    options: Mapping[str, Any],
) -> Signature:
    if features is not None:
        return Signature(inputs=columns_signature(features))
    if isinstance(example, pd.DataFrame):
        return Signature(inputs=columns_signature(example))
    mlflow_inputs = (options.get("mlflow_signature") or {}).get("inputs")
    if mlflow_inputs and all(
        item.get("name") and item.get("type") in _MLFLOW_TYPES for item in mlflow_inputs
    ):
        return Signature(
            inputs=[
                TensorSpec(name=item["name"], datatype=_MLFLOW_TYPES[item["type"]], shape=[-1])
                for item in mlflow_inputs
            ]
        )
    native = runtime.native_signature()
    if native is not None:
        return native
    raise InvalidInput(
        "cannot infer the model's signature: pass reference data (--reference) or an input example"
    )


def _predict(runtime: Runtime, data: Any) -> dict[str, np.ndarray]:
    try:
        return runtime.predict(data)
    except Exception as exc:  # the model's own error: report it as a data mismatch
        message = first_line(str(exc)) or type(exc).__name__
        raise ReferenceMismatch(f"the model failed on the reference data: {message}") from exc


def _task(
    given: Task | str | None,
    runtime: Runtime,
    y: pd.Series | None,
    outputs: Mapping[str, np.ndarray],
) -> Task:
    if given is not None:
        try:
            return Task(given)
        except ValueError:
            raise InvalidInput(
                f"task {given!r} is unknown; use one of {', '.join(t.value for t in Task)}"
            ) from None
    if runtime.task is not None:
        return runtime.task
    predicted = outputs.get("predict")
    if predicted is not None and predicted.dtype.kind == "f":
        return Task.REGRESSION
    if y is not None and y.dtype.kind == "f":
        return Task.REGRESSION
    return Task.OTHER


def _requirements(flavor: Any) -> dict[str, str]:
    found = {"python": platform.python_version()}
    with contextlib.suppress(PackageNotFoundError):
        found["modelyard"] = version("modelyard")
    found.update(runtimes.requirements(flavor))
    return found
