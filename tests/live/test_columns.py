"""Column buffers that model threads write answered groups into: what they take, what they
refuse untouched, and what the fold gets back."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelyard.live.columns import Buffers
from modelyard.serving.model import Prepared


@dataclass(eq=False)
class Model:  # what the buffers read of a served model
    name: str = "digits"
    version: int = 3
    columns: list[str] = field(default_factory=lambda: ["a", "b"])
    manifest: Any = field(default_factory=lambda: type("M", (), {"classes": [0, 1]})())


def group(first: int, rows: list[int], dtype: type = np.float32, tensor: str | None = "X",
          ) -> tuple[list[Prepared], list[dict[str, np.ndarray]]]:
    parts, results, at = [], [], first
    for i, n in enumerate(rows):
        data = np.arange(at * 2, (at + n) * 2, dtype=dtype).reshape(n, 2)
        parts.append(Prepared(data if tensor is None else {tensor: data}, n, None,
                              f"r{first + i}", started=100.0 + first + i))
        results.append({"label": np.arange(at, at + n), "probabilities": np.full((n, 2), 0.5)})
        at += n
    return parts, results


def test_groups_from_several_threads_come_back_as_one_group_with_each_requests_rows() -> None:
    buffers, model = Buffers(), Model()

    def write(thread: int) -> None:
        for k in range(40):  # 40 groups of 3 requests and 5 rows each, per thread
            first = 1000 * thread + 10 * k
            parts, results = group(first, [1, 3, 1])
            assert buffers.add(model, parts, results, finished=200.0)  # type: ignore[arg-type]

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [found] = buffers.take()

    assert (found.requests, found.rows) == (480, 800)  # past the first 256 rows: grown
    assert (found.tensor, found.model, found.version) == ("X", "digits", 3)
    for observation in found.observations():  # each request's rows, outputs and latency
        first = int(observation.request_id[1:])
        start = (first // 10) * 10
        offset = {0: 0, 1: 1, 2: 4}[first - start]
        at = start + offset
        np.testing.assert_array_equal(observation.data["X"],
                                      np.arange(at * 2, (at + observation.rows) * 2
                                                ).reshape(-1, 2))
        np.testing.assert_array_equal(observation.outputs["label"],
                                      np.arange(at, at + observation.rows))
        assert observation.latency_s == 200.0 - (100.0 + first)
    assert buffers.take() == []  # taken whole: the buffers start again empty


def test_a_group_that_does_not_fit_is_refused_and_leaves_nothing_behind() -> None:
    buffers, model = Buffers(), Model()
    parts, results = group(0, [2, 1])
    assert buffers.add(model, parts, results, 1.0)  # type: ignore[arg-type]
    short = group(10, [2, 1])
    short[1][0]["label"] = np.array([7])  # one output row for two input rows
    failed = group(20, [1, 1])
    failed[1][1] = ValueError("no")  # type: ignore[call-overload]
    other_outputs = group(30, [1, 1])
    del other_outputs[1][1]["probabilities"]
    renamed = group(35, [1, 1])
    renamed[1][1]["scores"] = renamed[1][1].pop("probabilities")
    named = group(40, [1, 1])
    for parts_, results_ in (short, failed, other_outputs, renamed):
        assert not buffers.add(model, parts_, results_, 1.0)  # type: ignore[arg-type]
    text = group(50, [1])
    text[1][0]["label"] = np.array(["cat"])
    assert not buffers.add(model, *text, 1.0)  # type: ignore[arg-type]
    # inputs of another dtype or tensor name go to a buffer of their own
    assert buffers.add(model, *group(60, [1, 2], dtype=np.float64), 1.0)  # type: ignore[arg-type]
    assert buffers.add(model, *group(70, [1], tensor=None), 1.0)  # type: ignore[arg-type]
    assert buffers.add(model, *named, 1.0)  # type: ignore[arg-type]

    found = {(g.tensor, g.matrix.dtype.str): g for g in buffers.take()}

    assert set(found) == {("X", "<f4"), ("X", "<f8"), (None, "<f4")}
    assert found[("X", "<f4")].ids == ["r0", "r1", "r40", "r41"]
    assert found[("X", "<f4")].rows == 5
    assert found[("X", "<f8")].ids == ["r60", "r61"]
    assert found[(None, "<f4")].ids == ["r70"]


def test_withdrawn_requests_are_left_out_and_a_full_buffer_counts_what_it_drops() -> None:
    buffers, model = Buffers(max_requests=4), Model()
    assert buffers.add(model, *group(0, [1, 2, 1]), 1.0)  # type: ignore[arg-type]
    buffers.withdraw(["r1"])
    assert buffers.add(model, *group(10, [1, 1]), 1.0)  # type: ignore[arg-type]
    assert buffers.add(model, *group(20, [1, 1]), 1.0)  # type: ignore[arg-type]  # dropped

    [found] = buffers.take()

    assert found.ids == ["r0", "r2", "r10", "r11"]
    assert found.rows == 4  # r1's two rows went with it
    assert buffers.dropped == 2
    buffers.withdraw(["r0"])  # too late: that request was taken already
    assert buffers.add(model, *group(30, [1]), 1.0)  # type: ignore[arg-type]
    assert [g.ids for g in buffers.take()] == [["r30"]]


def batch(first: int, rows: list[int]) -> tuple[list[Prepared], dict[str, np.ndarray],
                                                 dict[str, np.ndarray]]:
    """A batcher's batch of requests like :func:`group`'s: their input stacked as the model
    ran it, and its outputs."""
    parts, results = group(first, rows)
    data = {"X": np.concatenate([p.data["X"] for p in parts])}
    outputs = {name: np.concatenate([r[name] for r in results]) for name in results[0]}
    return parts, data, outputs


def test_batches_and_groups_of_one_layout_share_a_buffer_and_each_request_keeps_its_rows(
) -> None:
    buffers, model = Buffers(), Model()
    assert buffers.add_batch(model, *batch(0, [2, 1, 3]), 50.0)  # type: ignore[arg-type]
    assert buffers.add(model, *group(10, [1, 2]), 60.0)  # type: ignore[arg-type]
    assert buffers.add_batch(model, *batch(20, [1]), 70.0)  # type: ignore[arg-type]
    short = batch(30, [2, 2])
    short[2]["label"] = short[2]["label"][:3]  # one output row short of the batch's rows
    assert not buffers.add_batch(model, *short, 80.0)  # type: ignore[arg-type]
    frame = batch(40, [1])
    assert not buffers.add_batch(model, frame[0], {"X": frame[1]["X"], "Y": frame[1]["X"]},
                                 frame[2], 80.0)  # type: ignore[arg-type]  # two tensors

    [found] = buffers.take()

    assert found.ids == ["r0", "r1", "r2", "r10", "r11", "r20"]
    assert found.rows == 10
    seen = {o.request_id: o for o in found.observations()}
    for request_id, at, rows, finished in (("r0", 0, 2, 50.0), ("r1", 2, 1, 50.0),
                                           ("r2", 3, 3, 50.0), ("r11", 11, 2, 60.0),
                                           ("r20", 20, 1, 70.0)):
        np.testing.assert_array_equal(seen[request_id].data["X"],
                                      np.arange(at * 2, (at + rows) * 2).reshape(rows, 2))
        np.testing.assert_array_equal(seen[request_id].outputs["label"],
                                      np.arange(at, at + rows))
        first = int(request_id[1:])
        assert seen[request_id].latency_s == finished - (100.0 + first)
