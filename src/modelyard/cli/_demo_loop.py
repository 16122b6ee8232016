"""The monitoring part of ``modelyard demo``: normal traffic, shifted traffic, late labels, and
the server's own monitor raising the alerts — all against the running demo server."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from modelyard.cli._common import console
from modelyard.client import Client
from modelyard.settings import Settings

SCALE = 1.2  # "a new scanner reports every measurement 20 % larger"
WAIT_S = 45.0  # for the monitor to judge both windows and the alerts to fire


def monitoring_loop(config: Settings, url: str, model: str, rows: pd.DataFrame,
                    labels: np.ndarray, window_s: float) -> bool:
    """Send one window of the hold-out rows as they are and one with every measurement scaled,
    post their labels afterwards, wait for the monitor's verdicts and print them with the
    alerts. Returns whether the shifted window drifted, its accuracy fell and an alert fired
    while the normal window stayed quiet."""
    from modelyard.api.workspace import open_database
    from modelyard.live.alerts import list_alerts

    values = rows.to_numpy(np.float64)
    with Client(url) as client:
        phases = {"normal": values, "shifted": values * SCALE}
        starts: dict[str, float] = {}
        for phase, table in phases.items():
            starts[phase] = _next_window(window_s)
            for i, row in enumerate(table):
                client.predict(model, row[None, :], request_id=f"demo-{phase}-{i}")
        console.print(
            f"sent {len(values)} requests in one {window_s:g}-s window as the hold-out rows are, "
            f"then {len(values)} in the next with every measurement x{SCALE} (a recalibrated "
            "scanner); now posting their labels, as they would arrive days later", markup=False)
        posted = client.feedback([
            {"id": f"demo-{phase}-{i}", "label": int(label)}
            for phase in phases for i, label in enumerate(labels)
        ])
        console.print(f"POST /v1/feedback: {posted.get('accepted', 0)} labels accepted",
                      markup=False)
        windows = _await_verdicts(client, model, starts)
    database = open_database(config.resolved_database_url, config.store)
    alerts = [a for a in list_alerts(database) if a["state"] in ("firing", "resolved")]
    _print_windows(windows, starts)
    for alert in alerts:
        console.print(f"alert {alert['rule']} {alert['state']} for {alert['subject']}: "
                      f"value {alert.get('value')}", markup=False)
    normal, shifted = windows.get("normal"), windows.get("shifted")
    fired = {a["rule"] for a in alerts}
    return bool(
        normal and shifted and not normal.get("dataset_drift") and shifted.get("dataset_drift")
        and _accuracy(shifted) is not None and _accuracy(normal) is not None
        and _accuracy(shifted) < _accuracy(normal) and "DatasetDrift" in fired  # type: ignore[operator]
    )


def _next_window(window_s: float) -> float:
    """Sleep to the start of the next window (plus a margin), so a phase fills one window."""
    start = (time.time() // window_s + 1) * window_s
    time.sleep(max(0.0, start - time.time()) + 0.05)
    return start


def _accuracy(window: dict[str, Any]) -> float | None:
    value = (window.get("performance") or {}).get("accuracy_realised")
    return None if value is None else float(value)


def _await_verdicts(client: Client, model: str, starts: dict[str, float]) -> dict[str, Any]:
    """The monitor's result for each phase's window, once it has labels (bounded wait)."""
    deadline = time.monotonic() + WAIT_S
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        by_start = {_epoch(w["window_start"]): w for w in client.monitoring(model, since="10m")}
        found = {phase: by_start[start] for phase, start in starts.items() if start in by_start}
        if len(found) == len(starts) and all(_accuracy(w) is not None for w in found.values()):
            break
        time.sleep(0.5)
    return found


def _epoch(text: str) -> float:
    return pd.Timestamp(text).timestamp()


def _print_windows(windows: dict[str, Any], starts: dict[str, float]) -> None:
    table = Table(show_edge=False, pad_edge=False, title="the monitor's verdict per window")
    for header in ("window", "traffic", "rows", "drifted features", "dataset drift",
                   "accuracy realised", "estimated"):
        table.add_column(header)
    for phase in starts:
        window = windows.get(phase)
        if window is None:
            table.add_row("—", phase, "not judged yet", "", "", "", "")
            continue
        performance = window.get("performance") or {}
        drifted = [c["name"] for c in window.get("columns", [])
                   if c.get("role") == "feature" and c.get("drift_detected")]
        table.add_row(
            window["window_start"][11:19], phase, str(window["rows"]),
            f"{len(drifted)} of {sum(c.get('role') == 'feature' for c in window['columns'])}",
            "YES" if window.get("dataset_drift") else "no",
            _fmt(performance.get("accuracy_realised")),
            _fmt(performance.get("accuracy_estimated")),
        )
    console.print(table)


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{float(value):.3f}"
