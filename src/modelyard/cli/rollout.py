"""``modelyard rollout``: start, watch and steer a model's rollout.

The commands change the rollout in the store; every running server picks the change up within
a second (its routers re-read the store every 0.5 s) and its controller steps the rollout on.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from modelyard.cli._common import JSON_OPTION, console, print_json, settings
from modelyard.errors import InvalidInput

app = typer.Typer(help="Roll a new version out: shadow, canary, A/B, blue-green; promote or "
                  "roll back.", no_args_is_help=True)


def _store(ctx: typer.Context) -> Any:
    from modelyard.api.workspace import open_registry
    from modelyard.rollout.state import RolloutStore

    return RolloutStore(open_registry(settings(ctx)))


def _show(rollout: Any, as_json: bool, said: str) -> None:
    if as_json:
        print_json(rollout.to_dict())
        return
    console.print(f"{said}: {rollout.model} {rollout.strategy} of version {rollout.candidate} "
                  f"against {rollout.baseline}, {rollout.state}, candidate weight "
                  f"{rollout.weight:g} % (step {rollout.step + 1} of {len(rollout.steps)})"
                  + (f" — {rollout.reason}" if rollout.reason else ""), markup=False)


@app.command("start")
def start(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="The model's name."),
    candidate: int = typer.Option(..., "--candidate", help="The version to roll out."),
    strategy: str = typer.Option("canary", "--strategy",
                                 help="canary, bluegreen, shadow or ab."),
    steps: str | None = typer.Option(None, "--steps",
                                     help="Canary weights in percent, the last 100 (default "
                                     "5,25,50,100); for ab the candidate's share (default 50)."),
    step_duration: str = typer.Option("10m", "--step-duration",
                                      help="How long each step lasts before its analysis "
                                      "(the A/B test's time limit; a shadow's analysis period), "
                                      "e.g. 90s, 10m, 2h."),
    analysis_file: str | None = typer.Option(None, "--analysis",
                                             help="YAML of the checks (default checks when "
                                             "left out)."),
    sticky: str | None = typer.Option(None, "--sticky",
                                      help="A header (X-User-Id) or parameter:NAME whose value "
                                      "keeps each caller on one version."),
    baseline: int | None = typer.Option(None, "--baseline",
                                        help="The version to compare with (default: champion)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Start rolling a version out; the running servers route by it within a second."""
    from modelyard.lifecycle.admin import RolloutAdmin

    spec: dict[str, Any] = {"candidate": candidate, "strategy": strategy,
                            "step_duration": step_duration, "sticky": sticky,
                            "baseline": baseline}
    if steps is not None:
        spec["steps"] = steps
    if analysis_file is not None:
        spec["analysis"] = analysis_file
    _show(RolloutAdmin(_store(ctx)).start_rollout(model, spec), as_json, "started")


@app.command("status")
def status(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="The model's name."),
    events: int = typer.Option(10, "--events", help="How many recent events to show."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The model's active (else latest) rollout: weights, step, the analysis so far."""
    store = _store(ctx)
    rollout = store.latest(model)
    if rollout is None:
        raise InvalidInput(f"model {model!r} has never had a rollout; start one with "
                           f"`modelyard rollout start {model} --candidate N`")
    happened = store.events(rollout.id)
    if as_json:
        print_json({**rollout.to_dict(), "events": [vars(e) for e in happened]})
        return
    _show(rollout, False, "rollout")
    console.print(f"traffic: version {rollout.baseline} {100 - rollout.weight:g} %, version "
                  f"{rollout.candidate} {rollout.weight:g} %"
                  + (" (a shadow: it answers copies, callers get the baseline)"
                     if rollout.strategy == "shadow" else ""), markup=False)
    table = Table("at", "event", "step", "weight", "detail")
    for event in happened[-events:]:
        table.add_row(event.at[:19], event.kind, str(event.step + 1), f"{event.weight:g}",
                      _summary(event.detail))
    console.print(table)


def _summary(detail: dict[str, Any]) -> str:
    if "verdicts" in detail:
        return f"{detail.get('decision', '')}: " + "; ".join(
            f"{v['check']} {v['outcome']}" for v in detail["verdicts"])
    if "agreement" in detail:
        agreement = detail["agreement"]
        return (f"shadow: {detail.get('compared', 0)} compared, agreement "
                f"{'—' if agreement is None else f'{agreement:.1%}'}, "
                f"{detail.get('errors', 0)} errors")
    if "reason" in detail:
        return str(detail["reason"])
    return ", ".join(f"{k}={v}" for k, v in detail.items())[:80]


@app.command("promote")
def promote(ctx: typer.Context, model: str = typer.Argument(..., help="The model's name."),
            as_json: bool = JSON_OPTION) -> None:
    """All traffic to the candidate now, and the champion alias moved to it."""
    _show(_store(ctx).promote(model), as_json, "promoted")


@app.command("pause")
def pause(ctx: typer.Context, model: str = typer.Argument(..., help="The model's name."),
          reason: str = typer.Option("", "--reason", help="Why, for the audit log."),
          as_json: bool = JSON_OPTION) -> None:
    """Hold the weights where they are; the steps stop advancing."""
    _show(_store(ctx).pause(model, reason), as_json, "paused")


@app.command("resume")
def resume(ctx: typer.Context, model: str = typer.Argument(..., help="The model's name."),
           as_json: bool = JSON_OPTION) -> None:
    """Let a paused rollout step on (its current step starts again)."""
    _show(_store(ctx).resume(model), as_json, "resumed")


@app.command("rollback")
def rollback(ctx: typer.Context, model: str = typer.Argument(..., help="The model's name."),
             reason: str = typer.Option("rolled back by hand", "--reason",
                                        help="Why, for the audit log."),
             as_json: bool = JSON_OPTION) -> None:
    """All traffic back to the baseline at once."""
    _show(_store(ctx).rollback(model, reason), as_json, "rolled back")


@app.command("abort")
def abort(ctx: typer.Context, model: str = typer.Argument(..., help="The model's name."),
          reason: str = typer.Option("aborted by hand", "--reason",
                                     help="Why, for the audit log."),
          as_json: bool = JSON_OPTION) -> None:
    """Stop the rollout: all traffic back to the baseline (as rollback, recorded as aborted)."""
    _show(_store(ctx).abort(model, reason), as_json, "aborted")


@app.command("list")
def list_rollouts(ctx: typer.Context,
                  model: str | None = typer.Argument(None, help="Only this model's."),
                  as_json: bool = JSON_OPTION) -> None:
    """Rollouts, newest first."""
    found = _store(ctx).find(model)
    if as_json:
        print_json([r.to_dict() for r in found])
        return
    table = Table("id", "model", "strategy", "baseline", "candidate", "state", "weight",
                  "started")
    for r in found:
        table.add_row(str(r.id), r.model, r.strategy, str(r.baseline), str(r.candidate),
                      r.state, f"{r.weight:g}", r.started_at[:19])
    console.print(table)
