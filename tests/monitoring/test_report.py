"""Reports over two tables: the JSON contract, planted drift, files in chunks, HTML, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.errors import InvalidInput
from modelyard.monitoring.html import render_html
from modelyard.monitoring.report import ReportOptions, Roles, build_report

FAST = ReportOptions(multivariate=False)


def table(rng: np.random.Generator, rows: int, shift: float = 0.0, numeric: int = 4,
          categorical: int = 1) -> pd.DataFrame:
    columns: dict[str, object] = {}
    for i in range(numeric):
        columns[f"x{i}"] = rng.normal(shift if i < 2 else 0.0, 1.0, rows)
    for j in range(categorical):
        columns[f"c{j}"] = rng.choice(["red", "green", "blue", "grey"], rows, p=[.4, .3, .2, .1])
    return pd.DataFrame(columns)


def test_the_json_contract_holds_and_same_distribution_shows_no_drift() -> None:
    rng = np.random.default_rng(1)
    report = build_report(table(rng, 8000), table(rng, 2000), options=FAST)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["dataset_drift"] is False
    # Each column may alarm falsely at alpha (1%) and the sketches compact at random, so one of
    # five is possible by chance (the rate itself is held in test_calibration); two are not.
    assert data["drift_share"] <= 0.2
    assert [c["name"] for c in data["columns"]] == ["x0", "x1", "x2", "x3", "c0"]
    for column in data["columns"]:
        assert {"name", "kind", "method", "score", "threshold", "drift_detected",
                "quality"} <= column.keys()
        assert column["drift_detected"] is (column["score"] > column["threshold"])
    kinds = {c["name"]: (c["kind"], c["method"]) for c in data["columns"]}
    assert kinds["x0"] == ("numerical", "wasserstein")
    assert kinds["c0"] == ("categorical", "jensenshannon")
    assert data["reference"]["rows"] == 8000
    assert data["current"]["rows"] == 2000


def test_planted_shifts_are_named_and_count_towards_dataset_drift() -> None:
    rng = np.random.default_rng(2)
    current = table(rng, 3000, shift=0.5)
    current["c0"] = rng.choice(["red", "green", "blue", "grey"], 3000, p=[.1, .2, .3, .4])
    report = build_report(table(rng, 10_000), current,
                          options=ReportOptions(multivariate=False, drift_share=0.5))
    assert report.drifted == ["x0", "x1", "c0"]
    assert report.dataset_drift is True
    assert report.drift_share == pytest.approx(3 / 5)


def test_one_method_for_all_or_per_column() -> None:
    rng = np.random.default_rng(3)
    options = ReportOptions(multivariate=False, method="ks", methods={"c0": "chisquare"})
    report = build_report(table(rng, 4000), table(rng, 1000), options=options)
    assert [c.method for c in report.columns] == ["ks", "ks", "ks", "ks", "chisquare"]
    with pytest.raises(InvalidInput, match="unknown drift method 'kss'"):
        build_report(table(rng, 100), table(rng, 100), options=ReportOptions(method="kss"))
    with pytest.raises(InvalidInput, match="does not compare categorical columns"):
        build_report(table(rng, 500), table(rng, 500),
                     options=ReportOptions(multivariate=False, methods={"c0": "ks"}))


def test_parquet_and_csv_read_in_chunks_agree_with_the_frame(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    reference, current = table(rng, 6000), table(rng, 2500, shift=0.4)
    reference.to_parquet(tmp_path / "ref.parquet", row_group_size=700)
    current.to_csv(tmp_path / "cur.csv", index=False)
    chunked = ReportOptions(multivariate=False, chunk_rows=900)
    steps: list[tuple[str, int, int | None]] = []
    from_files = build_report(tmp_path / "ref.parquet", tmp_path / "cur.csv", options=chunked,
                              progress=lambda *args: steps.append(args))
    from_frames = build_report(reference, current, options=FAST)
    assert from_files.drifted == from_frames.drifted == ["x0", "x1"]
    assert from_files.sides["current"]["rows"] == 2500
    reads = [s for s in steps if s[0] == "reading reference"]
    assert reads[-1] == ("reading reference", 6000, 6000)  # Parquet knows its size
    assert [s for s in steps if s[0] == "reading current"][-1] == ("reading current", 2500, None)
    assert steps[-1] == ("comparing columns", 5, 5)


@pytest.mark.slow
def test_html_is_self_contained_and_does_not_grow_with_rows() -> None:
    rng = np.random.default_rng(5)

    def page(rows: int) -> str:
        wide_ref = table(rng, rows, numeric=20, categorical=5)
        wide_cur = table(rng, rows, shift=1.0, numeric=20, categorical=5)
        options = ReportOptions(multivariate=False, n_boot=99, calibration_rows=2000)
        return render_html(build_report(wide_ref, wide_cur, options=options).to_dict())

    small, large = page(1_000), page(60_000)
    assert len(large.encode()) <= 1_000_000
    assert abs(len(large) - len(small)) < 0.05 * len(small)
    assert not re.search(r"<script|https?://|<link|@import", large)
    assert large.count("<svg") == 26  # the scores chart and one histogram per column
    drifted = re.search(r"<p>Drifted: ([^<]*)</p>", large)
    assert drifted is not None
    assert {"x0", "x1"} <= set(drifted.group(1).split(", "))


def test_mismatched_schemas_compare_what_is_common_and_say_what_is_not() -> None:
    rng = np.random.default_rng(6)
    reference = table(rng, 3000)
    current = table(rng, 1000).drop(columns=["x3"]).assign(extra=1.0)
    report = build_report(reference, current, options=FAST)
    assert [c.name for c in report.columns] == ["x0", "x1", "x2", "c0"]
    messages = " ".join(f.message for f in report.quality)
    assert "x3" in messages
    assert "extra" in messages
    with pytest.raises(InvalidInput, match="share no column"):
        build_report(reference, pd.DataFrame({"other": [1.0, 2.0]}), options=FAST)


def test_bad_tables_give_clear_messages(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    reference = table(rng, 2000)
    with pytest.raises(InvalidInput, match="has no rows"):
        build_report(reference, reference.iloc[:0], options=FAST)
    (tmp_path / "empty.csv").write_text("x0,x1\n")
    with pytest.raises(InvalidInput, match="has no rows"):
        build_report(reference, tmp_path / "empty.csv", options=FAST)
    words = table(rng, 500).astype({"x1": object})
    words.loc[7, "x1"] = "twelve"
    with pytest.raises(InvalidInput, match=r"column 'x1' is numerical: 'twelve' is not a number"):
        build_report(reference, words, options=FAST)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InvalidInput, match="cannot be read"):
        build_report(reference, tmp_path / "broken.parquet", options=FAST)


def test_an_all_missing_column_is_reported_not_compared() -> None:
    rng = np.random.default_rng(8)
    current = table(rng, 800)
    current["x2"] = np.nan
    report = build_report(table(rng, 3000), current, options=FAST)
    x2 = next(c for c in report.columns if c.name == "x2")
    assert x2.method is None
    assert x2.drift_detected is False
    assert x2.note is not None
    assert "no values in the current" in x2.note
    assert any(f.column == "x2" for f in x2.quality)


def test_multivariate_drift_sees_a_correlation_change_the_columns_miss() -> None:
    rng = np.random.default_rng(9)
    rows = 3000
    a = rng.normal(size=rows)
    reference = pd.DataFrame({"a": a, "b": 0.95 * a + 0.3 * rng.normal(size=rows),
                              "c": rng.normal(size=rows)})
    spread = np.sqrt(0.95**2 + 0.3**2)  # b's standard deviation in the reference
    current = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows) * spread,
                            "c": rng.normal(size=rows)})
    report = build_report(reference, current)
    assert report.drifted == []
    found = {r["method"]: r for r in report.multivariate}
    assert found["domain_classifier"]["drift_detected"] is True
    top = sorted(found["domain_classifier"]["contributions"].items(), key=lambda kv: -kv[1])
    assert {top[0][0], top[1][0]} == {"a", "b"}


def test_performance_with_labels_and_probabilities() -> None:
    rng = np.random.default_rng(10)

    def scored(rows: int, shift: float) -> pd.DataFrame:
        x = rng.normal(shift, 1.0, rows)
        p = 1 / (1 + np.exp(-2 * x))
        y = (rng.random(rows) < p).astype(int)
        return pd.DataFrame({"x": x, "y": y, "pred": (p > 0.5).astype(int), "p0": 1 - p,
                             "p1": p})

    roles = Roles(target="y", prediction="pred", probabilities={"0": "p0", "1": "p1"})
    current = scored(4000, 0.8)
    report = build_report(scored(8000, 0.0), current, roles=roles, options=FAST)
    section = report.performance
    assert section is not None
    assert section["task"] == "classification"
    truth = float((current["pred"] == current["y"]).mean())
    assert section["realised"]["accuracy"] == pytest.approx(truth)
    estimate = section["estimated"]["accuracy"]
    assert abs(estimate["value"] - truth) < 0.02
    assert [c.role for c in report.columns] == ["feature", "target", "prediction",
                                               "probability", "probability"]
    assert report.drifted[0] == "x"
