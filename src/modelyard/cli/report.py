"""``modelyard report``: drift, data quality and performance of a current table vs a reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelyard.cli._common import console, err_console, parse_pairs, settings
from modelyard.errors import InvalidInput


def report(
    ctx: typer.Context,
    current: Path | None = typer.Option(
        None, "--current", "-c", help="The table to check (Parquet or CSV); or use --since.",
        show_default=False,
    ),
    since: str | None = typer.Option(
        None, "--since", help="Instead of --current: the live windows of --model served in "
        "this span (24h, 30m, 7d or an ISO time), from the stored window profiles.",
    ),
    reference: Path | None = typer.Option(
        None, "--reference", "-r", help="The table to compare with (Parquet or CSV); defaults "
        "to the reference stored with --model."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="name, name@alias or name:N: score both tables with it and "
        "add its predictions and probabilities to the report."
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the report as JSON to this file ('-' for standard output)."
    ),
    html_out: Path | None = typer.Option(
        None, "--html", help="Write a self-contained HTML report to this file."
    ),
    fail_on_drift: bool = typer.Option(
        False, "--fail-on-drift", help="Exit with status 1 when dataset drift is detected."
    ),
    target: str | None = typer.Option(None, "--target", help="The labels column, if any."),
    prediction: str | None = typer.Option(
        None, "--prediction", help="The column of the model's predictions, if any."
    ),
    probability: list[str] = typer.Option(
        [], "--probability", help="CLASS=COLUMN: a class probability column; repeat per class."
    ),
    task: str | None = typer.Option(
        None, "--task", help="classification or regression (inferred when left out)."
    ),
    method: str | None = typer.Option(
        None, "--method", help="One drift method for every column (ks, wasserstein, psi, "
        "jensenshannon, hellinger, linf, chisquare); default per column kind."
    ),
    column_method: list[str] = typer.Option(
        [], "--column-method", help="COLUMN=METHOD for one column; repeat for more."
    ),
    alpha: float = typer.Option(0.01, "--alpha", help="False-alarm rate per column."),
    drift_share: float = typer.Option(
        0.5, "--drift-share", help="Share of drifted features that counts as dataset drift."
    ),
    min_effect: float = typer.Option(
        0.0, "--min-effect", help="A score below which a significant shift is not drift."
    ),
    quality_rules: Path | None = typer.Option(
        None, "--quality-rules", help="YAML overrides of the quality rules learned from the "
        "reference."
    ),
    ignore: list[str] = typer.Option([], "--ignore", help="A column to leave out; repeatable."),
    multivariate: bool = typer.Option(
        True, "--multivariate/--no-multivariate", help="Run the multivariate drift checks."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling and calibration."),
) -> None:
    """Compare a current table with a reference: drift per column, quality, performance.

    The current side is a table (--current) or the live traffic a model version served
    (--model m@alias --since 24h), read from the window profiles `modelyard serve` stored.
    """
    from modelyard.api.reporting import report as build
    from modelyard.live.reports import window_report
    from modelyard.monitoring.html import render_html
    from modelyard.monitoring.quality import load_overrides
    from modelyard.monitoring.report import ReportOptions, Roles

    if (current is None) == (since is None):
        raise InvalidInput("give either --current TABLE or --model NAME --since SPAN")
    if since is not None and (model is None or reference is not None):
        raise InvalidInput("--since reports on a model's live windows against its stored "
                           "reference: give --model and no --reference")
    if task is not None and task not in ("classification", "regression"):
        raise InvalidInput(f"--task must be classification or regression, not {task!r}")
    options = ReportOptions(
        method=method, methods=parse_pairs(column_method, "--column-method"), alpha=alpha,
        drift_share=drift_share, min_effect=min_effect, seed=seed, ignore=tuple(ignore),
        multivariate=multivariate,
        quality=load_overrides(quality_rules) if quality_rules else None,
    )
    roles = Roles(target=target, prediction=prediction,
                  probabilities=parse_pairs(probability, "--probability"), task=task)
    with _ProgressBar() as bar:
        if since is not None:
            assert model is not None
            result = window_report(model, since, settings=settings(ctx), options=options,
                                   progress=bar)
        else:
            result = build(current, reference, model=model, roles=roles, options=options,
                           settings=settings(ctx), progress=bar)
    data = result.to_dict()
    if json_out is not None:
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False, default=str)
        if str(json_out) == "-":
            typer.echo(text)
        else:
            json_out.write_text(text + "\n", encoding="utf-8")
    if html_out is not None:
        html_out.write_text(render_html(data), encoding="utf-8")
    if json_out is None or str(json_out) != "-":
        _print_summary(data, json_out, html_out)
    if fail_on_drift and result.dataset_drift:
        raise typer.Exit(1)


class _ProgressBar:
    """A Rich progress bar on standard error, one task per step, gone when done."""

    def __enter__(self) -> _ProgressBar:
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err_console, transient=True,
        )
        self.bar.__enter__()
        self.tasks: dict[str, Any] = {}
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def __call__(self, step: str, done: int, total: int | None) -> None:
        if step not in self.tasks:
            self.tasks[step] = self.bar.add_task(step, total=total)
        self.bar.update(self.tasks[step], completed=done, total=total)


def _print_summary(data: dict[str, Any], json_out: Path | None, html_out: Path | None) -> None:
    ref, cur = data["reference"], data["current"]
    console.print(f"reference {ref['source']} ({ref['rows']:,} rows) vs current "
                  f"{cur['source']} ({cur['rows']:,} rows)")
    table = Table(show_edge=False, pad_edge=False)
    for header in ("column", "kind", "method", "score", "threshold", "drift", "quality"):
        table.add_column(header, justify="right" if header in ("score", "threshold") else "left")
    for column in data["columns"]:
        table.add_row(
            column["name"], column["kind"], column["method"] or "—", _fmt(column["score"]),
            _fmt(column["threshold"]),
            "not computed" if column.get("note") else ("DRIFT" if column["drift_detected"]
                                                       else "ok"),
            str(len(column["quality"])) if column["quality"] else "",
        )
    console.print(table)
    for result in data.get("multivariate", []):
        if result.get("score") is None:
            console.print(f"multivariate {result['method']}: not computed "
                          f"({result.get('note', '')})", markup=False)
            continue
        console.print(
            f"multivariate {result['method']}: "
            + ("DRIFT" if result.get("drift_detected") else "ok")
            + f" (score {_fmt(result.get('score'))}, threshold {_fmt(result.get('threshold'))})"
        )
    findings = [f for c in data["columns"] for f in c["quality"]] + data.get("quality", [])
    for finding in findings[:20]:
        console.print(f"{finding['severity']}: {finding['message']}", markup=False)
    if len(findings) > 20:
        console.print(f"… and {len(findings) - 20} more quality findings")
    performance = data.get("performance")
    if performance:
        realised = performance.get("realised") or {}
        estimated = performance.get("estimated") or {}
        if realised:
            console.print("realised: " + ", ".join(
                f"{k}={_fmt(v)}" for k, v in realised.items() if k not in ("rows", "notes")))
        if estimated:
            console.print("estimated (no labels needed): " + ", ".join(
                f"{k}={_fmt(v['value'])}" for k, v in estimated.items()))
    verdict = "DATASET DRIFT" if data["dataset_drift"] else "no dataset drift"
    console.print(f"{verdict}: {data['drift_share']:.0%} of the features drifted")
    for label, path in (("JSON", json_out), ("HTML", html_out)):
        if path is not None:
            console.print(f"{label} report: {path}")


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
