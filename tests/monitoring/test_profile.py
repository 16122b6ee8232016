"""Profiling tables from every source, in chunks, and refusing bad tables and bad bytes."""

from __future__ import annotations

import math
import struct
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.errors import InvalidInput
from modelyard.monitoring import (
    CategoricalSummary,
    NumericSummary,
    TableProfile,
    profile_table,
)


def frame(rows: int = 150, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.normal(50.0, 10.0, rows).round(3)
    amount[::17] = np.nan
    amount[5] = np.inf
    plan = rng.choice(np.array(["free", "pro", "team"], dtype=object), rows)
    plan[::11] = None
    return pd.DataFrame({
        "amount": amount,
        "visits": rng.poisson(3.0, rows),
        "plan": plan,
        "active": rng.random(rows) < 0.4,
    })


def flat(summaries: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, summary in summaries.items():
        for field, value in asdict(summary).items():
            if isinstance(value, dict):
                out.update({f"{name}.{field}[{key}]": v for key, v in value.items()})
            else:
                out[f"{name}.{field}"] = value
    return out


def assert_same(first: dict[str, Any], second: dict[str, Any]) -> None:
    one, two = flat(first), flat(second)
    assert one.keys() == two.keys()
    for key, value in one.items():
        if isinstance(value, float) and not math.isinf(value):
            assert two[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert two[key] == value, key


def test_every_source_gives_the_same_profile(tmp_path: Path) -> None:
    data = frame()
    pq.write_table(pa.Table.from_pandas(data, preserve_index=False), tmp_path / "t.parquet")
    data.to_csv(tmp_path / "t.csv", index=False)
    sources = {
        "arrow": pa.Table.from_pandas(data, preserve_index=False),
        "parquet": tmp_path / "t.parquet",
        "csv": str(tmp_path / "t.csv"),
    }
    want = profile_table(data, chunk_rows=40)
    assert want.schema == {
        "amount": "numerical", "visits": "numerical", "plan": "categorical", "active": "categorical"
    }
    assert [c.dtype for c in want.columns] == ["FP64", "INT64", "BYTES", "BOOL"]
    summary = want.result()["amount"]
    assert isinstance(summary, NumericSummary)
    assert (summary.count, summary.missing, summary.pos_inf) == (150, 9, 1)
    for name, source in sources.items():
        got = profile_table(source, chunk_rows=40)
        assert (got.rows, got.chunks, got.schema) == (150, 4, want.schema), name
        assert [c.dtype for c in got.columns] == [c.dtype for c in want.columns], name
        assert_same(want.result(), got.result())


def test_a_numpy_array_profiles_as_its_frame() -> None:
    values = np.random.default_rng(1).normal(size=(120, 3))
    from_numpy = profile_table(values, chunk_rows=50)
    from_frame = profile_table(pd.DataFrame(values, columns=["f0", "f1", "f2"]), chunk_rows=50)
    assert from_numpy.schema == dict.fromkeys(["f0", "f1", "f2"], "numerical")
    assert from_numpy.result() == from_frame.result()


def test_a_caller_can_pause_between_columns_and_gets_the_same_profile() -> None:
    """``between`` runs after each column (a server's background thread yields the core
    there); the profile is the one an update without it gives."""
    values = frame(200)
    paused: list[int] = []
    plain = TableProfile().update(values)
    stepped = TableProfile().update(values, between=lambda: paused.append(1))
    assert len(paused) == len(values.columns)
    assert stepped.result() == plain.result()


def test_parquet_is_read_one_batch_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    data = frame(rows=1_000)
    pq.write_table(pa.Table.from_pandas(data, preserve_index=False), path, row_group_size=250)
    assert pq.ParquetFile(path).metadata.num_row_groups == 4
    profile = profile_table(path, chunk_rows=125)
    assert (profile.rows, profile.chunks) == (1_000, 8)
    assert profile.result()["visits"].count == 1_000  # type: ignore[union-attr]


def test_csv_is_read_chunk_rows_lines_at_a_time(tmp_path: Path) -> None:
    frame(rows=1_000).to_csv(tmp_path / "t.csv", index=False)
    profile = profile_table(tmp_path / "t.csv", chunk_rows=300)
    assert (profile.rows, profile.chunks) == (1_000, 4)


def test_kinds_override_the_inference() -> None:
    data = pd.DataFrame({"zip": [75001, 75001, 10115], "score": ["1.5", "2", None]})
    profile = profile_table(data, kinds={"zip": "categorical", "score": "numerical"})
    zips, scores = profile.result()["zip"], profile.result()["score"]
    assert isinstance(zips, CategoricalSummary)
    assert isinstance(scores, NumericSummary)
    assert zips.counts == {"75001": 2.0, "10115": 1.0}
    assert (scores.missing, scores.mean) == (1, 1.75)


def test_dates_and_booleans_are_categorical() -> None:
    data = pd.DataFrame({
        "day": pd.to_datetime(["2024-01-01", "2024-01-02"]), "flag": [True, False], "n": [1, 2]
    })
    assert profile_table(data).schema == {
        "day": "categorical", "flag": "categorical", "n": "numerical"
    }


def test_a_column_all_missing_is_allowed_and_says_so() -> None:
    data = pd.DataFrame({"x": [np.nan] * 4, "y": pd.Series([None] * 4, dtype=object)})
    result = profile_table(data).result()
    x, y = result["x"], result["y"]
    assert isinstance(x, NumericSummary)
    assert isinstance(y, CategoricalSummary)
    assert (x.count, x.missing, x.mean, x.quantiles) == (4, 4, None, {})
    assert (y.count, y.missing, y.distinct, y.counts) == (4, 4, 0.0, {})


def test_profiles_of_parts_merge_into_the_profile_of_the_whole() -> None:
    data = frame()
    parts = TableProfile().merge(profile_table(data.iloc[:60])).merge(profile_table(data.iloc[60:]))
    assert (parts.rows, parts.chunks) == (150, 2)
    assert_same(profile_table(data).result(), parts.result())


def test_serialized_profiles_round_trip(tmp_path: Path) -> None:
    profile = profile_table(frame(rows=3_000), chunk_rows=1_000)
    restored = TableProfile.from_bytes(profile.to_bytes())
    assert restored.result() == profile.result()
    assert (restored.rows, restored.chunks, restored.schema) == (3_000, 3, profile.schema)
    assert [c.dtype for c in restored.columns] == [c.dtype for c in profile.columns]
    assert len(profile.to_bytes()) < 20_000
    empty = TableProfile.from_bytes(TableProfile().to_bytes())
    assert (empty.rows, empty.columns, empty.result()) == (0, (), {})
    assert TableProfile.FORMAT_VERSION == 1


def test_an_int_column_gaining_gaps_in_a_later_csv_chunk_becomes_fp64(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("n,m\n" + "1,a\n" * 5 + ",b\n" + "2,a\n" * 4)
    profile = profile_table(path, chunk_rows=5)
    assert profile["n"].dtype == "FP64"
    assert profile.result()["n"].missing == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (pd.DataFrame({"a": pd.Series([], dtype=float)}), "the DataFrame has no rows"),
        (pa.table({"a": pa.array([], pa.float64())}), "the Arrow table has no rows"),
        (np.zeros((0, 3)), "the array has no rows"),
        (pd.DataFrame(index=range(3)), "the table has no columns"),
        (np.zeros(3), "must be 2-D"),
        ([[1, 2]], "cannot profile a list"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "repeated: a"),
    ],
)
def test_bad_tables_are_invalid_input(source: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        profile_table(source)


def test_empty_files_have_no_rows(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("a,b\n")
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), tmp_path / "empty.parquet")
    for name in ("empty.csv", "header.csv", "empty.parquet"):
        with pytest.raises(InvalidInput, match=f"'.*{name}' has no rows"):
            profile_table(tmp_path / name)


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "fake.parquet").write_text("not parquet at all")
    (tmp_path / "data.txt").write_text("a\n1\n")
    with pytest.raises(InvalidInput, match=r"'.*fake\.parquet' cannot be read: .*"):
        profile_table(tmp_path / "fake.parquet")
    with pytest.raises(InvalidInput, match=r"cannot tell the format of '.*data\.txt'"):
        profile_table(tmp_path / "data.txt")
    with pytest.raises(InvalidInput, match=r"'.*nowhere\.csv' does not exist"):
        profile_table(tmp_path / "nowhere.csv")


def test_a_word_in_a_numeric_column_names_column_and_value(tmp_path: Path) -> None:
    data = pd.DataFrame({"age": ["31", "45", "forty"]})
    with pytest.raises(InvalidInput, match=r"column 'age' is numerical: 'forty' is not a number"):
        profile_table(data, kinds={"age": "numerical"})
    path = tmp_path / "late.csv"
    path.write_text("age\n" + "30\n" * 600 + "unknown\n" + "31\n" * 10)
    with pytest.raises(InvalidInput, match=r"late\.csv': column 'age' .*'unknown' is not a number"):
        profile_table(path, chunk_rows=300)


@pytest.mark.parametrize(
    ("kinds", "message"),
    [
        ({"nope": "numerical"}, "kinds names columns the table lacks: nope"),
        ({"visits": "ordinal"}, "must be 'numerical' or 'categorical', not 'ordinal'"),
    ],
)
def test_bad_kinds_are_invalid_input(kinds: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        profile_table(frame(), kinds=kinds)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (frame().rename(columns={"plan": "tier"}), "column 3 is 'plan' in one and 'tier' in"),
        (frame().astype({"visits": str}), "column 'visits' is numerical in one and categorical"),
        (frame().assign(extra=1.0), "column 'extra' is only in the second"),
        (frame()[["amount", "visits"]], "column 'plan' is only in the first"),
    ],
)
def test_merging_different_schemas_names_the_first_difference(
    other: pd.DataFrame, message: str
) -> None:
    first, second = profile_table(frame()), profile_table(other)
    with pytest.raises(InvalidInput, match="different schemas: " + message):
        first.merge(second)


def test_a_chunk_with_other_columns_is_refused() -> None:
    profile = TableProfile().update(frame())
    with pytest.raises(InvalidInput, match="a chunk does not match the profile: column 3"):
        profile.update(frame().rename(columns={"plan": "tier"}))


def test_foreign_corrupt_and_newer_profiles_are_refused() -> None:
    blob = profile_table(frame()).to_bytes()
    broken = {
        "foreign": b"PAR1 some other file",
        "a sketch": profile_table(frame())["amount"].sketch.to_bytes(),
        "flipped": blob[:40] + bytes([blob[40] ^ 1]) + blob[41:],
        "truncated": blob[: len(blob) // 2],
    }
    for name, data in broken.items():
        with pytest.raises(InvalidInput, match="is not a modelyard profile"):
            TableProfile.from_bytes(data)
        assert name
    newer = blob[:6] + struct.pack("<H", 7) + blob[8:]
    with pytest.raises(InvalidInput, match="format version 7, newer than the version 1"):
        TableProfile.from_bytes(newer)


def test_a_parquet_file_profiled_by_several_processes_equals_one_process(tmp_path: Path) -> None:
    """(150 rows: within k, so the KLL sketches are exact and the summaries must be equal.)"""
    path = tmp_path / "table.parquet"
    frame(150, seed=3).to_parquet(path)
    alone = profile_table(path, chunk_rows=40)
    shared = profile_table(path, chunk_rows=40, workers=3)
    assert shared.schema == alone.schema  # the file's column order, whoever sketched them
    assert (shared.rows, shared.chunks) == (alone.rows, alone.chunks)
    assert_same(shared.result(), alone.result())
    with pytest.raises(InvalidInput, match="kinds names columns the table lacks: nope"):
        profile_table(path, kinds={"nope": "numerical"}, workers=2)
    bad = tmp_path / "words.parquet"
    pd.DataFrame({"age": ["31", "forty"], "x": [1.0, 2.0]}).to_parquet(bad)
    with pytest.raises(InvalidInput, match="column 'age' is numerical: 'forty' is not a number"):
        profile_table(bad, kinds={"age": "numerical"}, workers=2)
