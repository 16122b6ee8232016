"""``modelyard retrain`` and ``modelyard approve``: the retraining loop by hand.

``retrain NAME`` runs one retrain now, in this process, as its ``[lifecycle.models.NAME]``
settings say (see :mod:`modelyard.lifecycle.retrain`); ``--dry-run`` shows what it would do;
``--list`` shows the model's recent runs. ``approve NAME`` starts the rollout of a candidate
that passed its gate and waits for a person; ``--decline`` refuses it.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from modelyard.cli._common import JSON_OPTION, console, err_console, print_json, settings
from modelyard.errors import InvalidInput


def _retrainer(ctx: typer.Context, quiet: bool = False) -> Any:
    from modelyard.lifecycle.retrain import Retrainer

    return Retrainer(settings(ctx), progress=None if quiet else
                     (lambda line: console.print(line, markup=False)))


def retrain(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="The model's name."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Show what a run would do; change nothing."),
    list_runs: bool = typer.Option(False, "--list", help="Show the model's recent runs."),
    reason: str | None = typer.Option(None, "--reason", help="Why, for the audit log."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Retrain a model now: fresh labelled data, training, gate, then its rollout."""
    from modelyard.lifecycle.runs import Trigger

    if list_runs and dry_run:
        raise InvalidInput("choose one of --list and --dry-run")
    retrainer = _retrainer(ctx, quiet=as_json or dry_run or list_runs)
    if list_runs:
        runs = retrainer.runs.find(model)
        if as_json:
            print_json([run.to_dict() for run in runs])
        else:
            _table(runs)
        return
    if dry_run:
        plan = retrainer.plan(model)
        if as_json:
            print_json(plan)
        else:
            _show_plan(plan)
        return
    who = retrainer.registry.actor
    run = retrainer.run(model, Trigger("manual", reason or f"started by {who} at the CLI"))
    _ended(run, as_json, ("failed", "rejected"))


def approve(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="The model's name."),
    run_id: int | None = typer.Option(None, "--run", help="The run (default: the one "
                                      "awaiting approval)."),
    decline: bool = typer.Option(False, "--decline", help="Refuse the candidate instead."),
    reason: str = typer.Option("", "--reason", help="Why, for the audit log."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Start the rollout of a retrained candidate that waits for approval (or decline it)."""
    retrainer = _retrainer(ctx, quiet=True)
    run = (retrainer.decline(model, run_id, reason) if decline
           else retrainer.approve(model, run_id))
    _ended(run, as_json, ("failed",))


def _ended(run: Any, as_json: bool, failures: tuple[str, ...]) -> None:
    """The run's end on stdout (JSON, or a line for people); a failure also as one line on
    stderr with its reason, and exit 1."""
    state = run.state.replace("_", " ")
    if as_json:
        print_json(run.to_dict())
    elif run.state not in failures:
        console.print(f"run {run.id}: {state} — {run.message}", markup=False)
    if run.state in failures:
        err_console.print(f"error: retraining run {run.id} {state}: {run.message}",
                          markup=False)
        raise typer.Exit(1)


def _table(runs: list[Any]) -> None:
    if not runs:
        console.print("no retraining runs")
        return
    table = Table("run", "started (UTC)", "trigger", "versions", "state", "message")
    table.columns[1].no_wrap = True
    for run in runs:
        versions = f"{run.champion} → {run.candidate}" if run.candidate else str(run.champion)
        table.add_row(str(run.id), run.started_at[:16].replace("T", " "), run.trigger,
                      versions, run.state.replace("_", " "), run.message or run.stage)
    console.print(table)


def _show_plan(plan: dict[str, Any]) -> None:
    data, training, gate = plan["data"], plan["training"], plan["gate"]
    lines = [
        f"retrain {plan['model']} (champion version {plan['champion']}) — dry run, nothing "
        "changed",
        f"  data: {data['labelled_rows']} labelled predictions since {data['since'][:19]}; "
        f"{data['holdout_rows']} held out for the gate, {data['training_rows']} to train on "
        f"({data['reference_rows']} from the reference"
        + (f" of {data['reference_from']})" if data.get("reference_from") else ")"),
        f"  training: {training['entry_point']} in {training['workdir']}, at most "
        f"{training['timeout_s']:g} s",
        f"  gate: {', '.join(gate['metrics']) or 'the task defaults'}, improvement ≥ "
        f"{gate['min_improvement']:g}, regression ≤ {gate['max_regression']:g}, "
        f"≥ {gate['min_rows']} rows",
        "  then: " + ("wait for `modelyard approve`, then " if plan["approval"] else "")
        + f"a {plan['rollout'].get('strategy', 'canary')} rollout",
    ]
    if plan["blockers"]:
        lines.append("  it would not run now: " + "; ".join(plan["blockers"]))
    for line in lines:
        console.print(line, markup=False)
