"""``modelyard monitor``: the monitor's verdicts per window, and the monitor on its own."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.table import Table

from modelyard.cli._common import JSON_OPTION, console, print_json, settings
from modelyard.errors import InvalidInput

app = typer.Typer(help="Live monitoring: window verdicts, and the monitor process.",
                  no_args_is_help=True)


@app.command("status")
def status(
    ctx: typer.Context,
    ref: str | None = typer.Argument(
        None, help="NAME or NAME@ALIAS (NAME:N for one version); every model when left out.",
    ),
    since: str = typer.Option("24h", "--since", help="How far back: 30m, 24h, 7d or a time."),
    last: int = typer.Option(10, "--last", help="Windows shown per model version."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The latest windows: rows, p99 latency, drifted features, accuracy (realised/estimated
    from labels), quality findings, firing alerts."""
    from modelyard.api import open_registry
    from modelyard.api.workspace import open_database
    from modelyard.live.history import History
    from modelyard.registry import ModelRef

    config = settings(ctx)
    registry = open_registry(config)
    history = History(open_database(config.resolved_database_url, config.store))
    version: int | None = None
    if ref is None:
        names = [model.name for model in registry.list_models()]
    else:
        parsed = ModelRef.parse(ref)
        names = [parsed.name]
        if parsed.version is not None or parsed.alias is not None:
            version = registry.get_version(parsed).version
        else:
            registry.get_model(parsed.name)  # a clear error for an unknown model
    rows: list[dict[str, Any]] = []
    for name in names:
        found = history.results(name, since, version)
        per_version: dict[int, list[dict[str, Any]]] = {}
        for result in found:
            per_version.setdefault(int(result["version"]), []).append(result)
        for results in per_version.values():
            rows.extend(results[-last:])
    firing = _firing(config)
    if as_json:
        print_json({"windows": rows, "alerts": firing})
        return
    if not rows:
        console.print(f"no monitored windows since {since}: serve the model with monitoring on "
                      "(the default) and send traffic")
        return
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("version", no_wrap=True)
    table.add_column("window", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("p99 ms", justify="right", no_wrap=True)
    table.add_column("drifted features")
    table.add_column("accuracy", no_wrap=True)
    table.add_column("quality", justify="right")
    table.add_column("alerts")
    for result in rows:
        subject = f"{result['model']}:{result['version']}"
        drifted = [c["name"] for c in result.get("columns", [])
                   if c.get("drift_detected") and c.get("role") == "feature"]
        shown = ", ".join(drifted[:3]) + (f" +{len(drifted) - 3}" if len(drifted) > 3 else "")
        performance = result.get("performance") or {}
        p99 = result.get("latency_p99_s")
        table.add_row(
            subject, str(result["window_start"])[11:16], f"{result['rows']:,}",
            "—" if p99 is None else f"{p99 * 1000:.1f}", shown or "—",
            f"{_pct(performance.get('accuracy_realised'))}/"
            f"{_pct(performance.get('accuracy_estimated'))}",
            str(result.get("quality_violations", 0) or "—"),
            ", ".join(firing.get(subject, [])) or "—",
        )
    console.print(table)


def _firing(config: Any) -> dict[str, list[str]]:
    """Firing alerts by subject, when the alerts module has stored any."""
    from sqlalchemy import select

    from modelyard.api.workspace import open_database
    from modelyard.store.tables import alert_states

    database = open_database(config.resolved_database_url, config.store)
    query = select(alert_states.c.rule, alert_states.c.subject).where(
        alert_states.c.state == "firing")
    found: dict[str, list[str]] = {}
    with database.read() as conn:
        for row in conn.execute(query):
            found.setdefault(row.subject, []).append(row.rule)
    return found


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1%}"


@app.command("run")
def run(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Judge the ended windows once, then exit."),
    interval_s: float = typer.Option(
        0.0, "--interval", help="Seconds between rounds (default: a quarter window)."
    ),
) -> None:
    """Run the monitor alone, for a fleet of replicas serving with `monitoring.enabled`
    (with the retraining triggers of models that declare a retrain)."""
    from modelyard.api.workspace import open_database
    from modelyard.live.feedback import FeedbackStore
    from modelyard.live.monitor import Monitor
    from modelyard.live.notifiers import Alerting
    from modelyard.live.predlog import PredictionLog

    config = settings(ctx)
    if interval_s < 0:
        raise InvalidInput(f"--interval must be positive, not {interval_s}")
    database = open_database(config.resolved_database_url, config.store)
    alerting = Alerting.from_settings(database, config.monitoring)
    sink: Any = database if config.monitoring.log_sink == "database" else (
        f"{config.resolved_artifacts_uri.rstrip('/')}/prediction-log")
    predictions = PredictionLog(sink)
    monitor = Monitor(database, config, evaluate_alerts=alerting.evaluator.evaluate,
                      feedback=FeedbackStore(database, predictions=predictions
                                             if config.monitoring.log_sink == "parquet"
                                             else None),
                      predictions=predictions)
    pause = interval_s or min(max(config.monitoring.window_s / 4, 0.5), 15.0)
    triggers = None
    if not once and config.lifecycle.enabled and config.lifecycle.models:
        from modelyard.lifecycle.retrain import Retrainer
        from modelyard.lifecycle.triggers import Triggers, check_lifecycle

        check_lifecycle(config)
        triggers = Triggers(Retrainer(config, predictions=predictions))
        triggers.start()
    try:
        _rounds(monitor, alerting.outbox, once, pause)
    except KeyboardInterrupt:
        console.print("monitor stopped")
    finally:
        if triggers is not None:
            triggers.close()


def _rounds(monitor: Any, outbox: Any, once: bool, pause: float) -> None:
    while True:
        results = monitor.run_once()
        outbox.run_once()
        for result in results:
            drifted = [c["name"] for c in result.get("columns", []) if c.get("drift_detected")]
            console.print(
                f"{result['model']}:{result['version']} {result['window_start'][:19]} "
                f"{result['rows']} rows"
                + (f", drift in {', '.join(drifted)}" if drifted else ", no drift"),
                markup=False,
            )
        if once:
            return
        time.sleep(pause)
