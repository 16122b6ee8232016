"""Skew finds processing mismatches between training and serving (standardised twice or on one
side, a change of units, an offset, labels in another case, fractions for integers) and stays
quiet on clean or identically processed data."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.preprocessing import StandardScaler

from modelyard.errors import InvalidInput
from modelyard.monitoring import TableProfile, profile_table
from modelyard.monitoring.skew import skew

from .conftest import halves, only, table


@pytest.fixture(scope="module")
def reference() -> TableProfile:
    return profile_table(table(20_000, 0))


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.DataFrame]:
    return halves(load_breast_cancer(as_frame=True).data, 0)


# --- no false alarms ----------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [50, 500, 50_000])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_windows_give_no_skew(reference: TableProfile, rows: int, seed: int) -> None:
    assert skew(reference, profile_table(table(rows, seed))) == []


@pytest.mark.parametrize("load", [load_breast_cancer, load_wine])
def test_clean_halves_of_real_datasets_give_no_skew(load: object) -> None:
    data = load(as_frame=True).frame  # type: ignore[operator]
    for seed in range(5):
        first, second = (profile_table(half) for half in halves(data, seed))
        assert skew(first, second) == []


# --- each mismatch is found ---------------------------------------------------------------------


def test_skew_finds_a_feature_standardised_twice(cancer: tuple[pd.DataFrame, ...]) -> None:
    training, serving = cancer
    scaler = StandardScaler().fit(training)
    twice = serving.copy()
    twice[:] = scaler.transform(pd.DataFrame(scaler.transform(serving), columns=serving.columns))
    serving = serving.assign(**{"mean area": twice["mean area"]})
    finding = only(skew(profile_table(training), profile_table(serving)), "skew")
    assert (finding.column, finding.severity) == ("mean area", "error")
    assert finding.message.startswith(
        "column 'mean area': values look standardised twice: serving std 0.00"
    )
    assert "≈ 1 / training std 3" in finding.message


def test_skew_finds_a_feature_standardised_on_one_side(cancer: tuple[pd.DataFrame, ...]) -> None:
    training, serving = cancer
    scaler = StandardScaler().fit(training)
    scaled = pd.DataFrame(scaler.transform(serving), columns=serving.columns, index=serving.index)
    serving = serving.assign(**{"mean texture": scaled["mean texture"]})
    finding = only(skew(profile_table(training), profile_table(serving)), "skew")
    assert finding.column == "mean texture"
    assert "serving values look standardised but training values do not" in finding.message


def test_skew_finds_a_change_of_units(reference: TableProfile) -> None:
    serving = table(2_000, 29)
    serving["income"] *= 1_000
    finding = only(skew(reference, profile_table(serving)), "skew")
    assert finding.column == "income"
    assert finding.message.startswith("column 'income': values look multiplied by 1000 at serving")
    assert finding.message.endswith("a change of units, e.g. g vs kg or ms vs s?")


def test_skew_finds_an_offset(reference: TableProfile) -> None:
    serving = table(2_000, 30)
    serving["score"] += 3.0
    finding = only(skew(reference, profile_table(serving)), "skew")
    assert (finding.column, finding.severity) == ("score", "warning")
    pattern = r"serving values sit (2\.9|3\.0|3\.1) training spreads \(IQR\) above training values"
    assert re.search(pattern, finding.message)


def test_skew_finds_labels_in_another_case(reference: TableProfile) -> None:
    serving = table(2_000, 31)
    serving["plan"] = serving["plan"].str.upper()
    finding = only(skew(reference, profile_table(serving)), "skew")
    assert finding.column == "plan"
    assert "differ from training labels only in case or whitespace ('FREE' vs 'free'" in (
        finding.message
    )


def test_skew_finds_fractions_where_training_had_integers(reference: TableProfile) -> None:
    serving = table(2_000, 32)
    serving["visits"] = serving["visits"] + np.random.default_rng(0).random(2_000) * 0.1
    finding = only(skew(reference, profile_table(serving)), "skew")
    assert finding.column == "visits"
    assert "training values are whole numbers (INT64) but serving values have fractions" in (
        finding.message
    )


def test_skew_is_silent_on_identically_processed_data(cancer: tuple[pd.DataFrame, ...]) -> None:
    training, serving = cancer
    scaler = StandardScaler().fit(training)
    both = [pd.DataFrame(scaler.transform(half), columns=half.columns) for half in cancer]
    assert skew(profile_table(both[0]), profile_table(both[1])) == []
    assert skew(profile_table(training), profile_table(serving)) == []


def test_skew_refuses_bad_arguments(reference: TableProfile) -> None:
    with pytest.raises(InvalidInput, match="serving must be a TableProfile, not a DataFrame"):
        skew(reference, table(10, 0))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="scale_ratio must be a number above 1"):
        skew(reference, reference, scale_ratio=0.5)
