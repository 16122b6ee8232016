"""``modelyard register``: a model file or MLflow folder becomes the next version of a model."""

from __future__ import annotations

from pathlib import Path

import typer

from modelyard.cli._common import JSON_OPTION, console, parse_pairs, print_json, settings


def register(
    ctx: typer.Context,
    model: Path = typer.Argument(
        ..., help="A .skops, .onnx, XGBoost .json/.ubj or LightGBM .txt file, or an MLflow model "
        "folder; .pkl/.joblib only with --trust-pickle --sha256.",
        show_default=False,
    ),
    name: str = typer.Option(..., "--name", "-n", help="Model name; versions count up from 1."),
    reference: Path | None = typer.Option(
        None, "--reference", "-r", help="Reference data (Parquet, CSV, JSON lines): the "
        "training or validation table, kept with the version."
    ),
    labels_column: str | None = typer.Option(
        None, "--labels-column", "-y", help="The column of --reference holding the labels."
    ),
    task: str | None = typer.Option(
        None, "--task", help="classification, regression or other (inferred when left out)."
    ),
    alias: str | None = typer.Option(None, "--alias", help="Point this alias at the new version."),
    description: str = typer.Option("", "--description", help="Free text kept with the version."),
    tag: list[str] = typer.Option([], "--tag", help="key=value; repeat for more."),
    parent: str | None = typer.Option(
        None, "--parent", help="The version this one derives from (name:N or name@alias)."
    ),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle", help="Allow a pickle/joblib file (it can run code when loaded)."
    ),
    sha256: str | None = typer.Option(
        None, "--sha256", help="The pickle's expected SHA-256; required with --trust-pickle."
    ),
    trust_type: list[str] = typer.Option(
        [], "--trust-type", help="A skops type you reviewed and accept; repeat for more."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register a model as the next version of NAME."""
    from modelyard.api import register as register_model

    version = register_model(
        model,
        name,
        reference=reference,
        labels_column=labels_column,
        task=task,
        alias=alias,
        description=description,
        tags=parse_pairs(tag, "tag"),
        parent=parent,
        trust_pickle=trust_pickle,
        sha256=sha256,
        trusted_types=trust_type,
        settings=settings(ctx),
    )
    if as_json:
        print_json(version.as_dict())
        return
    manifest = version.manifest
    console.print(
        f"registered {version.ref} ({version.flavor}, {version.task}, "
        f"{len(manifest['signature']['inputs'])} inputs)"
        + (f" as {version.name}@{alias}" if alias else "")
    )
    metrics = manifest["provenance"]["metrics"]
    if metrics:
        console.print(
            "reference metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        )
