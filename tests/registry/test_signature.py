from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelyard.errors import SignatureMismatch
from modelyard.registry.signature import columns_signature, output_specs, to_frame, to_tensors
from modelyard.types import Signature, TensorSpec

SIG = Signature(
    inputs=[
        TensorSpec(name="age", datatype="INT64", shape=[-1]),
        TensorSpec(name="income", datatype="FP64", shape=[-1]),
        TensorSpec(name="plan", datatype="BYTES", shape=[-1]),
    ]
)


def test_signature_follows_the_table() -> None:
    frame = pd.DataFrame({"age": [30], "income": [1.5], "plan": ["gold"], "vip": [True]})
    assert [s.describe() for s in columns_signature(frame)] == [
        "age: INT64[-1]", "income: FP64[-1]", "plan: BYTES[-1]", "vip: BOOL[-1]"
    ]


def test_outputs_have_a_variable_batch_dimension() -> None:
    specs = output_specs({"predict": np.zeros(4), "predict_proba": np.zeros((4, 3))})
    assert [(s.name, s.datatype, s.shape) for s in specs] == [
        ("predict", "FP64", [-1]), ("predict_proba", "FP64", [-1, 3])
    ]


def test_columns_are_put_in_order_cast_and_extras_dropped() -> None:
    frame = pd.DataFrame({"plan": ["a"], "extra": [0], "income": [3], "age": [41.0]})
    out = to_frame(frame, SIG)
    assert list(out.columns) == ["age", "income", "plan"]
    assert out["age"].dtype == np.int64
    assert out["income"].dtype == np.float64


def test_arrays_records_and_dicts_are_accepted() -> None:
    rows = [{"age": 1, "income": 2.0, "plan": "x"}]
    assert to_frame(rows, SIG).shape == (1, 3)
    assert to_frame({"age": [1], "income": [2.0], "plan": ["x"]}, SIG).shape == (1, 3)
    numeric = Signature(inputs=[TensorSpec(name=n, datatype="FP32", shape=[-1]) for n in "ab"])
    out = to_frame(np.array([[1, 2], [3, 4]]), numeric)
    assert out["a"].dtype == np.float32
    assert out.shape == (2, 2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pd.DataFrame({"age": [1], "plan": ["x"]}), "missing column.*'income'"),
        (pd.DataFrame({"age": ["old"], "income": [1.0], "plan": ["x"]}),
         "'age' should be INT64 but holds 'old'"),
        (pd.DataFrame({"age": [1.5], "income": [1.0], "plan": ["x"]}), "'age' holds fractions"),
        (pd.DataFrame({"age": [np.nan], "income": [1.0], "plan": ["x"]}),
         "'age' has missing values"),
        (pd.DataFrame({"age": [1], "income": [1.0], "plan": [7]}), "'plan' holds numbers"),
        (pd.DataFrame({"age": [], "income": [], "plan": []}), "no rows"),
        (np.zeros((2, 5)), "5 columns, the model takes 3"),
        (np.zeros((2, 3, 1)), "3 dimensions"),
    ],
)
def test_data_that_does_not_fit_names_the_column(data: object, message: str) -> None:
    with pytest.raises(SignatureMismatch, match=message):
        to_frame(data, SIG)


def test_tensor_signatures_check_shape_and_cast() -> None:
    sig = Signature(inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, 4])], columnar=False)
    out = to_tensors(np.ones((3, 4)), sig)
    assert out["x"].dtype == np.float32
    with pytest.raises(SignatureMismatch, match=r"shape \[3, 5\], the model takes \[-1, 4\]"):
        to_tensors(np.ones((3, 5)), sig)
    with pytest.raises(SignatureMismatch, match="'x' is missing"):
        to_tensors({"y": np.ones((1, 4))}, sig)
