"""``modelyard alerts``: alert states, the rules in force, adding and removing rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from modelyard.cli._common import JSON_OPTION, console, parse_pairs, print_json, settings
from modelyard.errors import InvalidInput

app = typer.Typer(help="Alerts on drift, accuracy, latency and errors: states and rules.",
                  no_args_is_help=True)

METRICS_HELP = ("dataset_drift, drift_share, drift_score, prediction_drift, quality_violations, "
                "accuracy_realised, accuracy_estimated, accuracy_drop, latency_p99_s, "
                "error_rate, rows")
_OPERATOR_WORDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "==", "ne": "!="}


def _rules(ctx: typer.Context) -> Any:
    from modelyard.api.workspace import open_database
    from modelyard.live.alert_rules import RuleStore

    config = settings(ctx)
    database = open_database(config.resolved_database_url, config.store)
    return RuleStore(database, config.monitoring.rules_file)


@app.command("list")
def list_alerts(
    ctx: typer.Context,
    state: str | None = typer.Option(
        None, "--state", help="Only alerts in this state: firing, pending or resolved."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Alerts and their states, firing first."""
    from modelyard.api.workspace import open_database
    from modelyard.live.alerts import list_alerts as stored_alerts

    config = settings(ctx)
    found = stored_alerts(open_database(config.resolved_database_url, config.store), state)
    if as_json:
        print_json(found)
        return
    if not found:
        console.print(f"no {state} alerts" if state else "no alerts", markup=False)
        return
    table = Table("rule", "model version", "state", "severity", "value", "since")
    for alert in found:
        since = {"firing": alert["firing_since"], "pending": alert["pending_since"]}.get(
            alert["state"], alert["resolved_at"])
        value = alert["value"]
        table.add_row(alert["rule"], alert["subject"], alert["state"],
                      alert["labels"].get("severity", ""),
                      "—" if value is None else f"{value:.4g}", (since or "")[:19])
    console.print(table)


@app.command("rules")
def list_rules(
    ctx: typer.Context,
    export: str | None = typer.Option(
        None, "--export", help="Write the rules in another format: prometheus (a rule file)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="File for --export (default: standard output)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """The rules in force: defaults, the rules file (monitoring.rules_file), stored rules."""
    entries = _rules(ctx).entries()
    if export is not None:
        if export != "prometheus":
            raise InvalidInput(f"--export must be prometheus, not {export!r}")
        from modelyard.live.prometheus_rules import render

        text = render([entry.rule for entry in entries])
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
            console.print(f"wrote {len(entries)} rules to {output}; check them with "
                          f"`promtool check rules {output}`", markup=False)
        return
    if output is not None:
        raise InvalidInput("--output goes with --export prometheus")
    if as_json:
        print_json([{**entry.rule.to_dict(), "source": entry.source} for entry in entries])
        return
    table = Table(show_edge=False, pad_edge=False)
    for heading in ("name", "condition", "severity", "model", "source"):
        table.add_column(heading, no_wrap=True)
    table.add_column("labels")
    for entry in entries:
        rule = entry.rule
        table.add_row(rule.name, rule.summary(), rule.severity, rule.model or "every",
                      entry.source,
                      ", ".join(f"{k}={v}" for k, v in rule.labels.items()) or "—")
    console.print(table)


@app.command("add")
def add_rule(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="Rule name (letters, digits, _).",
                             show_default=False),
    metric: str = typer.Option(..., "--metric", help=f"A window metric: {METRICS_HELP}.",
                               show_default=False),
    op: str = typer.Option(..., "--op", help="> >= < <= == != (or gt ge lt le eq ne).",
                           show_default=False),
    threshold: str = typer.Option(..., "--threshold", show_default=False),
    for_: str = typer.Option("0s", "--for", help="How long the condition must hold: 30s, 5m."),
    severity: str = typer.Option("warning", "--severity", help="info, warning or critical."),
    model: str | None = typer.Option(None, "--model", help="Only this model (default: every)."),
    feature: str | None = typer.Option(
        None, "--feature", help="For drift_score: this feature (default: any feature)."
    ),
    label: list[str] = typer.Option([], "--label", help="A label k=v for the alert; repeatable."),
    description: str = typer.Option("", "--description", help="Said in every notification."),
    replace: bool = typer.Option(False, "--replace", help="Replace a stored rule of this name."),
) -> None:
    """Add an alert rule (it overrides a default or file rule of the same name)."""
    from modelyard.live.alert_rules import AlertRule

    rule = AlertRule.from_dict({
        "name": name, "metric": metric, "op": _OPERATOR_WORDS.get(op, op),
        "threshold": threshold, "for": for_, "severity": severity, "model": model,
        "feature": feature, "labels": parse_pairs(label, "--label"),
        "description": description,
    })
    overridden = _rules(ctx).add(rule, replace=replace)
    note = {"store": " (replaced)", "default": " (overrides the default rule)",
            "file": " (overrides the rules file)"}.get(overridden or "", "")
    console.print(f"added alert rule {rule.name}: {rule.summary()}, {rule.severity}{note}",
                  markup=False)


@app.command("remove")
def remove_rule(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Rule name; a default rule is switched off.",
                               show_default=False),
) -> None:
    """Remove a stored rule, or switch off a default or file rule."""
    console.print(_rules(ctx).remove(name), markup=False)
