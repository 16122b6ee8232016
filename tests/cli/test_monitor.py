"""``modelyard monitor``: the monitor run on its own, and the status table users read."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from sklearn.pipeline import Pipeline
from typer.testing import CliRunner

import modelyard
from modelyard.api.workspace import open_database
from modelyard.cli import app
from modelyard.live.collector import Collector
from modelyard.settings import Settings

from ..live.test_monitor import WINDOW, FakeClock, observe, traffic

Data = tuple[pd.DataFrame, pd.Series]


def _served(tmp_path: Path, cancer: Data, cancer_model: Pipeline) -> tuple[Path, Collector, float]:
    """A home with ``cancer`` registered, and a collector whose clock stands three windows ago
    (ended windows, within --since)."""
    X, y = cancer
    home = tmp_path / "home"
    settings = Settings(home=home)
    modelyard.register(cancer_model, "cancer", reference=X, labels=y, settings=settings)
    database = open_database(settings.resolved_database_url, settings.store)
    start = (time.time() // WINDOW - 3) * WINDOW
    return home, Collector(database, replica="a", window_s=WINDOW,
                           clock=FakeClock(start + 1)), start


def test_monitor_run_judges_stored_windows_and_status_shows_them(
    tmp_path: Path, cancer: Data, cancer_model: Pipeline
) -> None:
    X, _ = cancer
    home, collector, start = _served(tmp_path, cancer, cancer_model)
    shifted = ["mean radius", "worst area"]
    observe(collector, cancer_model, traffic(cancer, 5, 800, shifted), start + 1, list(X.columns))
    collector.close()

    runner = CliRunner()
    result = runner.invoke(app, ["--home", str(home), "monitor", "run", "--once"])
    assert result.exit_code == 0, result.stderr
    assert "cancer:1" in result.stdout
    assert "drift in mean radius" in result.stdout
    result = runner.invoke(app, ["--home", str(home), "monitor", "status", "cancer", "--json"])
    assert result.exit_code == 0, result.stderr
    [window] = json.loads(result.stdout)["windows"]
    assert window["rows"] == 800
    assert set(shifted) <= {c["name"] for c in window["columns"] if c["drift_detected"]}
    result = runner.invoke(app, ["--home", str(home), "monitor", "status"])
    assert result.exit_code == 0
    assert "cancer:1" in result.stdout
    assert "mean radius" in result.stdout
    result = runner.invoke(app, ["--home", str(home), "monitor", "status", "nobody"])
    assert result.exit_code == 1
    assert "nobody" in result.stderr


def test_feedback_from_a_file_is_idempotent_and_names_bad_columns(tmp_path: Path) -> None:
    home = tmp_path / "home"
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"request": ["a1", "a2", "a3"], "churned": [1, 0, 1]}).to_csv(labels,
                                                                              index=False)
    runner = CliRunner()
    args = ["--home", str(home), "feedback", str(labels), "--id-column", "request",
            "--label-column", "churned"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    first = json.loads(result.stdout)
    assert (first["accepted"], first["duplicates"]) == (3, 0)
    assert sorted(first["unknown_ids"]) == ["a1", "a2", "a3"]  # no logged prediction yet
    again = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    result = runner.invoke(app, ["--home", str(home), "feedback", str(labels)])
    assert result.exit_code == 1
    assert "no column 'id'" in result.stderr


def test_report_since_compares_stored_windows_with_the_reference_without_raw_rows(
    tmp_path: Path, cancer: Data, cancer_model: Pipeline
) -> None:
    X, _ = cancer
    home, collector, start = _served(tmp_path, cancer, cancer_model)
    shifted = ["mean radius", "worst area"]
    observe(collector, cancer_model, traffic(cancer, 7, 600, shifted), start + 1, list(X.columns))
    observe(collector, cancer_model, traffic(cancer, 8, 600, shifted), start + WINDOW + 1,
            list(X.columns))
    collector.close()
    runner = CliRunner()
    assert runner.invoke(app, ["--home", str(home), "monitor", "run", "--once"]).exit_code == 0
    assert runner.invoke(app, ["--home", str(home), "alias", "set", "cancer", "champion",
                               "1"]).exit_code == 0

    html = tmp_path / "live.html"
    result = runner.invoke(app, ["--home", str(home), "report", "--model", "cancer@champion",
                                 "--since", "1h", "--json", "-", "--html", str(html)])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["current"]["rows"] == 1_200  # both windows, merged
    assert data["current"]["source"] == "2 stored windows of cancer:1"
    drifted = {c["name"] for c in data["columns"]
               if c["drift_detected"] and c["role"] == "feature"}
    assert set(shifted) <= drifted
    assert len(drifted - set(shifted)) <= 2  # 30 features at alpha 1 %
    assert {c["role"] for c in data["columns"]} >= {"prediction", "probability"}
    assert [w["rows"] for w in data["performance"]["windows"]] == [600, 600]
    assert all("needs rows" in check["note"] for check in data["multivariate"])
    assert html.stat().st_size > 10_000

    for args, message in (
        (["--since", "1h"], "give --model"),
        (["--model", "cancer", "--since", "1h", "--current", "x.csv"], "either --current"),
        (["--model", "cancer", "--since", "soon"], "since must be a span"),
        (["--model", "cancer", "--since", "1s"], "no stored windows of cancer:1"),
    ):
        result = runner.invoke(app, ["--home", str(home), "report", *args])
        assert result.exit_code != 0
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
