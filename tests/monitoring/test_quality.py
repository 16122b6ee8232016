"""Quality rules stay quiet on clean data, fire on planted violations with messages naming the
column, take overrides from YAML and refuse bad input clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer, load_wine

from modelyard.errors import InvalidInput
from modelyard.monitoring import TableProfile, profile_table
from modelyard.monitoring.quality import QualityRules, load_overrides

from .conftest import halves, only, table


@pytest.fixture(scope="module")
def reference() -> TableProfile:
    return profile_table(table(20_000, 0))


@pytest.fixture(scope="module")
def rules(reference: TableProfile) -> QualityRules:
    return QualityRules.from_reference(reference)


# --- no false alarms ----------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [50, 500, 50_000])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_windows_give_no_findings(rules: QualityRules, rows: int, seed: int) -> None:
    window = profile_table(table(rows, seed))
    assert rules.check(window) == []


@pytest.mark.parametrize("load", [load_breast_cancer, load_wine])
def test_clean_halves_of_real_datasets_give_no_findings(load: object) -> None:
    data = load(as_frame=True).frame  # type: ignore[operator]
    for seed in range(5):
        first, second = (profile_table(half) for half in halves(data, seed))
        assert QualityRules.from_reference(first).check(second) == []


# --- each rule fires on a planted violation -----------------------------------------------------


def test_missing_values_above_the_learned_share(rules: QualityRules) -> None:
    window = table(5_000, 4)
    window.loc[window.index[:1_500], "score"] = np.nan
    finding = only(rules.check(profile_table(window)), "missing_share")
    assert (finding.column, finding.severity) == ("score", "warning")
    assert finding.observed == pytest.approx(0.3 + 0.7 * 0.02, abs=0.01)
    assert finding.message.startswith(
        "column 'score': 31.4% of values are missing (1,568 of 5,000)"
    )
    assert finding.message.endswith("; at most 3.5% expected")


def test_small_windows_need_more_evidence_than_large_ones(rules: QualityRules) -> None:
    small = table(10, 5)
    small.loc[small.index[:2], "plan"] = None  # 20 %, where the reference had 1 %
    assert rules.check(profile_table(small)) == []
    large = table(50_000, 5)
    large.loc[large.index[:10_000], "plan"] = None
    assert only(rules.check(profile_table(large)), "missing_share").column == "plan"


@pytest.mark.parametrize("column", ["score", "plan"])
def test_a_column_missing_in_every_row_is_an_error(rules: QualityRules, column: str) -> None:
    window = table(500, 6)
    window[column] = pd.Series([None] * 500, dtype=window[column].dtype)
    finding = only(rules.check(profile_table(window)), "missing_share")
    assert finding.severity == "error"
    assert finding.message.startswith(f"column {column!r} is missing in all 500 rows")


def test_range_reports_the_share_of_values_outside(rules: QualityRules) -> None:
    window = table(50_000, 7)
    window.loc[window.index[::20], "income"] *= 1_000  # 5 % in the wrong units
    finding = only(rules.check(profile_table(window)), "range")
    assert finding.column == "income"
    assert isinstance(finding.observed, float)
    assert finding.observed == pytest.approx(0.05, abs=0.015)  # the KLL rank error, k = 200
    assert "of values (about " in finding.message
    assert "lie outside [2181, 285046]" in finding.message


def test_one_extreme_breaks_an_explicit_range_but_not_a_learned_one(rules: QualityRules) -> None:
    window = table(50_000, 8)
    window.loc[window.index[0], "age"] = 150
    assert rules.check(profile_table(window)) == []
    explicit = rules.with_overrides({"columns": {"age": {"range": [0, 120]}}})
    finding = only(explicit.check(profile_table(window)), "range")
    assert finding.message.startswith("column 'age': ")  # "0.002% of values (about 1 of 50,000)"
    assert finding.message.endswith(
        "lie outside [0, 120], current min 18, max 150; at most 0% expected"
    )


def test_infinities_are_out_of_range_unless_the_reference_had_some(rules: QualityRules) -> None:
    window = table(2_000, 9)
    window.loc[window.index[:100], "score"] = np.inf
    finding = only(rules.check(profile_table(window)), "range")
    assert (finding.column, ", 100 of them ±inf") == ("score", ", 100 of them ±inf")
    assert ", 100 of them ±inf" in finding.message
    with_inf = table(20_000, 10)
    with_inf.loc[with_inf.index[:500], "score"] = np.inf
    assert QualityRules.from_reference(profile_table(with_inf)).check(profile_table(window)) == []


def test_unseen_labels_are_named_with_their_counts(rules: QualityRules) -> None:
    window = table(1_000, 11)
    window.loc[window.index[:60], "plan"] = "enterprise"
    window.loc[window.index[60:62], "plan"] = "Pro"
    finding = only(rules.check(profile_table(window)), "unseen_categories")
    assert finding.column == "plan"
    assert finding.message.startswith(
        "column 'plan': 6.2% of values (62 of 993) have labels the reference never had: "
        "'enterprise' (60), 'Pro' (2); at most 0.035% expected"
    )


def test_many_rare_new_labels_are_found_in_the_pooled_bucket(rules: QualityRules) -> None:
    window = table(50_000, 12)
    window.loc[window.index[:5_000], "plan"] = [f"trial-{i}" for i in range(5_000)]
    finding = only(rules.check(profile_table(window)), "unseen_categories")
    assert finding.observed == pytest.approx(0.1, abs=0.01)
    assert finding.message.startswith("column 'plan': at least 10.1% of values (up to 10.1%: rare")
    assert "pooled under '__other__'" in finding.message


def test_high_cardinality_columns_expect_new_labels() -> None:
    rng = np.random.default_rng(13)

    def ids(rows: int) -> pd.DataFrame:
        return pd.DataFrame({"user": [f"u{i}" for i in rng.integers(0, 100_000, rows)]})

    for rows in (500, 20_000):  # exact reference (Good-Turing), then a pooled one
        learned = QualityRules.from_reference(profile_table(ids(rows)))
        assert learned.column("user").allowed_exact == (rows == 500)
        assert learned.check(profile_table(ids(5_000))) == []


def test_numbers_turning_into_text_is_a_type_error(rules: QualityRules) -> None:
    window = table(500, 14)
    window["age"] = window["age"].astype(str) + " years"
    finding = only(rules.check(profile_table(window)), "type")
    assert (finding.column, finding.severity, finding.observed) == ("age", "error", "BYTES")
    assert finding.message == (
        "column 'age' was numerical (INT64) in the reference but is categorical (BYTES) now: "
        "values that are not numbers appeared"
    )


def test_integers_with_gaps_pass_but_fractions_are_a_type_change(rules: QualityRules) -> None:
    window = table(500, 15)
    window["age"] = window["age"].astype(float)
    window.loc[window.index[0], "age"] = np.nan  # pandas and CSV make such columns FP64
    assert rules.check(profile_table(window)) == []
    window["age"] += 0.5
    finding = only(rules.check(profile_table(window)), "type")
    assert finding.message == (
        "column 'age' holds FP64 values now; the reference had INT64, and they have fractions"
    )


def test_a_column_that_stops_varying(rules: QualityRules) -> None:
    window = table(500, 16)
    window["score"] = 0.25
    finding = only(rules.check(profile_table(window)), "constant")
    assert finding.message == (
        "column 'score' is constant now (all 500 values are 0.25) but varied in the reference"
    )
    assert rules.check(profile_table(table(500, 16).assign(active=True))) != []


def test_a_column_constant_in_the_reference_that_varies() -> None:
    data = table(5_000, 17).assign(region="eu")
    learned = QualityRules.from_reference(profile_table(data))
    window = table(1_000, 18).assign(region="eu")
    assert learned.check(profile_table(window)) == []
    window.loc[window.index[:200], "region"] = "us"
    rules_fired = {f.rule for f in learned.check(profile_table(window)) if f.column == "region"}
    assert rules_fired == {"constant", "unseen_categories"}
    constant = next(f for f in learned.check(profile_table(window)) if f.rule == "constant")
    assert "was constant ('eu') in the reference, so the model never saw it vary" in (
        constant.message
    )


def test_row_volume_only_when_configured(rules: QualityRules) -> None:
    window = profile_table(table(500, 19))
    assert rules.check(window) == []
    bounded = rules.with_overrides({"table": {"min_rows": 1_000}})
    finding = only(bounded.check(window), "row_volume")
    assert (finding.column, finding.observed, finding.expected) == (None, 500, "≥ 1,000 rows")
    assert finding.message == "the current data has 500 rows; at least 1,000 expected"
    capped = rules.with_overrides({"table": {"max_rows": 100}})
    assert only(capped.check(window), "row_volume").message.endswith("at most 100 expected")


def test_missing_and_extra_columns(rules: QualityRules) -> None:
    window = table(500, 20).drop(columns="visits").assign(extra=1.0)
    found = [(f.rule, f.column, f.severity) for f in rules.check(profile_table(window))]
    assert found == [("schema", "visits", "error"), ("schema", "extra", "warning")]
    ignored = rules.with_overrides({"columns": {"visits": {"ignore": True}}})
    assert [f.column for f in ignored.check(profile_table(window))] == ["extra"]


def test_an_empty_window_is_reported_as_such(rules: QualityRules) -> None:
    for empty in (TableProfile(), TableProfile().update(table(5, 21).iloc[:0])):
        finding = only(rules.check(empty), "row_volume")
        assert finding.message == "the current data has no rows, so no other rule can be checked"


def test_an_empty_reference_is_refused() -> None:
    with pytest.raises(InvalidInput, match="the reference profile has no rows"):
        QualityRules.from_reference(TableProfile())


def test_rules_judge_a_window_merged_from_several_workers(rules: QualityRules) -> None:
    window = table(4_000, 22)
    window.loc[window.index[::10], "plan"] = "enterprise"
    merged = profile_table(window.iloc[:1_500]).merge(profile_table(window.iloc[1_500:]))
    whole = rules.check(profile_table(window))
    assert rules.check(merged) == whole
    assert only(whole, "unseen_categories").message.startswith(
        "column 'plan': 10.1% of values (400 of 3,968) have labels the reference never had"
    )


def test_findings_are_json_friendly(rules: QualityRules) -> None:
    window = table(500, 23).drop(columns="visits")
    window["age"] = window["age"].astype(str)
    found = [finding.to_dict() for finding in rules.check(profile_table(window))]
    assert json.loads(json.dumps(found)) == found
    assert set(found[0]) == {"rule", "column", "severity", "message", "observed", "expected"}


# --- overrides ----------------------------------------------------------------------------------

OVERRIDES = """\
columns:
  age: {range: [0, 120], max_missing_share: 0.1}
  plan: {allowed: [free, pro, team], max_unseen_share: 0.0}
  notes: {ignore: true}
table: {min_rows: 100, max_rows: 1000000}
"""


def test_overrides_from_a_yaml_file_change_what_fires(tmp_path: Path) -> None:
    learned = QualityRules.from_reference(profile_table(table(500, 24).assign(notes="ok")))
    window = table(2_000, 25).assign(notes="ok")
    window.loc[window.index[:100], "age"] = 119  # beyond the learned range, inside [0, 120]
    window.loc[window.index[:3], "plan"] = "enterprise"  # 0.15 %: under the learned 1.4 %
    window = window.drop(columns="notes")
    assert [(f.rule, f.column) for f in learned.check(profile_table(window))] == [
        ("range", "age"), ("schema", "notes")
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(OVERRIDES)
    overridden = learned.with_overrides(load_overrides(path))
    assert overridden.column("age").range == (0.0, 120.0)
    assert overridden.column("age").max_missing_share == 0.1
    assert [(f.rule, f.column) for f in overridden.check(profile_table(window))] == [
        ("unseen_categories", "plan")
    ]
    assert only(overridden.check(profile_table(table(50, 26))), "row_volume").column is None


def test_yes_and_no_stay_labels_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("columns:\n  answer: {allowed: [yes, no, 1, 2.0], ignore: false}\n")
    assert load_overrides(path) == {
        "columns": {"answer": {"allowed": ["1", "2", "no", "yes"], "ignore": False}}
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("columns: [age",
         r"^'.*rules.yaml' is not valid YAML: expected ',' or '\]'.*\(line 1, column 14\)$"),
        ("- age\n- plan\n", r"must be a mapping of names to settings, not list"),
        ("colums: {}\n", r"unknown setting 'colums' \(did you mean 'columns'\?\)"),
        ("columns:\n  age: {rnage: [0, 1]}\n",
         r"columns\.age: unknown setting 'rnage' \(did you mean 'range'\?\)"),
        ("columns:\n  age: {range: abc}\n",
         r"columns\.age\.range must be \[low, high\], two numbers \(null for no limit\), not 'ab"),
        ("columns:\n  age: {range: [9, 1]}\n", r"columns\.age\.range must have low ≤ high"),
        ("columns:\n  age: {max_missing_share: 1.5}\n",
         r"columns\.age\.max_missing_share must be a share from 0 to 1, not 1\.5"),
        ("columns:\n  age: {ignore: maybe}\n", r"columns\.age\.ignore must be true or false"),
        ("columns:\n  age: {skip: [rnage]}\n", r"columns\.age\.skip names rule 'rnage'"),
        ("columns:\n  age: {dtypes: FLOAT}\n", r"columns\.age\.dtypes must be a datatype"),
        ("columns:\n  plan: {allowed: []}\n", r"columns\.plan\.allowed must list at least one"),
        ("table: {min_rows: 10, max_rows: 5}\n", r"table: min_rows \(10\) is above max_rows"),
        ("table: {min_rows: -1}\n", r"table\.min_rows must be a whole number ≥ 0 or null"),
    ],
)
def test_bad_override_files_are_refused_in_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message) as caught:
        load_overrides(path)
    assert "\n" not in str(caught.value)


def test_a_missing_override_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"'.*absent.yaml' does not exist"):
        load_overrides(tmp_path / "absent.yaml")


def test_overrides_must_fit_the_reference(rules: QualityRules) -> None:
    with pytest.raises(InvalidInput, match=r"column 'agee', .* \(did you mean 'age'\?\)"):
        rules.with_overrides({"columns": {"agee": {"range": [0, 120]}}})
    with pytest.raises(InvalidInput, match=r"plan\.range applies to numerical columns; 'plan' is"):
        rules.with_overrides({"columns": {"plan": {"range": [0, 1]}}})
    with pytest.raises(InvalidInput, match=r"age\.allowed applies to categorical columns"):
        rules.with_overrides({"columns": {"age": {"allowed": [1, 2]}}})


def test_skipping_a_rule_for_one_column(rules: QualityRules) -> None:
    window = table(500, 27)
    window["score"] = 0.25
    assert rules.check(profile_table(window)) != []
    skipped = rules.with_overrides({"columns": {"score": {"skip": "constant"}}})
    assert skipped.check(profile_table(window)) == []


# --- serialisation ------------------------------------------------------------------------------


def test_rules_round_trip_through_json_and_yaml(rules: QualityRules) -> None:
    edited = rules.with_overrides(yaml.safe_load(OVERRIDES.replace("notes", "visits")))
    for rule_set in (rules, edited):
        data = rule_set.to_dict()
        assert QualityRules.from_dict(json.loads(json.dumps(data))) == rule_set
        text = yaml.safe_dump(data, sort_keys=False)  # the column order is the check's order
        assert QualityRules.from_dict(yaml.safe_load(text)) == rule_set
    window = table(2_000, 28)
    window.loc[window.index[:50], "plan"] = "enterprise"
    again = QualityRules.from_dict(json.loads(json.dumps(edited.to_dict())))
    assert again.check(profile_table(window)) == edited.check(profile_table(window)) != []


def test_bad_rule_dicts_are_refused(rules: QualityRules) -> None:
    data = rules.to_dict()
    with pytest.raises(InvalidInput, match="rules have version 99; this modelyard reads version 1"):
        QualityRules.from_dict({**data, "version": 99})
    broken = json.loads(json.dumps(data))
    broken["columns"]["age"]["kind"] = "numeric"
    with pytest.raises(InvalidInput, match=r"columns\.age\.kind must be numerical or categorical"):
        QualityRules.from_dict(broken)
    with pytest.raises(InvalidInput, match="confidence must be a number from 0.5 to below 1"):
        QualityRules.from_dict({**data, "confidence": 1.0})
