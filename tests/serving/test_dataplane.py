from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import uvloop
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer

from modelyard.errors import (
    AliasNotFound,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    SignatureMismatch,
    VersionNotFound,
)
from modelyard.serving import DataPlane
from modelyard.serving.types import InferRequest, InferResponse, RequestedOutput, Tensor
from modelyard.settings import ModelServingSettings

from .conftest import submit_together

X = load_breast_cancer().data


def _request(rows: np.ndarray, **kw: object) -> InferRequest:
    return InferRequest("cancer", [Tensor("input", "FP64", list(rows.shape), rows)], **kw)  # type: ignore[arg-type]


def _batches(dp: DataPlane) -> tuple[float, float]:
    """How many batches the one batched model version ran, and their rows (``/metrics``)."""
    [family] = [f for f in text_string_to_metric_families(dp.metrics.exposition().decode())
                if f.name == "modelyard_batch_size_rows"]
    [count] = [s.value for s in family.samples if s.name.endswith("_count")]
    [rows] = [s.value for s in family.samples if s.name.endswith("_sum")]
    return count, rows


def test_routes_by_name_alias_and_version(make_dataplane) -> None:  # type: ignore[no-untyped-def]
    dp: DataPlane = make_dataplane()
    async def go() -> list[str]:
        out = []
        for model, version in [("cancer", None), ("cancer@champion", None), ("cancer", "2")]:
            r = await dp.infer(_request(X[:2]).__class__(model, _request(X[:2]).inputs,
                                                          version=version), "test")
            out.append(r.model_version)
        return out
    assert asyncio.run(go()) == ["1", "1", "2"]
    assert dp.model_metadata("cancer").versions == ["1", "2"]
    assert [s.name for s in dp.model_metadata("wine-onnx").inputs] == ["X"]


@pytest.mark.parametrize(
    ("model", "version", "error"),
    [("ghost", None, ModelNotFound), ("cancer", "7", VersionNotFound),
     ("cancer@gold", None, AliasNotFound), ("cancer", "x", InvalidInput)],
)
def test_unknown_models_raise_not_found(  # type: ignore[no-untyped-def]
    make_dataplane, model: str, version: str | None, error: type[Exception]
) -> None:
    dp: DataPlane = make_dataplane()
    with pytest.raises(error):
        asyncio.run(dp.infer(InferRequest(model, _request(X[:1]).inputs, version=version), "t"))


def test_batched_callers_each_get_their_own_rows_and_outputs(  # type: ignore[no-untyped-def]
    make_dataplane,
) -> None:
    dp: DataPlane = make_dataplane(cancer=ModelServingSettings(max_batch_size=32,
                                                               max_delay_ms=20))
    model = dp.manager.resolve("cancer").require_ready()
    expected = model.runtime.predict(X)

    async def go() -> list:  # type: ignore[type-arg]
        requests = []
        for i in range(40):
            rows = X[i * 3: i * 3 + 1 + i % 3]
            wanted = [RequestedOutput("predict_proba")] if i % 2 else [RequestedOutput("predict")]
            requests.append(dp.infer(_request(rows, id=str(i), outputs=wanted), "test"))
        return await asyncio.gather(*requests)

    answers = asyncio.run(go())
    for i, answer in enumerate(answers):
        lo, hi = i * 3, i * 3 + 1 + i % 3
        assert answer.id == str(i)
        [out] = answer.outputs
        assert out.name == ("predict_proba" if i % 2 else "predict")
        # Stacked rows may take another BLAS path: probabilities agree to the last bits.
        np.testing.assert_allclose(out.data, expected[out.name][lo:hi], rtol=1e-12, atol=0)
    count, total = _batches(dp)
    assert total == sum(1 + i % 3 for i in range(40))
    assert count < 40  # coalesced


def test_one_bad_request_in_a_batch_fails_alone(make_dataplane) -> None:  # type: ignore[no-untyped-def]
    dp: DataPlane = make_dataplane(cancer=ModelServingSettings(max_batch_size=16, max_delay_ms=20))

    async def go() -> list:  # type: ignore[type-arg]
        good = [dp.infer(_request(X[i:i + 1]), "t") for i in range(5)]
        bad = dp.infer(_request(X[:1, :29]), "t")
        return await asyncio.gather(*good, bad, return_exceptions=True)

    *good, bad = asyncio.run(go())
    assert all(not isinstance(g, BaseException) for g in good)
    assert isinstance(bad, SignatureMismatch)
    assert "29 columns" in str(bad)


def test_unloaded_model_is_not_ready_until_loaded_again(make_dataplane) -> None:  # type: ignore[no-untyped-def]
    dp: DataPlane = make_dataplane()
    asyncio.run(dp.unload_model("cancer"))
    assert not dp.model_ready("cancer")
    assert not dp.ready()
    with pytest.raises(ModelNotReady, match="unloaded"):
        asyncio.run(dp.infer(_request(X[:1]), "t"))
    asyncio.run(dp.load_model("cancer"))
    assert dp.model_ready("cancer")
    assert [e.state for e in dp.repository_index()][:2] == ["READY", "READY"]


def test_cache_answers_repeated_inputs(make_dataplane) -> None:  # type: ignore[no-untyped-def]
    dp: DataPlane = make_dataplane(cancer=ModelServingSettings(cache_entries=8))
    first = asyncio.run(dp.infer(_request(X[:3]), "t"))
    second = asyncio.run(dp.infer(_request(X[:3]), "t"))
    other = asyncio.run(dp.infer(_request(X[3:6]), "t"))
    assert (first.cache_hit, second.cache_hit, other.cache_hit) == (False, True, False)
    np.testing.assert_array_equal(first.outputs[0].data, second.outputs[0].data)


def test_kserve_v1_rows_and_objects(make_dataplane) -> None:  # type: ignore[no-untyped-def]
    dp: DataPlane = make_dataplane()
    model = dp.manager.resolve("cancer").require_ready()
    preds = asyncio.run(dp.predict_v1("cancer", X[:4].tolist()))
    assert preds == model.runtime.predict(X[:4])["predict"].tolist()
    rows = [{"age": 70.0, "income": 50.0, "plan": "basic"}]
    assert asyncio.run(dp.predict_v1("plans", rows)) == ["churn"]
    with pytest.raises(InvalidInput, match="30 values"):
        asyncio.run(dp.predict_v1("cancer", [[1.0, 2.0]]))


def test_a_batch_waits_out_its_delay_from_the_first_request(  # type: ignore[no-untyped-def]
    make_dataplane,
) -> None:
    """MLServer #1936: its timeout fired early. Here a request that arrives mid-delay joins the
    batch its predecessor opened, and the batch closes only when the first one's delay is up."""
    import time

    dp: DataPlane = make_dataplane(cancer=ModelServingSettings(max_batch_size=8,
                                                               max_delay_ms=300))

    async def go() -> float:
        began = time.monotonic()
        first = asyncio.ensure_future(dp.infer(_request(X[:1]), "t"))
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(dp.infer(_request(X[1:3]), "t"))
        await asyncio.gather(first, second)
        return time.monotonic() - began

    elapsed = asyncio.run(go())
    batches, rows = _batches(dp)
    assert batches == 1  # one batch: the second request joined the first
    assert rows == 3  # its rows counted by row, not by request
    assert elapsed >= 0.3  # not closed before the first request's 300 ms were up


def test_a_multi_row_request_larger_than_the_batch_runs_alone(  # type: ignore[no-untyped-def]
    make_dataplane,
) -> None:
    dp: DataPlane = make_dataplane(cancer=ModelServingSettings(max_batch_size=4, max_delay_ms=5))
    model = dp.manager.resolve("cancer").require_ready()
    answer = asyncio.run(dp.infer(_request(X[:10]), "t"))
    np.testing.assert_array_equal(answer.outputs[0].data, model.runtime.predict(X[:10])["predict"])


def test_submit_answers_in_a_callback_as_infer_does(make_dataplane) -> None:  # type: ignore[no-untyped-def]
    """The task-free path (no batcher, no deadline) gives infer's answer, counts it, and
    hands every error after routing to the callback; a deadline takes infer's own path."""
    dp: DataPlane = make_dataplane()  # defaults: no batcher

    async def scenario() -> list[tuple[object, BaseException | None]]:
        loop = asyncio.get_running_loop()
        answers: list[tuple[object, BaseException | None]] = []
        waiting = [loop.create_future() for _ in range(4)]

        def collect(i: int):  # type: ignore[no-untyped-def]
            def done(response: object, error: BaseException | None) -> None:
                answers.append((response, error))
                waiting[i].set_result(None)
            return done

        dp.submit(_request(X[:3], id="a"), "rest", collect(0))
        dp.submit(_request(X[:2, :29]), "rest", collect(1))  # one column short
        dp.submit(_request(X[:1], outputs=[RequestedOutput("nope")]), "rest", collect(2))
        deadline = asyncio.get_running_loop().time() + 30
        dp.submit(_request(X[:1], id="d", deadline=deadline), "rest", collect(3))
        await asyncio.wait_for(asyncio.gather(*waiting), 30)
        with pytest.raises(ModelNotFound):
            dp.submit(InferRequest("ghost", []), "rest", collect(0))
        return answers

    answers = asyncio.run(scenario())
    expected = asyncio.run(dp.infer(_request(X[:3], id="a"), "rest"))
    by_id = {r.id: r for r, _ in answers if r is not None}  # type: ignore[attr-defined]
    assert set(by_id) == {"a", "d"}
    got = {t.name: t.data for t in by_id["a"].outputs}
    for tensor in expected.outputs:
        np.testing.assert_array_equal(got[tensor.name], tensor.data)
    errors = [e for r, e in answers if r is None]
    assert sorted(type(e).__name__ for e in errors) == ["InvalidInput", "SignatureMismatch"]
    text = dp.metrics.exposition().decode()
    ok = [line for line in text.splitlines() if line.startswith("modelyard_requests_total{")
          and 'outcome="ok"' in line and 'model="cancer"' in line]
    assert ok
    assert float(ok[0].rsplit(" ", 1)[1]) == 3.0  # a, d, and infer's own
    assert dp._in_flight == 0


def test_a_model_without_batching_reports_its_waits_model_time_and_rows(  # type: ignore[no-untyped-def]
    make_dataplane,
) -> None:
    """Batching off (the default), every request that reaches the model is timed as a batcher
    times a batch: its wait for a model thread, its time in the model, its rows; on the
    callback path, the deadline path and infer's own. Requests refused before the model are
    not."""

    dp: DataPlane = make_dataplane()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        answered = loop.create_future()
        left = [2]

        def done(response: object, error: BaseException | None) -> None:
            left[0] -= 1
            if left[0] == 0:
                answered.set_result(None)

        dp.submit(_request(X[:3]), "rest", done)
        dp.submit(_request(X[:2, :29]), "rest", done)  # refused before the model
        await asyncio.wait_for(answered, 30)
        await dp.infer(_request(X[:1], deadline=time.monotonic() + 30), "rest")
        await dp.infer(_request(X[:5]), "grpc")

    asyncio.run(scenario())
    samples = {(s.name, s.labels.get("le")): s.value
               for f in text_string_to_metric_families(dp.metrics.exposition().decode())
               for s in f.samples if s.labels.get("model") == "cancer"}
    assert samples[("modelyard_inference_duration_seconds_count", None)] == 3
    assert samples[("modelyard_queue_duration_seconds_count", None)] == 3
    assert samples[("modelyard_batch_size_rows_count", None)] == 3
    assert samples[("modelyard_batch_size_rows_sum", None)] == 3 + 1 + 5
    assert samples[("modelyard_batch_size_rows_bucket", "4.0")] == 2  # 3 rows and 1 row
    took = samples[("modelyard_inference_duration_seconds_sum", None)]
    assert 0 < took < 30
    assert 0 <= samples[("modelyard_queue_duration_seconds_sum", None)] < 30


def test_submitted_requests_are_batched_without_tasks_and_a_full_queue_refuses(  # type: ignore[no-untyped-def]
    make_dataplane,
) -> None:
    """submit's callback path through a batcher: callers coalesce, each gets its own rows
    and outputs; past max_queue the excess gets Overloaded (503) and the rest still run."""
    dp: DataPlane = make_dataplane(cancer=ModelServingSettings(max_batch_size=32,
                                                               max_delay_ms=20, max_queue=30))
    model = dp.manager.resolve("cancer").require_ready()
    expected = model.runtime.predict(X)

    requests = []
    for i in range(40):
        rows = X[i * 3: i * 3 + 1 + i % 3]
        wanted = [RequestedOutput("predict_proba")] if i % 2 else [RequestedOutput("predict")]
        requests.append(_request(rows, id=str(i), outputs=wanted))

    answers = submit_together(dp, requests)
    served = {key: r for key, (r, e) in answers.items() if e is None}
    refused = [e for _, e in answers.values() if e is not None]
    assert len(served) == 30  # the first 30 queued; a batch only starts on the next iteration
    assert len(refused) == 10
    assert all(type(e).__name__ == "Overloaded" for e in refused)
    for key, answer in served.items():
        i = int(key)
        lo, hi = i * 3, i * 3 + 1 + i % 3
        [out] = answer.outputs  # type: ignore[attr-defined]
        assert out.name == ("predict_proba" if i % 2 else "predict")
        np.testing.assert_allclose(out.data, expected[out.name][lo:hi], rtol=1e-12, atol=0)
    count, _ = _batches(dp)
    assert count < 30  # coalesced
    assert dp._in_flight == 0


def _picky(values: list[float], id: str) -> InferRequest:
    data = np.array(values, dtype=np.float64)
    return InferRequest("picky", [Tensor("x", "FP64", [len(values)], data)], id=id)


def test_a_request_the_model_fails_on_inside_a_batch_fails_alone(  # type: ignore[no-untyped-def]
    picky_dataplane,
) -> None:
    """MLServer #1826: one request that makes the model raise must not fail the requests it was
    batched with. The stacked batch fails, each request then runs alone; only the culprit gets
    the model's error, as a client error naming the model."""
    dp: DataPlane = picky_dataplane(max_batch_size=16, max_delay_ms=50)
    values = [[1.0], [2.0, 3.0], [-1.0], [4.0], [5.0, 6.0, 7.0]]

    async def go() -> list[object]:
        calls = [dp.infer(_picky(v, str(i)), "t") for i, v in enumerate(values)]
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(go())
    for i, (v, answer) in enumerate(zip(values, answers, strict=True)):
        if i == 2:
            assert type(answer).__name__ == "ModelFailed"
            assert "picky" in str(answer)
            assert "negative readings" in str(answer)
            continue
        assert not isinstance(answer, BaseException), answer
        [out] = answer.outputs  # type: ignore[attr-defined]
        np.testing.assert_array_equal(np.ravel(out.data), np.array(v) * 2)
    count, _ = _batches(dp)
    assert count == 1  # all five were in one batch


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # uvloop: the server's own loop
def test_a_full_batch_does_not_wait_out_the_delay(  # type: ignore[no-untyped-def]
    picky_dataplane, loop: str,
) -> None:
    """A batch closes when it holds max_batch_size rows, long before a 60-s delay; the
    requests after it open the next batch, which waits for its own delay."""
    dp: DataPlane = picky_dataplane(max_batch_size=4, max_delay_ms=60_000)

    async def go() -> tuple[list[InferResponse], list[asyncio.Task[InferResponse]]]:
        full = [asyncio.ensure_future(dp.infer(_picky([float(i), float(i)], str(i)), "t"))
                for i in range(2)]
        rest = [asyncio.ensure_future(dp.infer(_picky([9.0], "late"), "t"))]
        answered = await asyncio.wait_for(asyncio.gather(*full), 20)
        await asyncio.sleep(0.2)
        return answered, rest

    async def run() -> tuple[list[InferResponse], bool]:
        answered, rest = await go()
        waiting = not rest[0].done()  # its batch holds 1 of 4 rows: it waits out the delay
        rest[0].cancel()
        return answered, waiting

    answered, waiting = (uvloop.run if loop == "uvloop" else asyncio.run)(run())
    assert [np.ravel(a.outputs[0].data).tolist() for a in answered] == [[0.0, 0.0], [2.0, 2.0]]
    assert waiting


def test_with_no_delay_a_batch_takes_what_arrives_together(picky_dataplane) -> None:  # type: ignore[no-untyped-def]
    """max_delay_ms=0: no timer, but requests read over consecutive loop iterations (a burst
    from many clients) join one batch, which closes at the first iteration that queues nothing
    new; a steady stream still gets batches no larger than max_batch_size."""

    async def burst(dp: DataPlane, waves: list[int]) -> dict[str, object]:
        """``waves[i]`` one-row requests submitted in loop iteration i, one after the other."""
        loop = asyncio.get_running_loop()
        answers: dict[str, object] = {}
        finished = loop.create_future()
        total = sum(waves)

        def done(key: str):  # type: ignore[no-untyped-def]
            def answer(response: object, error: BaseException | None) -> None:
                answers[key] = error or response
                if len(answers) == total and not finished.done():
                    finished.set_result(None)
            return answer

        def wave(i: int) -> None:
            for j in range(waves[i]):
                key = f"{i}.{j}"
                dp.submit(_picky([float(i)], key), "t", done(key))
            if i + 1 < len(waves):
                loop.call_soon(wave, i + 1)

        loop.call_soon(wave, 0)
        await asyncio.wait_for(finished, 20)
        return answers

    together = picky_dataplane(max_batch_size=32, max_delay_ms=0)
    answers = asyncio.run(burst(together, [2, 3, 1, 2]))
    assert all(not isinstance(a, BaseException) for a in answers.values())
    for key, answer in answers.items():  # each got its own row back
        [out] = answer.outputs  # type: ignore[attr-defined]
        assert np.ravel(out.data).tolist() == [float(key.split(".")[0]) * 2]
    assert _batches(together) == (1, 8)  # four iterations of arrivals, one batch

    steady = picky_dataplane(max_batch_size=4, max_delay_ms=0)
    answers = asyncio.run(burst(steady, [1] * 20))
    assert all(not isinstance(a, BaseException) for a in answers.values())
    count, rows = _batches(steady)
    assert rows == 20
    assert count >= 5  # 20 rows in batches of at most 4
