"""Reports from stored windows: a model version's live traffic over a span, no raw rows read.

The window profiles the serving workers flushed (:mod:`~modelyard.live.windows`) merge into one
profile of every request in the span, which :func:`modelyard.api.reporting.report` compares with
the version's stored reference. What needs rows (the multivariate checks, CBPE) says so in the
report; the monitor's per-window results (realised and estimated accuracy, alerts' inputs) are
added under ``performance.windows``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from modelyard.api.predictor import Predictor, load
from modelyard.api.reporting import report
from modelyard.errors import InvalidInput
from modelyard.live._clock import Clock, SystemClock
from modelyard.live.history import History, parse_since
from modelyard.live.windows import iso
from modelyard.live.windows import load as load_windows
from modelyard.monitoring.profile import TableProfile
from modelyard.monitoring.report import Report, ReportOptions
from modelyard.settings import Settings
from modelyard.store import Database

_WINDOW_METRICS = ("rows", "dataset_drift", "drift_share", "prediction_drift",
                   "quality_violations", "latency_p99_s", "error_rate")


def window_report(
    model: str,
    since: str,
    *,
    settings: Settings,
    database: Database | None = None,
    options: ReportOptions | None = None,
    clock: Clock | None = None,
    progress: Any = None,
) -> Report:
    """Compare ``model``'s (``name``, ``name@alias`` or ``name:N``) windows since ``since``
    (``24h``, ``30m``, an ISO time) with its reference."""
    now = (clock or SystemClock()).now()
    start = parse_since(since, now)
    if start is None:
        raise InvalidInput("--since needs a span such as 24h or an ISO-8601 time")
    predictor = load(model, settings)
    name, version = predictor.info.name, predictor.info.version
    database = database or Database(settings.resolved_database_url)
    windows = [w for w in load_windows(database, name, version, since=start.timestamp())
               if w.profile is not None and w.profile.rows]
    if not windows:
        raise InvalidInput(
            f"no stored windows of {name}:{version} since {start.isoformat(timespec='seconds')}; "
            "windows are written by `modelyard serve` with monitoring on, one per "
            f"{settings.monitoring.window_s:g} s of traffic"
        )
    merged = TableProfile(k=windows[0].profile.k)  # type: ignore[union-attr]
    for window in windows:
        # requests asking for different outputs give windows with different output columns
        merged.merge(window.profile, union=True)  # type: ignore[arg-type]
    result = report(merged, model=f"{name}:{version}", options=_live(options, predictor),
                    settings=settings, progress=progress)
    sides = dict(result.sides)
    sides["current"] = {
        "source": f"{len(windows)} stored windows of {name}:{version}",
        "rows": merged.rows, "from": iso(windows[0].start), "until": iso(windows[-1].end),
    }
    performance = dict(result.performance or {})
    performance["windows"] = _window_metrics(database, name, version, start)
    return replace(result, sides=sides, performance=performance)


def _live(options: ReportOptions | None, predictor: Predictor) -> ReportOptions:
    """Live windows carry no labels (they arrive as feedback) and any number of rows: the
    reference's labels column and its row volume are not quality rules for them."""
    options = options or ReportOptions()
    quality = {key: dict(value) for key, value in (options.quality or {}).items()}
    table = quality.setdefault("table", {})
    table.setdefault("min_rows", None)
    table.setdefault("max_rows", None)
    info = predictor.manifest.reference
    if info is not None and info.labels_column:
        quality.setdefault("columns", {}).setdefault(info.labels_column, {"ignore": True})
    return replace(options, quality=quality)


def _window_metrics(database: Database, name: str, version: int,
                    start: datetime) -> list[dict[str, Any]]:
    out = []
    for result in History(database).results(name, start.isoformat(), version):
        entry = {"window_start": result.get("window_start"), "window_end": result.get("window_end")}
        entry.update({key: result[key] for key in _WINDOW_METRICS if key in result})
        entry["drifted_features"] = [c["name"] for c in result.get("columns", [])
                                     if c.get("role") == "feature" and c.get("drift_detected")]
        entry.update(result.get("performance") or {})
        out.append(entry)
    return out
