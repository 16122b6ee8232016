"""A model without batching: requests read together run each alone, get their own answers
and failures, and reach live monitoring stacked, one hand-off per model thread's share."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer

from modelyard.serving import DataPlane
from modelyard.serving.model import Prepared, ServedModel
from modelyard.serving.types import InferRequest, RequestedOutput, Tensor
from modelyard.settings import ModelServingSettings

from .conftest import submit_together

X = load_breast_cancer().data


@dataclass
class Handed:
    ids: list[str]
    rows: list[int]
    data: Any
    outputs: dict[str, np.ndarray]


@dataclass
class RecordingObserver:
    """What monitoring was handed (an :class:`~modelyard.serving.observe.Observer`)."""

    batches: list[Handed] = field(default_factory=list)
    takes_groups: bool = False  # whether accumulate takes what a model thread hands it
    withdrawn: list[str] = field(default_factory=list)

    def record(self, model: ServedModel, request_id: str, at: float, latency_s: float,
               rows: int, data: Any, outputs: dict[str, np.ndarray]) -> None:
        assert latency_s >= 0
        self.batches.append(Handed([request_id], [rows], data, outputs))

    def record_batch(self, model: ServedModel, parts: list[Prepared], at: float,
                     finished: float, data: Any, outputs: dict[str, np.ndarray]) -> None:
        assert all(finished >= p.started for p in parts)
        self.batches.append(Handed([p.request_id for p in parts], [p.rows for p in parts],
                                   data, outputs))

    def accumulate(self, model: ServedModel, parts: list[Prepared],
                   results: list[dict[str, np.ndarray]], finished: float) -> bool:
        assert threading.current_thread().name.startswith("modelyard-infer-")
        if not self.takes_groups:
            return False
        outputs = {name: np.concatenate([r[name] for r in results]) for name in results[0]}
        self.batches.append(Handed([p.request_id for p in parts], [p.rows for p in parts],
                                   ServedModel.stack(model, parts), outputs))
        return True

    def withdraw(self, request_ids: list[str]) -> None:
        self.withdrawn.extend(request_ids)

    def observe(self, observation: Any) -> None:
        raise AssertionError("the data plane hands over arrays, not observations")

    def failed(self, model: str, version: int, at: float, latency_s: float) -> None:
        pass


def _cancer(lo: int, hi: int, id: str, outputs: list[str] | None = None) -> InferRequest:
    rows = X[lo:hi]
    wanted = None if outputs is None else [RequestedOutput(n) for n in outputs]
    return InferRequest("cancer", [Tensor("input", "FP64", list(rows.shape), rows)], id=id,
                        outputs=wanted)


def test_requests_read_together_are_answered_alone_and_monitored_stacked(  # type: ignore[no-untyped-def]
    make_dataplane,
) -> None:
    dp: DataPlane = make_dataplane()  # no batching; two model threads
    observer = RecordingObserver()
    dp.observer = observer
    model = dp.manager.resolve("cancer").require_ready()
    spans = [(0, 1), (1, 4), (4, 6), (6, 7), (7, 12), (12, 13)]
    requests = [_cancer(lo, hi, f"r{i}") for i, (lo, hi) in enumerate(spans)]

    answers = submit_together(dp, requests)

    for i, (lo, hi) in enumerate(spans):
        response, error = answers[f"r{i}"]
        assert error is None
        alone = model.runtime.predict(X[lo:hi])
        got = {t.name: t.data for t in response.outputs}
        assert set(got) == set(alone)
        for name, value in alone.items():
            np.testing.assert_array_equal(got[name], value)
    # one hand-off per model thread's share (the shares end in either order), each share's
    # requests in order, never one hand-off per request
    assert len(observer.batches) == dp.manager.pool.size == 2
    shares = sorted(observer.batches, key=lambda b: int(b.ids[0][1:]))
    assert [i for b in shares for i in b.ids] == [f"r{i}" for i in range(6)]
    for handed in shares:
        lo = spans[int(handed.ids[0][1:])][0]
        hi = spans[int(handed.ids[-1][1:])][1]
        assert handed.rows == [b - a for a, b in spans[int(handed.ids[0][1:]):
                                                        int(handed.ids[-1][1:]) + 1]]
        stacked = np.asarray(handed.data)
        np.testing.assert_array_equal(stacked, X[lo:hi])
        expected = model.runtime.predict(X[lo:hi])
        for name, value in expected.items():
            np.testing.assert_allclose(handed.outputs[name], value, rtol=1e-12, atol=0)
    # the metrics still see requests, not groups: six runs and their rows
    samples = {s.name: s.value
               for f in text_string_to_metric_families(dp.metrics.exposition().decode())
               for s in f.samples if s.labels.get("model") == "cancer" and "le" not in s.labels}
    assert samples["modelyard_batch_size_rows_count"] == 6
    assert samples["modelyard_batch_size_rows_sum"] == 13
    assert samples["modelyard_inference_duration_seconds_count"] == 6


def test_requests_asking_for_different_outputs_reach_monitoring_each_alone(  # type: ignore[no-untyped-def]
    make_dataplane,
) -> None:
    dp: DataPlane = make_dataplane()
    observer = RecordingObserver()
    dp.observer = observer
    requests = [_cancer(0, 2, "a", ["predict"]), _cancer(2, 3, "b", ["predict_proba"]),
                _cancer(3, 5, "c", ["predict"]), _cancer(5, 6, "d", ["predict_proba"])]

    answers = submit_together(dp, requests)

    assert [answers[k][0].outputs[0].name for k in "abcd"] == [
        "predict", "predict_proba", "predict", "predict_proba"]
    # what each computed differs, so nothing is stacked: each answer is handed over alone
    assert sorted(i for b in observer.batches for i in b.ids) == ["a", "b", "c", "d"]
    assert all(len(b.ids) == 1 for b in observer.batches)
    by_id = {b.ids[0]: b for b in observer.batches}
    np.testing.assert_array_equal(np.asarray(by_id["c"].data), X[3:5])
    assert len(by_id["c"].outputs["predict"]) == 2


def test_a_request_the_model_fails_on_fails_alone_and_is_not_monitored(  # type: ignore[no-untyped-def]
    picky_dataplane,
) -> None:
    dp: DataPlane = picky_dataplane()  # no batching
    observer = RecordingObserver()
    dp.observer = observer
    values = {"a": [1.0], "b": [2.0, 3.0], "bad": [4.0, -1.0], "c": [5.0]}
    requests = [InferRequest("picky", [Tensor("x", "FP64", [len(v)], np.array(v))], id=k)
                for k, v in values.items()]

    answers = submit_together(dp, requests)

    response, error = answers["bad"]
    assert response is None
    assert type(error).__name__ == "ModelFailed"
    assert "negative readings are not allowed" in str(error)
    for key in "abc":
        response, error = answers[key]
        assert error is None
        [out] = response.outputs
        np.testing.assert_array_equal(np.ravel(out.data), np.array(values[key]) * 2)
    handed = sorted(i for b in observer.batches for i in b.ids)
    assert handed == ["a", "b", "c"]
    for batch in observer.batches:
        frame = batch.data if isinstance(batch.data, pd.DataFrame) else None
        if frame is not None:
            assert list(frame["x"]) == [v for i in batch.ids for v in values[i]]


def test_awaited_requests_join_the_group_and_a_caller_gone_is_not_monitored(  # type: ignore[no-untyped-def]
    make_dataplane,
) -> None:
    """gRPC, KServe V1 and a request with a deadline await their answer: they join the loop
    iteration's group as REST's callbacks do. A caller that stopped waiting before the group
    ran gets nothing and is not handed to monitoring; the others still are."""
    dp: DataPlane = make_dataplane()
    observer = RecordingObserver()
    dp.observer = observer
    model = dp.manager.resolve("cancer").require_ready()

    async def go() -> list[Any]:
        return await asyncio.gather(
            dp.infer(_cancer(0, 2, "g1"), "grpc"),
            dp.infer(_cancer(2, 3, "g2"), "grpc"),
            dp.predict_v1_versioned("cancer", X[3:5].tolist(), "v1"),
            dp.infer(InferRequest("cancer", [Tensor("input", "FP64", [1, 30], X[5:6])], id="d",
                                  deadline=time.monotonic() + 30), "grpc"),
        )

    g1, g2, (predictions, version), d = asyncio.run(go())
    expected = model.runtime.predict(X[:6])["predict"]
    for response, (lo, hi) in ((g1, (0, 2)), (g2, (2, 3)), (d, (5, 6))):
        got = {t.name: t.data for t in response.outputs}["predict"]
        np.testing.assert_array_equal(got, expected[lo:hi])
    assert predictions == list(expected[3:5])
    assert version == 1
    assert sorted(i for b in observer.batches for i in b.ids) == ["d", "g1", "g2", "v1"]
    assert len(observer.batches) == 2  # the group of four, split over the two model threads

    observer.batches.clear()

    async def one_gives_up() -> Any:
        labels = ("cancer", "1")
        kept = dp.unbatched.run(model, labels, Prepared(X[0:2], 2, None, "kept"))
        gone = dp.unbatched.run(model, labels, Prepared(X[2:3], 1, None, "gone"))
        gone.cancel()  # (as wait_for does when a deadline passes)
        return await kept

    kept = asyncio.run(one_gives_up())
    np.testing.assert_array_equal(kept["predict"], expected[0:2])
    assert [b.ids for b in observer.batches] == [["kept"]]


def test_a_request_alone_in_its_iteration_takes_the_short_way_with_the_same_outcome(  # type: ignore[no-untyped-def]
    make_dataplane, picky_dataplane,
) -> None:
    """A request with no other in its loop iteration (as at c=1) is not grouped, yet it is
    answered, counted, monitored, failed and given up on exactly as a group's request is."""
    dp: DataPlane = make_dataplane()
    observer = RecordingObserver()
    dp.observer = observer
    model = dp.manager.resolve("cancer").require_ready()

    [(response, error)] = submit_together(dp, [_cancer(3, 6, "lone")]).values()

    assert error is None
    got = {t.name: t.data for t in response.outputs}
    for name, value in model.runtime.predict(X[3:6]).items():
        np.testing.assert_array_equal(got[name], value)
    [handed] = observer.batches
    assert (handed.ids, handed.rows) == (["lone"], [3])
    np.testing.assert_array_equal(np.asarray(handed.data), X[3:6])
    np.testing.assert_array_equal(handed.outputs["predict"], got["predict"])
    samples = {s.name: s.value
               for f in text_string_to_metric_families(dp.metrics.exposition().decode())
               for s in f.samples if s.labels.get("model") == "cancer" and "le" not in s.labels}
    assert samples["modelyard_batch_size_rows_count"] == 1
    assert samples["modelyard_batch_size_rows_sum"] == 3

    observer.batches.clear()

    async def gives_up() -> None:
        gone = dp.unbatched.run(model, ("cancer", "1"), Prepared(X[0:1], 1, None, "gone"))
        gone.cancel()
        await asyncio.sleep(0.2)  # the model answers after its caller left

    asyncio.run(gives_up())
    assert observer.batches == []

    picky: DataPlane = picky_dataplane()
    picky.observer = observer
    bad = InferRequest("picky", [Tensor("x", "FP64", [2], np.array([1.0, -1.0]))], id="bad")
    [(response, error)] = submit_together(picky, [bad]).values()
    assert response is None
    assert "negative readings are not allowed" in str(error)
    assert observer.batches == []


def test_a_group_is_stacked_for_monitoring_only_when_every_answer_has_a_row_per_input_row(
) -> None:
    from modelyard.serving.unbatched import _stacked

    class Model:  # what _stacked reads of a served model
        stack = ServedModel.stack

    parts = [Prepared({"X": X[0:1]}, 1, None, "a"), Prepared({"X": X[1:3]}, 2, None, "b")]
    good = [{"y": np.array([1])}, {"y": np.array([2, 3])}]

    stacked = _stacked(Model(), parts, good)  # type: ignore[arg-type]

    assert stacked is not None
    np.testing.assert_array_equal(stacked[0]["X"], X[0:3])
    np.testing.assert_array_equal(stacked[1]["y"], [1, 2, 3])
    for answers in (
        [{"y": np.array(1)}, {"y": np.array([2, 3])}],  # a 0-d output
        [{"y": np.array([1])}, {"y": np.array([2])}],  # one row for two input rows
        [ValueError("no"), {"y": np.array([2, 3])}],  # the first request failed
        [{"y": np.array([1])}, ValueError("no")],  # a later one failed
        [{"y": np.array([1])}, {"z": np.array([2, 3])}],  # other outputs asked for
    ):
        assert _stacked(Model(), parts, answers) is None  # type: ignore[arg-type]


class BrokenObserver(RecordingObserver):
    def accumulate(self, model: ServedModel, parts: list[Prepared],
                   results: list[dict[str, np.ndarray]], finished: float) -> bool:
        raise RuntimeError("a bug in monitoring")

    def accumulate_batch(self, model: ServedModel, parts: list[Prepared], data: Any,
                         outputs: dict[str, np.ndarray], finished: float) -> bool:
        raise RuntimeError("a bug in monitoring")


@pytest.mark.parametrize("batching", [False, True], ids=["unbatched", "batched"])
def test_a_monitoring_bug_on_the_model_thread_fails_no_request_and_is_logged_once(  # type: ignore[no-untyped-def]
    make_dataplane, caplog, batching: bool,
) -> None:
    """If monitoring's hand-off on the model thread raises, every request is still answered,
    the group (or batch) reaches monitoring the general way, and the log says so once, not
    per group."""
    dp: DataPlane = make_dataplane(**({"cancer": ModelServingSettings(max_batch_size=4)}
                                      if batching else {}))
    observer = BrokenObserver()
    dp.observer = observer
    model = dp.manager.resolve("cancer").require_ready()

    for round_ in range(3):
        ids = [f"{round_}-{i}" for i in range(4)]
        answers = submit_together(dp, [_cancer(i, i + 1, id) for i, id in enumerate(ids)])
        for i, id in enumerate(ids):
            response, error = answers[id]
            assert error is None
            got = {t.name: t.data for t in response.outputs}
            np.testing.assert_array_equal(got["predict"],
                                          model.runtime.predict(X[i:i + 1])["predict"])

    assert sorted(i for b in observer.batches for i in b.ids) == sorted(
        f"{r}-{i}" for r in range(3) for i in range(4))
    told = [r for r in caplog.records if "monitoring could not take" in r.getMessage()]
    assert len(told) == 1
    assert "cancer:1" in told[0].getMessage()
