"""Window profiles from observed traffic, merged across replicas, judged by the monitor."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

import modelyard
from modelyard.api.workspace import open_database
from modelyard.live.collector import Collector, Folded
from modelyard.live.history import History
from modelyard.live.monitor import Monitor, metric_values
from modelyard.live.stacked import Stacked
from modelyard.live.windows import load
from modelyard.serving import DataPlane, InferencePool, build_dataplane
from modelyard.serving.model import Prepared
from modelyard.serving.observe import Observation, Observer
from modelyard.serving.types import InferRequest, InferResponse, RequestedOutput, Tensor
from modelyard.settings import ModelServingSettings, Settings
from modelyard.store import Database

from .conftest import wait_for

Data = tuple[pd.DataFrame, pd.Series]
WINDOW = 60.0
T0 = 1_800_000_000.0  # a window boundary


class FakeClock:
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)

    def monotonic(self) -> float:
        return self.at


def observations_of(folded: list[Folded]) -> list[Observation]:
    """The observations a collector handed to its log, in order, stacked or not."""
    return [o for item in folded
            for o in (item.observations() if isinstance(item, Stacked) else [item])]


def observe(collector: Collector, model: Pipeline, rows: np.ndarray, at: float,
            columns: list[str], batch: int = 7) -> None:
    """Send ``rows`` as requests of ``batch`` rows, as the data plane would hand them over."""
    for i, start in enumerate(range(0, len(rows), batch)):
        data = rows[start : start + batch]
        outputs = {"predict": model.predict(pd.DataFrame(data, columns=columns)),
                   "predict_proba": model.predict_proba(pd.DataFrame(data, columns=columns))}
        collector.observe(Observation("cancer", 1, f"r{at}-{i}", at + i * 1e-3, 0.002,
                                      len(data), columns, data, outputs, [0, 1]))


@pytest.fixture
def served(settings: Settings, cancer: Data, cancer_model: Pipeline) -> Settings:
    X, y = cancer
    modelyard.register(cancer_model, "cancer", reference=X, labels=y, settings=settings)
    return settings


def traffic(cancer: Data, seed: int, rows: int, shifted: list[str] | None = None) -> np.ndarray:
    X, _ = cancer
    frame = X.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    for name in shifted or []:
        frame[name] = frame[name] * 1.5 + frame[name].std()
    return frame.to_numpy(np.float64)


def test_a_shifted_window_drifts_on_the_shifted_features_and_a_normal_one_does_not(
    served: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    X, _ = cancer
    columns = list(X.columns)
    database = open_database(served.resolved_database_url, served.store)
    clock = FakeClock(T0 + 5)
    collector = Collector(database, replica="a", window_s=WINDOW, clock=clock)
    shifted = ["mean radius", "mean texture", "worst area"]
    observe(collector, cancer_model, traffic(cancer, 1, 1500), T0 + 1, columns)
    observe(collector, cancer_model, traffic(cancer, 2, 1500, shifted), T0 + WINDOW + 1, columns)
    collector.drain()
    clock.at = T0 + 2 * WINDOW + 1
    assert collector.flush(ended_only=True) == 2

    fired: list[tuple[str, dict[str, object]]] = []
    monitor = Monitor(database, served, clock=clock,
                      evaluate_alerts=lambda subject, labels, values, at: fired.append(
                          (subject, values)))
    normal, drifted = monitor.run_once()
    assert (normal["rows"], drifted["rows"]) == (1500, 1500)
    assert normal["dataset_drift"] is False
    assert [c["name"] for c in normal["columns"] if c["drift_detected"]] == []
    found = {c["name"] for c in drifted["columns"] if c["drift_detected"]}
    assert set(shifted) <= found
    assert {c["role"] for c in drifted["columns"]} == {"feature", "prediction", "probability"}
    assert drifted["prediction_drift"] is True
    assert drifted["latency_p99_s"] == pytest.approx(0.002)
    assert [subject for subject, _ in fired] == ["cancer:1", "cancer:1"]
    assert fired[1][1]["drift_score"]["mean radius"] > fired[0][1]["drift_score"]["mean radius"]
    assert metric_values(drifted)["prediction_drift"] == 1.0
    assert monitor.run_once() == []  # each window is judged once


def test_replicas_merge_into_the_profile_of_all_their_requests(
    served: Settings, cancer: Data, cancer_model: Pipeline, tmp_path: Path
) -> None:
    X, _ = cancer
    columns = list(X.columns)
    alone = Database(f"sqlite:///{tmp_path / 'alone.db'}")
    alone.migrate()
    clock = FakeClock(T0 + 5)
    rows = traffic(cancer, 3, 2000)
    one = Collector(alone, replica="solo", window_s=WINDOW, clock=clock)
    observe(one, cancer_model, rows, T0 + 1, columns)
    one.close()
    whole = load(alone, "cancer", 1)[0].profile
    assert whole is not None

    other = open_database(served.resolved_database_url, served.store)
    a = Collector(other, replica="a", window_s=WINDOW, clock=clock)
    b = Collector(other, replica="b", window_s=WINDOW, clock=clock)
    observe(a, cancer_model, rows[:1100], T0 + 1, columns)
    observe(b, cancer_model, rows[1100:], T0 + 2, columns)
    a.close()
    b.close()
    [merged] = load(other, "cancer", 1)
    assert merged.rows == 2000
    assert merged.requests == (1100 + 6) // 7 + (900 + 6) // 7
    assert merged.profile is not None
    mine, theirs = merged.profile.result(), whole.result()
    for name in ("mean radius", "worst area", "proba_1"):
        assert mine[name].count == theirs[name].count == 2000
        assert mine[name].mean == pytest.approx(theirs[name].mean)
        assert mine[name].max == theirs[name].max
    assert mine["prediction"].counts == theirs["prediction"].counts


def test_a_running_collector_stores_a_window_as_soon_as_it_ends(
    served: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    # The background thread folds every `interval_s`, and at once when a window ends, so the
    # monitor finds each ended window whole; here the interval is never reached.
    X, _ = cancer
    database = open_database(served.resolved_database_url, served.store)
    clock = FakeClock(T0 + 5)
    collector = Collector(database, replica="a", window_s=WINDOW, clock=clock, interval_s=3600)
    collector.start()
    try:
        observe(collector, cancer_model, traffic(cancer, 5, 140), T0 + 1, list(X.columns))
        time.sleep(0.3)  # thirty stacking rounds: queued and stacked, not folded
        assert load(database, "cancer", 1) == []
        clock.at = T0 + WINDOW + 1
        wait_for(lambda: bool(load(database, "cancer", 1)))
        [window] = load(database, "cancer", 1)
        assert (window.start, window.rows, window.requests) == (T0, 140, 20)
    finally:
        collector.close()


def test_light_traffic_still_reaches_the_profile_and_the_log_without_a_window_ending(
    served: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    # A handful of requests never fill a fold (4,096) and make the thread stack less often;
    # they are folded anyway within four fold intervals, with no window end or close needed.
    X, _ = cancer
    database = open_database(served.resolved_database_url, served.store)
    folded: list[Folded] = []
    collector = Collector(database, replica="a", window_s=WINDOW, clock=FakeClock(T0 + 5),
                          log=folded.extend, interval_s=0.05)
    collector.start()
    try:
        observe(collector, cancer_model, traffic(cancer, 6, 21), T0 + 1, list(X.columns))
        wait_for(lambda: collector.observed == 3)
        assert [o.request_id for o in observations_of(folded)] == [
            f"r{T0 + 1}-{i}" for i in range(3)]
        assert collector.flush() == 1
        [window] = load(database, "cancer", 1)
        assert (window.requests, window.rows) == (3, 21)
    finally:
        collector.close()


def test_failures_count_as_errors_and_the_window_survives_a_restart(
    served: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    X, _ = cancer
    database = open_database(served.resolved_database_url, served.store)
    clock = FakeClock(T0 + 5)
    collector = Collector(database, replica="a", window_s=WINDOW, clock=clock)
    observe(collector, cancer_model, traffic(cancer, 4, 70), T0 + 1, list(X.columns))
    for _ in range(10):
        collector.failed("cancer", 1, T0 + 2, 0.5)
    collector.close()
    [window] = load(database, "cancer", 1)
    assert (window.requests, window.errors, window.rows) == (20, 10, 70)
    clock.at = T0 + WINDOW + 1
    [result] = Monitor(database, served, clock=clock).run_once()
    assert result["error_rate"] == pytest.approx(0.5)
    assert result["latency_p99_s"] == pytest.approx(0.5)


def test_delayed_labels_give_each_window_its_realised_accuracy(
    served: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    from modelyard.live.feedback import FeedbackStore
    from modelyard.live.predlog import PredictionLog

    X, y = cancer
    columns = list(X.columns)
    database = open_database(served.resolved_database_url, served.store)
    clock = FakeClock(T0 + 5)
    predictions = PredictionLog(database, clock=clock)
    folded: list[Folded] = []
    collector = Collector(database, replica="a", window_s=WINDOW, clock=clock,
                          log=folded.extend)
    rng = np.random.default_rng(6)
    picked = rng.choice(len(X), 400)
    rows = X.to_numpy(np.float64)[picked]
    observe(collector, cancer_model, rows, T0 + 1, columns, batch=1)
    collector.close()
    predictions.submit_folded(folded)
    predictions.flush()
    observations = observations_of(folded)

    feedback = FeedbackStore(database, clock=clock)
    clock.at = T0 + WINDOW + 1
    monitor = Monitor(database, served, clock=clock, feedback=feedback, predictions=predictions)
    [result] = monitor.run_once()
    performance = result["performance"]
    truth = float((cancer_model.predict(X.iloc[picked]) == y.iloc[picked]).mean())
    assert performance["labels"] == 0  # no label has arrived yet
    assert abs(performance["accuracy_estimated"] - truth) < 0.05
    assert "accuracy_realised" not in performance

    labels = [{"id": o.request_id, "label": int(y.iloc[picked[i]])}
              for i, o in enumerate(observations)]
    assert feedback.ingest(labels[:300]).accepted == 300
    clock.at = T0 + 3 * 3600  # hours later
    assert monitor.run_once() == []  # no new window; the old one is refreshed in place
    [stored] = History(database, clock).results("cancer", since="1d")
    done = stored["performance"]
    first = float((cancer_model.predict(X.iloc[picked[:300]]) == y.iloc[picked[:300]]).mean())
    assert done["labels"] == 300
    assert done["accuracy_realised"] == pytest.approx(first)
    assert done["accuracy_drop"] == pytest.approx(
        modelyard.load("cancer", settings=served).manifest.provenance.metrics["accuracy"] - first
    )


def test_requests_that_asked_for_other_outputs_do_not_stop_the_window_being_judged(
    served: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    """A client asking only for ``predict`` logs no probabilities: the estimate uses the rows
    that have them, and the window is judged (it once failed every round, never stored)."""
    from modelyard.live.predlog import PredictionLog

    X, _ = cancer
    columns = list(X.columns)
    database = open_database(served.resolved_database_url, served.store)
    clock = FakeClock(T0 + 5)
    predictions = PredictionLog(database, clock=clock)
    folded: list[Folded] = []
    collector = Collector(database, replica="a", window_s=WINDOW, clock=clock,
                          log=folded.extend)
    rows = traffic(cancer, 9, 200)
    for i, row in enumerate(rows):
        frame = pd.DataFrame(row[None, :], columns=columns)
        outputs = {"predict": cancer_model.predict(frame)}
        if i % 2:
            outputs["predict_proba"] = cancer_model.predict_proba(frame)
        collector.observe(Observation("cancer", 1, f"m{i}", T0 + 1 + i * 1e-3, 0.002, 1,
                                      columns, row[None, :], outputs, [0, 1]))
    collector.close()
    predictions.submit_folded(folded)
    predictions.flush()
    clock.at = T0 + WINDOW + 1
    [result] = Monitor(database, served, clock=clock, predictions=predictions).run_once()
    assert result["rows"] == 200
    assert result["performance"]["estimated_rows"] == 100
    assert 0.8 < result["performance"]["accuracy_estimated"] <= 1.0


def test_tensor_models_are_profiled_and_logged_whatever_their_width(settings: Settings) -> None:
    """An ONNX model takes one wide tensor: its 64 features become columns X_0 … X_63; a
    tensor too wide to profile (an image) leaves the inputs out but keeps the outputs and
    the row count. Both reach the prediction log (a failed frame once dropped every log
    record of its round)."""
    database = open_database(settings.resolved_database_url, settings.store)
    folded: list[Folded] = []
    clock = FakeClock(T0 + 1)
    collector = Collector(database, replica="a", window_s=WINDOW, clock=clock,
                          log=folded.extend)
    rng = np.random.default_rng(2)
    for i in range(30):
        collector.observe(Observation("mlp", 1, f"m{i}", T0 + 1 + i * 1e-3, 0.001, 2, ["X"],
                                      {"X": rng.random((2, 64))},
                                      {"label": rng.integers(0, 10, 2)}, None))
        collector.observe(Observation("cnn", 1, f"c{i}", T0 + 1 + i * 1e-3, 0.001, 1,
                                      ["image"], {"image": rng.random((1, 784))},
                                      {"label": rng.integers(0, 10, 1)}, None))
    collector.close()
    assert len(observations_of(folded)) == 60
    windows = {w.model: w for w in load(database, "mlp") + load(database, "cnn")}
    mlp, cnn = windows["mlp"], windows["cnn"]
    assert (mlp.rows, cnn.rows) == (60, 30)
    assert mlp.profile is not None
    assert cnn.profile is not None
    assert list(mlp.profile.schema)[:2] == ["X_0", "X_1"]
    assert len(mlp.profile.schema) == 65  # 64 features and the label
    assert list(cnn.profile.schema) == ["label"]
    assert cnn.profile.rows == 30


def test_the_data_planes_requests_reach_the_window_and_the_log_stacked(
    served: Settings, cancer: Data
) -> None:
    """Through the real hot path (``DataPlane.infer`` → ``Collector.record``): requests that
    look alike are stacked once for the window and the log; those that asked for fewer
    outputs join the window as a union of columns, missing where they gave nothing."""
    X, _ = cancer
    setup = observed(served)
    database, pool, dataplane = setup.database, setup.pool, setup.dataplane
    collector, folded = setup.collector, setup.folded
    rows = X.to_numpy(np.float64)

    async def send() -> None:
        for i in range(45):
            data = rows[2 * i:2 * i + 2]
            wanted = [RequestedOutput("predict")] if i >= 40 else None
            await dataplane.infer(InferRequest("cancer", [Tensor("x", "FP64", [2, 30], data)],
                                               id=f"q{i}", outputs=wanted), "rest")
            if i == 20:
                collector.drain()  # a fold in between: the later one brings other columns

    try:
        asyncio.run(send())
        collector.close()
    finally:
        pool.shutdown()
    windows = load(database, "cancer", 1)
    assert sum(w.rows for w in windows) == 90
    assert sum(w.requests for w in windows) == 45
    assert all(isinstance(item, Stacked) for item in folded)
    assert [o.request_id for o in observations_of(folded)] == [f"q{i}" for i in range(45)]
    merged = windows[0].profile
    for window in windows[1:]:
        assert merged is not None
        assert window.profile is not None
        merged.merge(window.profile, union=True)
    assert merged is not None
    summary = merged.result()
    assert summary["mean radius"].count == 90
    assert summary["mean radius"].max == rows[:90, 0].max()
    assert summary["proba_1"].missing == 10  # the 5 requests that asked only for predict


@dataclass
class Observed:
    """A real data plane serving ``cancer`` with a collector as its observer, whose log hands
    its folds to ``folded``."""

    database: Database
    pool: InferencePool
    collector: Collector
    dataplane: DataPlane
    folded: list[Folded]


def observed(settings: Settings, threads: int = 1, batching: bool = False) -> Observed:
    """With ``batching``, ``cancer`` is batched (up to 8 rows, 50 ms)."""
    database = open_database(settings.resolved_database_url, settings.store)
    folded: list[Folded] = []
    collector = Collector(database, replica="a", window_s=WINDOW, clock=FakeClock(T0),
                          log=folded.extend)
    serving = settings.serving.model_copy(update={"models": {
        "cancer": ModelServingSettings(max_batch_size=8, max_delay_ms=50)}}) if batching else (
        settings.serving)
    pool = InferencePool(threads)
    dataplane = build_dataplane(modelyard.open_registry(settings), serving, pool)
    dataplane.observer = collector
    return Observed(database, pool, collector, dataplane, folded)


async def answer_all(dataplane: DataPlane, requests: list[InferRequest]
                     ) -> list[InferResponse | BaseException]:
    """Send every request at once, half through ``submit`` (the callback path) and half through
    ``infer`` with a deadline (the task path), as the REST and gRPC adapters do."""
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[InferResponse]] = []
    for i, request in enumerate(requests):
        if i % 2:
            request.deadline = time.monotonic() + 30
            waiting.append(asyncio.ensure_future(dataplane.infer(request, "rest")))
            continue
        future: asyncio.Future[InferResponse] = loop.create_future()

        def done(response: InferResponse | None, error: BaseException | None,
                 future: asyncio.Future[InferResponse] = future) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                assert response is not None
                future.set_result(response)

        dataplane.submit(request, "rest", done)
        waiting.append(future)
    return await asyncio.gather(*waiting, return_exceptions=True)


def test_a_batched_models_requests_reach_the_window_and_the_log_as_the_model_ran_them(
    served: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    """With batching, the batcher hands each answered batch to monitoring whole: no request
    is split off and stacked again. Every request still reaches the window and the log once,
    under the id its caller got, with its own rows, its own outputs and its own latency."""
    X, _ = cancer
    setup = observed(served, batching=True)
    database, folded, collector = setup.database, setup.folded, setup.collector
    rows = X.to_numpy(np.float64)
    sizes = [1, 2, 3, 1, 1, 2, 4, 1] * 3  # 24 requests, 45 rows: batches of several requests
    edges = np.cumsum([0, *sizes])
    requests = [InferRequest("cancer", [Tensor("x", "FP64", [n, 30], rows[a:a + n])],
                             id=None if i % 3 else f"mine-{i}")
                for i, (n, a) in enumerate(zip(sizes, edges, strict=False))]
    began = time.perf_counter()
    try:
        answers = asyncio.run(answer_all(setup.dataplane, requests))
        took = time.perf_counter() - began
        collector.close()
    finally:
        setup.pool.shutdown()
    assert all(isinstance(a, InferResponse) for a in answers), answers
    ids = [a.id for a in answers if isinstance(a, InferResponse)]
    assert [ids[i] for i in range(0, 24, 3)] == [f"mine-{i}" for i in range(0, 24, 3)]
    windows = load(database, "cancer", 1)
    assert sum(w.rows for w in windows) == 45
    assert sum(w.requests for w in windows) == 24
    assert all(isinstance(item, Stacked) for item in folded)
    assert max(item.requests for item in folded) > 1
    logged = {o.request_id: o for o in observations_of(folded)}
    assert sorted(logged) == sorted(ids)  # each request once, under the id its caller got
    expected = cancer_model.predict_proba(X.iloc[:45])
    for i, request_id in enumerate(ids):
        seen, (a, b) = logged[request_id], (edges[i], edges[i + 1])
        assert seen.rows == sizes[i]
        np.testing.assert_array_equal(seen.data, rows[a:b])
        np.testing.assert_allclose(seen.outputs["predict_proba"], expected[a:b])
        assert 0 < seen.latency_s <= took
    merged = windows[0].profile
    for window in windows[1:]:
        assert merged is not None
        assert window.profile is not None
        merged.merge(window.profile)
    assert merged is not None
    assert merged.result()["mean radius"].count == 45
    assert merged.result()["mean radius"].max == rows[:45, 0].max()


def test_a_batch_the_model_fails_on_reaches_monitoring_as_its_answered_requests_and_one_error(
    served: Settings, cancer: Data
) -> None:
    """One request the model cannot take (a NaN) fails its batch; the batcher then runs its
    requests one by one. Monitoring gets the others' rows and outputs and counts one error."""
    X, _ = cancer
    setup = observed(served, batching=True)
    database, folded, collector = setup.database, setup.folded, setup.collector
    rows = X.to_numpy(np.float64)[:6].copy()
    rows[3, 4] = np.nan
    requests = [InferRequest("cancer", [Tensor("x", "FP64", [1, 30], rows[i:i + 1])],
                             id=f"r{i}") for i in range(6)]
    try:
        answers = asyncio.run(answer_all(setup.dataplane, requests))
        collector.close()
    finally:
        setup.pool.shutdown()
    assert [isinstance(a, InferResponse) for a in answers] == [True] * 3 + [False] + [True] * 2
    windows = load(database, "cancer", 1)
    assert (sum(w.requests for w in windows), sum(w.errors for w in windows)) == (6, 1)
    assert sum(w.rows for w in windows) == 5
    assert sorted(o.request_id for o in observations_of(folded)) == ["r0", "r1", "r2", "r4",
                                                                      "r5"]


class HeldBatch:
    """The collector, except that its first batch waits on the model thread, in the middle of
    being handed over, until the test releases it."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collector, name)

    def accumulate_batch(self, *args: Any) -> bool:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(10)
        taken: bool = self.collector.accumulate_batch(*args)
        return taken


def test_a_batch_is_handed_over_by_the_model_thread_and_a_caller_gone_meanwhile_is_left_out(
    served: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    """A batched model's batch goes to monitoring from the model thread that ran it, before
    its callers have their answers. A caller that gives up while that happens gets nothing
    and is not monitored; the batch's other requests are, with their own rows and outputs."""
    X, _ = cancer
    rows = X.to_numpy(np.float64)
    setup = observed(served, batching=True)
    held = HeldBatch(setup.collector)
    setup.dataplane.observer = cast(Observer, held)

    async def send() -> list[InferResponse | BaseException]:
        loop = asyncio.get_running_loop()
        sent = [asyncio.ensure_future(setup.dataplane.infer(
            InferRequest("cancer", [Tensor("x", "FP64", [2, 30], rows[2 * i:2 * i + 2])],
                         id=f"b{i}"), "rest")) for i in range(4)]
        assert await loop.run_in_executor(None, held.entered.wait, 10)
        sent[2].cancel()  # its caller gives up while the model thread hands the batch over
        await asyncio.sleep(0.05)
        held.release.set()
        return await asyncio.gather(*sent, return_exceptions=True)

    try:
        answers = asyncio.run(send())
        setup.collector.close()
    finally:
        held.release.set()
        setup.pool.shutdown()
    assert isinstance(answers[2], asyncio.CancelledError)
    assert [a.id for a in answers if isinstance(a, InferResponse)] == ["b0", "b1", "b3"]
    logged = {o.request_id: o for o in observations_of(setup.folded)}
    assert sorted(logged) == ["b0", "b1", "b3"]
    for i in (0, 1, 3):
        np.testing.assert_array_equal(logged[f"b{i}"].data, rows[2 * i:2 * i + 2])
        np.testing.assert_allclose(logged[f"b{i}"].outputs["predict_proba"],
                                   cancer_model.predict_proba(X.iloc[2 * i:2 * i + 2]))
    windows = load(setup.database, "cancer", 1)
    assert (sum(w.requests for w in windows), sum(w.rows for w in windows)) == (3, 6)


def test_an_unbatched_models_groups_are_written_by_the_model_threads_into_the_window_and_log(
    served: Settings, cancer: Data, cancer_model: Pipeline
) -> None:
    """Without batching, the requests one loop iteration read run one by one on the model
    threads, which write them straight into monitoring's column buffers. Every request whose
    caller took its answer reaches the window and the log once, under its id, with its own
    rows, outputs and latency; one whose caller gave up does not; requests that asked for
    other outputs still reach the window, the general way."""
    X, _ = cancer
    rows = X.to_numpy(np.float64)
    setup = observed(served, threads=2)
    database, pool, dataplane = setup.database, setup.pool, setup.dataplane
    collector, folded = setup.collector, setup.folded
    sizes = [1, 3, 2, 1, 1, 4, 2, 1] * 36  # 288 requests, 540 rows: buffers grow past 256 rows
    edges = np.cumsum([0, *sizes])
    model = dataplane.manager.resolve("cancer").require_ready()

    def request(i: int, wanted: list[str] | None = None) -> InferRequest:
        n, a = sizes[i], edges[i]
        return InferRequest("cancer", [Tensor("x", "FP64", [n, 30], rows[a:a + n])],
                            id=None if i % 5 else f"mine-{i}",
                            outputs=None if wanted is None else [RequestedOutput(w)
                                                                 for w in wanted])

    async def send() -> tuple[list[InferResponse], list[InferResponse]]:
        together = [asyncio.ensure_future(dataplane.infer(request(i), "rest"))
                    for i in range(270)]
        await asyncio.sleep(0)  # each has queued its request; the group is not yet handed over
        gone = dataplane.unbatched.run(model, ("cancer", "1"), Prepared(rows[:2], 2, None,
                                                                         "gone"))
        gone.cancel()  # one caller of the group stops waiting before it runs
        answered = await asyncio.gather(*together)
        other = await asyncio.gather(*(dataplane.infer(request(i, ["predict"]), "rest")
                                       for i in range(270, 288)))
        return list(answered), list(other)

    began = time.perf_counter()
    try:
        answered, other = asyncio.run(send())
        took = time.perf_counter() - began
        collector.close()
    finally:
        pool.shutdown()
    windows = load(database, "cancer", 1)
    assert sum(w.requests for w in windows) == 288
    assert sum(w.rows for w in windows) == 540
    logged = {o.request_id: o for o in observations_of(folded)}
    ids = [a.id for a in [*answered, *other]]
    assert sorted(logged) == sorted(ids)  # each once, "gone" not at all
    assert [ids[i] for i in range(0, 288, 5)] == [f"mine-{i}" for i in range(0, 288, 5)]
    # the groups came as few stacked groups, not one item a request
    assert sum(isinstance(item, Stacked) for item in folded) <= 4
    expected = cancer_model.predict_proba(X.iloc[:540])
    for i, request_id in enumerate(ids):
        seen, (a, b) = logged[request_id], (edges[i], edges[i + 1])
        assert seen.rows == sizes[i]
        np.testing.assert_array_equal(seen.data, rows[a:b])
        np.testing.assert_array_equal(seen.outputs["predict"], cancer_model.predict(X.iloc[a:b]))
        if i < 270:
            np.testing.assert_allclose(seen.outputs["predict_proba"], expected[a:b])
        assert 0 < seen.latency_s <= took
    summary = windows[0].profile.result() if windows[0].profile else {}
    assert summary["mean radius"].count == 540
    assert summary["mean radius"].max == rows[:540, 0].max()
    assert summary["proba_1"].missing == sum(sizes[270:])
