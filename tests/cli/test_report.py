"""``modelyard report`` as a CI pipeline drives it: files in, JSON and HTML out, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.pipeline import Pipeline
from typer.testing import CliRunner

from modelyard.cli import app

Data = tuple[pd.DataFrame, pd.Series]


@pytest.fixture
def run(tmp_path: Path) -> object:
    runner = CliRunner()
    home = tmp_path / "home"

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, ["--home", str(home), *args])
        return result.exit_code, result.stdout, result.stderr

    return invoke


def frames(rows: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "amount": rng.lognormal(3.0 + shift, 0.5, rows),
        "age": rng.normal(40.0, 9.0, rows),
        "tenure": rng.poisson(5.0, rows),
        "plan": rng.choice(["free", "pro", "team"], rows, p=[0.6, 0.3, 0.1]),
    })


def test_report_writes_json_and_html_and_fails_on_drift(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    frames(5000, 0.0, 1).to_parquet(tmp_path / "ref.parquet")
    frames(2000, 0.0, 2).to_csv(tmp_path / "same.csv", index=False)
    shifted = frames(2000, 0.6, 3)
    shifted["age"] += 9.0
    shifted.to_parquet(tmp_path / "shifted.parquet")

    code, out, err = run("report", "--reference", str(tmp_path / "ref.parquet"), "--current",
                         str(tmp_path / "same.csv"), "--json", str(tmp_path / "same.json"),
                         "--html", str(tmp_path / "same.html"), "--fail-on-drift")
    assert code == 0, err
    assert "no dataset drift" in out
    data = json.loads((tmp_path / "same.json").read_text())
    assert data["dataset_drift"] is False
    assert [c["name"] for c in data["columns"]] == ["amount", "age", "tenure", "plan"]
    assert (tmp_path / "same.html").read_text().startswith("<!doctype html>")

    code, out, err = run("report", "-r", str(tmp_path / "ref.parquet"), "-c",
                         str(tmp_path / "shifted.parquet"), "--fail-on-drift", "--json", "-")
    assert code == 1, err
    data = json.loads(out)
    assert data["dataset_drift"] is True
    assert data["drifted_columns"] == ["amount", "age"]


def test_report_scores_with_a_registered_model_and_its_stored_reference(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, cancer: Data, cancer_model: Pipeline
) -> None:
    X, y = cancer
    skops.io.dump(cancer_model, tmp_path / "model.skops")
    X.assign(y=y).iloc[:400].to_parquet(tmp_path / "train.parquet")
    code, _, err = run("register", str(tmp_path / "model.skops"), "--name", "cancer",
                       "--reference", str(tmp_path / "train.parquet"), "-y", "y",
                       "--alias", "champion")
    assert code == 0, err
    later = X.iloc[400:].assign(y=y.iloc[400:])
    later.to_parquet(tmp_path / "later.parquet")
    code, out, err = run("report", "--model", "cancer@champion", "--current",
                         str(tmp_path / "later.parquet"), "--json", "-", "--no-multivariate")
    assert code == 0, err
    data = json.loads(out)
    assert data["reference"]["rows"] == 400
    roles = {c["name"]: c["role"] for c in data["columns"]}
    assert roles["y"] == "target"
    assert roles["prediction"] == "prediction"
    assert roles["proba_1"] == "probability"
    truth = float((cancer_model.predict(X.iloc[400:]) == y.iloc[400:]).mean())
    assert data["performance"]["realised"]["accuracy"] == pytest.approx(truth)
    assert data["performance"]["estimated"]["accuracy"]["value"] > 0.85


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--current", "missing.csv", "--reference", "ref.parquet"), "missing.csv"),
        (("--current", "ref.parquet"), "give a reference table"),
        (("--current", "words.csv", "--reference", "ref.parquet"),
         "column 'age' is numerical: 'old' is not a number"),
        (("--current", "ref.parquet", "--reference", "ref.parquet", "--method", "t-test"),
         "unknown drift method 't-test'"),
        (("--current", "ref.parquet", "--reference", "ref.parquet", "--quality-rules",
          "rules.yaml"), "rules.yaml"),
        (("--current", "ref.parquet", "--model", "nobody@champion"), "nobody"),
    ],
)
def test_bad_input_gives_one_clear_line(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    frames(600, 0.0, 1).to_parquet("ref.parquet")
    words = frames(50, 0.0, 2).astype({"age": object})
    words.loc[3, "age"] = "old"
    words.to_csv("words.csv", index=False)
    Path("rules.yaml").write_text("columns: [unclosed\n")
    code, out, err = run("report", *args)
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in out + err
