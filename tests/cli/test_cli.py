"""The CLI as users drive it: exit codes, one-line errors, JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import skops.io
from sklearn.pipeline import Pipeline
from typer.testing import CliRunner

from modelyard.cli import app

from ._output import one_error_line

Data = tuple[pd.DataFrame, pd.Series]


@pytest.fixture
def run(tmp_path: Path) -> object:
    runner = CliRunner()
    home = tmp_path / "home"

    def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
        result = runner.invoke(app, ["--home", str(home), *args], input=input)
        return result.exit_code, result.stdout, result.stderr

    return invoke


@pytest.fixture
def files(tmp_path: Path, cancer: Data, cancer_model: Pipeline) -> tuple[Path, Path]:
    X, y = cancer
    model = tmp_path / "model.skops"
    skops.io.dump(cancer_model, model)
    data = tmp_path / "train.parquet"
    X.assign(y=y).to_parquet(data)
    return model, data


def test_help_lists_only_the_groups_that_work(run) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run("--help")
    assert code == 0
    commands = out.split("Commands:")[1].strip().splitlines()
    assert [line.split()[0] for line in commands] == [
        "demo", "serve", "register", "models", "alias", "audit", "rollout", "retrain",
        "approve", "monitor", "alerts", "report", "feedback",
    ]


def test_register_browse_alias_and_audit(run, files) -> None:  # type: ignore[no-untyped-def]
    model, data = files
    code, out, err = run("register", str(model), "--name", "churn", "--reference", str(data),
                         "--labels-column", "y", "--tag", "team=growth", "--description", "v1")
    assert code == 0, err
    assert "registered churn:1 (sklearn, classification, 30 inputs)" in out
    assert "accuracy=" in out
    code, out, err = run("register", str(model), "--name", "churn", "--reference", str(data),
                         "--labels-column", "y", "--alias", "champion", "--json")
    assert code == 0, err
    assert json.loads(out)["version"] == 2
    assert json.loads(out)["aliases"] == ["champion"]

    code, out, _ = run("models", "list", "--json")
    assert code == 0
    [listed] = json.loads(out)
    assert (listed["name"], listed["latest_version"], listed["aliases"]) == (
        "churn", 2, {"champion": 2}
    )
    code, out, _ = run("models", "list")
    assert "churn" in out
    assert "champion→2" in out

    code, out, _ = run("models", "show", "churn@champion")
    assert code == 0
    assert "churn:2  sklearn classification" in out
    assert "mean radius:FP64" in out
    code, out, _ = run("models", "show", "churn", "--json")
    assert [v["version"] for v in json.loads(out)["versions"]] == [1, 2]
    assert json.loads(out)["versions"][0]["tags"] == {"team": "growth"}

    assert run("alias", "set", "churn", "champion", "1")[0] == 0
    assert json.loads(run("alias", "list", "churn", "--json")[1]) == {"champion": 1}
    assert run("models", "tag", "churn:1", "stage=production")[0] == 0
    assert run("alias", "rm", "churn", "champion")[0] == 0
    assert run("models", "untag", "churn:1", "stage")[0] == 0

    code, out, _ = run("audit", "list", "--json")
    actions = [e["action"] for e in json.loads(out)]
    assert actions == [
        "tag.remove", "alias.remove", "tag.set", "alias.set", "alias.set",
        "version.register", "version.register", "model.create",
    ]
    assert json.loads(out)[3]["before"] == {"version": 2}
    code, out, _ = run("audit", "verify")
    assert code == 0
    assert "audit log intact: 8 entries" in out


def test_delete_is_soft_and_asks_first(run, files) -> None:  # type: ignore[no-untyped-def]
    model, data = files
    run("register", str(model), "--name", "churn", "--reference", str(data), "-y", "y")
    run("register", str(model), "--name", "churn", "--reference", str(data), "-y", "y")
    code, _, _ = run("models", "delete", "churn:2", input="n\n")
    assert code == 1
    assert run("models", "delete", "churn:2", input="y\n")[0] == 0
    assert json.loads(run("models", "show", "churn", "--json")[1])["latest_version"] == 1
    assert run("models", "delete", "churn", "--yes")[0] == 0
    assert json.loads(run("models", "list", "--json")[1]) == []
    assert json.loads(run("models", "list", "--all", "--json")[1])[0]["name"] == "churn"
    code, out, _ = run("audit", "list", "--model", "churn", "--json")
    assert [e["action"] for e in json.loads(out)][:2] == ["model.delete", "version.delete"]


def test_bad_input_gives_one_clear_line(run, files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, data = files
    bad_onnx = tmp_path / "broken.onnx"
    bad_onnx.write_bytes(b"\x08\x07garbage that is not a protobuf graph")
    unknown = tmp_path / "model.h5"
    unknown.write_bytes(b"\x89HDF")
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"\x80\x04K\x01.")
    narrow = tmp_path / "narrow.parquet"
    pd.read_parquet(data).drop(columns=["mean radius"]).to_parquet(narrow)

    cases = [
        (("register", str(tmp_path / "nope.skops"), "--name", "m"), "model file not found"),
        (("register", str(unknown), "--name", "m"), "model.h5"),
        (("register", str(pickled), "--name", "m"), "--trust-pickle"),
        (("register", str(bad_onnx), "--name", "m"), "broken.onnx"),
        (("register", str(model), "--name", "m", "--reference", str(narrow), "-y", "y"),
         "mean radius"),
        (("register", str(model), "--name", "m", "--reference", str(data)),
         "pass --labels-column"),
        (("register", str(model), "--name", "bad name!"), "model name 'bad name!'"),
        (("register", str(model), "--name", "m", "--tag", "novalue"), "key=value"),
    ]
    for args, message in cases:
        one_error_line(*run(*args), message)

    run("register", str(model), "--name", "churn", "--reference", str(data), "-y", "y")
    one_error_line(*run("models", "show", "churn@gold"), "has no alias 'gold'")
    one_error_line(*run("models", "show", "ghost"), "'ghost' is not registered")
    one_error_line(*run("alias", "set", "churn", "champion", "9"), "no version 9")
    one_error_line(*run("alias", "rm", "churn", "gold"), "no alias 'gold'")
    assert json.loads(run("models", "list", "--json")[1])[0]["latest_version"] == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", "cannot use the database"),
        ("oracle://scott@db/x", "not supported"),
        ("nonsense", "malformed"),
    ],
)
def test_a_wrong_database_url_gives_one_clear_line(  # type: ignore[no-untyped-def]
    run, monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    monkeypatch.setenv("MODELYARD_DATABASE_URL", url)
    one_error_line(*run("models", "list"), message)


def test_a_flag_beats_the_environment(  # type: ignore[no-untyped-def]
    run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELYARD_DATABASE_URL", "nonsense")
    code, out, err = run(
        "--database-url", f"sqlite:///{tmp_path / 'flag.db'}", "models", "list", "--json"
    )
    assert (code, json.loads(out)) == (0, []), err
    assert (tmp_path / "flag.db").exists()


def test_audit_verify_fails_loudly_on_a_tampered_log(  # type: ignore[no-untyped-def]
    run, files, tmp_path: Path
) -> None:
    import sqlite3

    model, data = files
    run("register", str(model), "--name", "churn", "--reference", str(data), "-y", "y")
    with sqlite3.connect(tmp_path / "home" / "modelyard.db") as conn:
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    code, out, err = run("audit", "verify")
    assert code == 1
    assert "audit log broken at entry 1" in err
    code, out, _ = run("audit", "verify", "--json")
    assert json.loads(out)["first_broken"] == 1
