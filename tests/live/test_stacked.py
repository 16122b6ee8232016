"""Requests stacked column by column: what stacks, what does not, and that nothing is mixed up
on the way to window profiles and the prediction log."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.live.stacked import Stacked
from modelyard.serving.observe import Observation

T0 = 1.7e9


def request(i: int, rows: int = 1, width: int = 3, outputs: tuple[str, ...] = ("predict",),
            tensor: str | None = None, dtype: type = np.float32) -> Observation:
    data = (np.arange(rows * width, dtype=dtype).reshape(rows, width) + 10 * i)
    values = {"predict": np.arange(rows) + i, "predict_proba": np.full((rows, 2), 0.25 * (i % 4)),
              "embedding": np.zeros((rows, 20))}
    return Observation("churn", 1, f"r{i}", T0 + i, 0.001 * (i + 1), rows, ["a", "b", "c"],
                       data if tensor is None else {tensor: data},
                       {name: values[name] for name in outputs}, [0, 1])


def test_each_request_keeps_its_own_rows_times_and_outputs() -> None:
    seen = [request(0, rows=2), request(1), request(2, rows=3)]
    stacked = Stacked.of(seen)
    assert stacked is not None
    assert (stacked.requests, stacked.rows) == (3, 6)
    assert stacked.counts is not None
    assert stacked.counts.tolist() == [2, 1, 3]
    assert stacked.latency_ms.tolist() == pytest.approx([1.0, 2.0, 3.0])
    assert stacked.profile_columns()["a"].tolist() == [0, 3, 10, 20, 23, 26]
    assert stacked.outputs["prediction"].tolist() == [0, 1, 1, 2, 3, 4]
    again = Stacked.build("churn", 1, ["a", "b", "c"], [0, 1], [o.request_id for o in seen],
                          [o.at for o in seen], [o.latency_s for o in seen],
                          [o.data for o in seen], [o.outputs for o in seen])
    assert again is not None
    rebuilt = again.observations()
    for original, back in zip(seen, rebuilt, strict=True):
        assert (back.request_id, back.at, back.rows) == (original.request_id, original.at,
                                                           original.rows)
        assert np.array_equal(back.data, original.data)
        assert np.array_equal(back.outputs["predict"], original.outputs["predict"])


def test_a_batch_as_the_model_ran_it_splits_back_into_its_requests() -> None:
    """A batcher's batch comes stacked already: ``counts`` says whose rows are whose."""
    seen = [request(0, rows=2), request(1), request(2, rows=3)]
    batch = np.concatenate([o.data for o in seen])
    outputs = {"predict": np.concatenate([o.outputs["predict"] for o in seen])}
    stacked = Stacked.build("churn", 1, ["a", "b", "c"], [0, 1], ["x", "y", "z"], [T0] * 3,
                            [0.003, 0.002, 0.001], [batch], [outputs], counts=[2, 1, 3])
    assert stacked is not None
    assert (stacked.requests, stacked.rows) == (3, 6)
    back = stacked.observations()
    assert [o.request_id for o in back] == ["x", "y", "z"]
    assert [o.latency_s for o in back] == pytest.approx([0.003, 0.002, 0.001])
    for original, split in zip(seen, back, strict=True):
        np.testing.assert_array_equal(split.data, original.data)
        np.testing.assert_array_equal(split.outputs["predict"], original.outputs["predict"])
    one_each = Stacked.build("churn", 1, ["a", "b", "c"], [0, 1], ["x", "y"], [T0] * 2,
                             [0.001] * 2, [batch[:2]], [{"predict": np.arange(2)}],
                             counts=[1, 1])
    assert one_each is not None
    assert one_each.counts is None  # (one row each: the common layout)
    assert Stacked.build("churn", 1, ["a", "b", "c"], [0, 1], ["x", "y"], [T0] * 2, [0.001] * 2,
                         [batch], [outputs], counts=[2, 1]) is None  # 3 rows told, 6 given


def test_classifier_outputs_become_prediction_and_one_column_per_class() -> None:
    stacked = Stacked.of([request(i, outputs=("predict", "predict_proba")) for i in range(4)])
    assert stacked is not None
    assert list(stacked.outputs) == ["prediction", "proba_0", "proba_1"]
    assert stacked.outputs["proba_1"].tolist() == [0.0, 0.25, 0.5, 0.75]
    assert stacked.loggable


@pytest.mark.parametrize("odd", [
    request(9, width=4),  # another width
    request(9, dtype=np.float64),  # another dtype
    request(9, outputs=("predict", "predict_proba")),  # asked for other outputs
    request(9, tensor="X"),  # a named tensor beside a matrix
])
def test_requests_that_do_not_match_the_others_do_not_stack(odd: Observation) -> None:
    assert Stacked.of([request(0), request(1), odd]) is None


def test_a_single_tensor_model_stacks_and_names_its_columns_by_tensor() -> None:
    stacked = Stacked.of([request(i, tensor="X") for i in range(3)])
    assert stacked is not None
    assert stacked.tensor == "X"
    assert stacked.input_names == ["a", "b", "c"]  # as wide as the model's columns
    wide = Stacked.build("mlp", 1, ["X"], None, ["m0"], [T0], [0.001],
                         [{"X": np.zeros((1, 64), np.float32)}], [{"label": np.array([3])}])
    assert wide is not None
    assert wide.input_names[:2] == ["X_0", "X_1"]
    assert wide.log_names[:2] == ["f0", "f1"]


def test_wide_outputs_are_left_out_of_profiles_and_not_loggable_as_columns() -> None:
    stacked = Stacked.of([request(i, outputs=("predict", "embedding")) for i in range(2)])
    assert stacked is not None
    assert list(stacked.outputs) == ["prediction"]
    assert not stacked.loggable


def test_take_and_concat_keep_rows_with_their_requests() -> None:
    stacked = Stacked.of([request(0, rows=2), request(1), request(2, rows=2)])
    assert stacked is not None
    kept = stacked.take(np.array([True, False, True]))
    assert kept.ids == ["r0", "r2"]
    assert kept.profile_columns()["a"].tolist() == [0, 3, 20, 23]
    joined = Stacked.concat([kept, Stacked.of([request(3)])])  # type: ignore[list-item]
    assert joined.ids == ["r0", "r2", "r3"]
    assert joined.counts is not None
    assert joined.counts.tolist() == [2, 2, 1]
    assert joined.outputs["prediction"].tolist() == [0, 1, 2, 3, 3]
