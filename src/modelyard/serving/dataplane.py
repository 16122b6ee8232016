"""The protocol-neutral core of the server: every REST and gRPC route calls one method here.

Errors are domain exceptions from :mod:`modelyard.errors`; each adapter maps them once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

import numpy as np

from modelyard.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelFailed,
    ModelyardError,
    NotFound,
    Unavailable,
)
from modelyard.serving import instances as v1
from modelyard.serving.admin import AdminRoutes
from modelyard.serving.batching import BatchStats, model_failure
from modelyard.serving.manager import READY, ModelManager, Slot
from modelyard.serving.metrics import ServingMetrics
from modelyard.serving.model import ModelBatch, Prepared, ServedModel
from modelyard.serving.observe import FeedbackSink, MonitoringHistory, Observer
from modelyard.serving.routing import RetrainAdmin, RolloutAdmin, Router
from modelyard.serving.types import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    RepositoryEntry,
    Tensor,
    request_ids,
)
from modelyard.serving.unbatched import Unbatched
from modelyard.settings import ServingSettings

try:
    _VERSION = version("modelyard")
except PackageNotFoundError:  # a source tree that is not installed
    _VERSION = "0+unknown"
T = TypeVar("T")
Done = Callable[[InferResponse | None, BaseException | None], None]
EXTENSIONS = ["binary_tensor_data", "model_repository", "generate", "kserve_v1"]


class DataPlane(AdminRoutes):
    def __init__(
        self, manager: ModelManager, settings: ServingSettings, metrics: ServingMetrics,
        observer: Observer | None = None,
    ) -> None:
        self.manager = manager
        self.settings = settings
        self.metrics = metrics
        # unbatched requests: each runs alone, but those read in one loop iteration go to a
        # model thread, and on to monitoring, together
        self.unbatched = Unbatched(manager.pool, metrics.observe_run)
        self.observer = observer
        self.feedback_sink: FeedbackSink | None = None
        self.history: MonitoringHistory | None = None
        self.router: Router | None = None
        self.rollouts: RolloutAdmin | None = None
        self.retrains: RetrainAdmin | None = None
        self.draining = False
        self._in_flight = 0
        self._mirrors: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[InferResponse]] = set()  # submit's, held till done
        manager.on_batch = self._batch_ran  # every batch's statistics reach the metrics
        manager.on_run = self._batch_answered  # batched requests reach monitoring per batch

    @property
    def observer(self) -> Observer | None:
        """Live monitoring's hand-off (None: monitoring off)."""
        return self._observer

    @observer.setter
    def observer(self, observer: Observer | None) -> None:
        self._observer = observer
        self.unbatched.on_run = None if observer is None else self._batch_answered
        self.unbatched.observer = observer
        self.manager.observer = observer

    # -- health and metadata -------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        slots = self.manager.slots()
        return not self.draining and all(s.state == READY for s in slots)

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "modelyard", "version": _VERSION, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        slot = self.manager.resolve(name, version)
        meta = slot.require_ready().metadata()
        if version is None:
            meta.versions = [str(s.version) for s in self.manager.versions(slot.name)]
        return meta

    def model_ready(self, name: str, version: str | None = None) -> bool:
        return self.manager.resolve(name, version).state == READY

    # -- inference -----------------------------------------------------------------------

    async def infer(self, request: InferRequest, protocol: str) -> InferResponse:
        started = time.perf_counter()
        return await self._infer_on(self._resolve(request, protocol, started), request,
                                    protocol, started)

    def submit(self, request: InferRequest, protocol: str, done: Done) -> None:
        """:meth:`infer` for a caller that takes the answer in ``done(response, error)``.

        A one-row call to a fast model costs the event loop less than the task and coroutines
        that :meth:`infer` needs, so without a deadline this runs without either: checks and
        conversion here, the model on its thread (or in its version's next batch), the rest in
        a callback. A request with a deadline runs :meth:`infer` in a task. An error in
        resolving the route is raised here; every later one reaches ``done``.
        """
        started = time.perf_counter()
        slot = self._resolve(request, protocol, started)
        if request.deadline is not None:
            task = asyncio.get_running_loop().create_task(
                self._infer_on(slot, request, protocol, started))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda finished: _settle(finished, done))
            return
        self._in_flight += 1
        try:
            model, names, cache_key, begun = self._begin(slot, request, started)
        except Exception as exc:
            self._in_flight -= 1
            self._count(slot, protocol, started, exc)
            done(None, exc)
            return
        if isinstance(begun, InferResponse):
            self._in_flight -= 1
            self._answered(slot, request, protocol, started, begun)
            done(begun, None)
            return

        def finished(outputs: dict[str, np.ndarray] | None, error: BaseException | None,
                     ) -> None:
            self._in_flight -= 1
            try:
                if error is not None:
                    raise _failure(model, error)
                assert outputs is not None
                response = self._finish(slot, model, names, cache_key, begun, outputs)
            except BaseException as exc:
                self._count(slot, protocol, started, exc)
                done(None, exc)
                return
            self._answered(slot, request, protocol, started, response)
            done(response, None)

        assert isinstance(begun, Prepared)
        batcher = slot.batcher
        if batcher is None:
            self.unbatched.put(model, slot.labels, begun, finished)
            return
        try:
            batcher.put(begun, finished)
        except Exception as exc:  # a full queue
            finished(None, exc)

    def _resolve(self, request: InferRequest, protocol: str, started: float) -> Slot:
        try:
            return self._slot(request)
        except BaseException as exc:  # never a caller-chosen name: labels stay bounded
            self.metrics.observe_request(
                "", "", protocol, _outcome(exc), time.perf_counter() - started
            )
            raise

    async def _infer_on(self, slot: Slot, request: InferRequest, protocol: str,
                        started: float) -> InferResponse:
        self._in_flight += 1
        try:
            response = await self._observed(
                slot, protocol, started, self._infer(slot, request, started)
            )
            if self.router is not None and request.version is None:
                self._mirror(slot, request, response)
            return response
        finally:
            self._in_flight -= 1

    def _answered(self, slot: Slot, request: InferRequest, protocol: str, started: float,
                  response: InferResponse) -> None:
        self._count(slot, protocol, started, None)
        if self.router is not None and request.version is None:
            self._mirror(slot, request, response)

    def _slot(self, request: InferRequest) -> Slot:
        """The version that answers: a rollout's choice for a bare name, else the name's own."""
        if self.router is not None and request.version is None:
            chosen = self.router.route(request)
            if chosen is not None:
                return self.manager.resolve(request.model, str(chosen))
        return self.manager.resolve(request.model, request.version)

    def _mirror(self, slot: Slot, request: InferRequest, response: InferResponse) -> None:
        """A shadow sees a copy of the request after the caller has its answer (off the hot
        path: a task the caller never waits for)."""
        assert self.router is not None
        shadow = self.router.mirror(request.model)
        if shadow is None or shadow == slot.version:
            return
        task = asyncio.get_running_loop().create_task(
            self._shadow(slot.name, shadow, request, response))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _shadow(self, name: str, version: int, request: InferRequest,
                      served: InferResponse) -> None:
        router = self.router
        started = time.perf_counter()
        try:
            slot = self.manager.resolve(name, str(version))
            copy = InferRequest(request.model, request.inputs, str(version), served.id,
                                request.outputs, request.parameters, None)
            answer = await self._observed(slot, "shadow", started,
                                          self._infer(slot, copy, started))
        except Exception as exc:
            if router is not None:
                router.mirrored(request, served, None, time.perf_counter() - started,
                                str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return
        if router is not None:
            router.mirrored(request, served, answer, time.perf_counter() - started, None)

    async def _observed(
        self, slot: Slot, protocol: str, started: float, work: Awaitable[T]
    ) -> T:
        """``work``'s result, counted and timed under the slot's labels whatever the outcome."""
        try:
            result = await work
        except BaseException as exc:
            self._count(slot, protocol, started, exc)
            raise
        self._count(slot, protocol, started, None)
        return result

    def _count(self, slot: Slot, protocol: str, started: float,
               exc: BaseException | None) -> None:
        elapsed = time.perf_counter() - started
        version = str(slot.version)
        if exc is None:
            self.metrics.observe_request(slot.name, version, protocol, "ok", elapsed)
            return
        outcome = _outcome(exc)
        self.metrics.observe_request(slot.name, version, protocol, outcome, elapsed)
        if self.observer is not None and outcome in ("error", "model_error", "timeout",
                                                     "unavailable"):
            self.observer.failed(slot.name, slot.version, time.time(), elapsed)

    async def _infer(self, slot: Slot, request: InferRequest, started: float) -> InferResponse:
        model, names, cache_key, begun = self._begin(slot, request, started)
        if isinstance(begun, InferResponse):
            return begun
        outputs = await self._run(slot, model, begun, request.deadline)
        return self._finish(slot, model, names, cache_key, begun, outputs)

    def _begin(self, slot: Slot, request: InferRequest, started: float
               ) -> tuple[ServedModel, list[str], Any, Prepared | InferResponse]:
        """Checks and conversion before the model runs; a cached answer ends it here."""
        model = slot.require_ready()
        names = model.check_outputs(request.outputs, slot.config.outputs)
        request_id = request.id if request.id is not None else request_ids.next()
        cache_key = None
        if slot.cache is not None:
            cache_key = slot.cache.key(model.key, request.inputs, names)
            cached = slot.cache.get(cache_key)
            if cached is not None:
                self.metrics.cache_hit(slot.name, str(slot.version))
                return model, names, cache_key, self._response(model, request_id, cached,
                                                               cache_hit=True)
        prepared = model.prepare(request.inputs)
        prepared.outputs = names
        prepared.request_id = request_id
        prepared.started = started
        return model, names, cache_key, prepared

    def _finish(self, slot: Slot, model: ServedModel, names: list[str], cache_key: Any,
                prepared: Prepared, outputs: dict[str, np.ndarray]) -> InferResponse:
        """The answer from the model's outputs, cached. (Monitoring gets them elsewhere: each
        model run's from the batch or group it ran in, :meth:`_batch_answered`.)"""
        tensors = model.to_tensors(outputs, names)
        if slot.cache is not None and cache_key is not None:
            slot.cache.put(cache_key, tensors)
        return self._response(model, prepared.request_id, tensors,
                              cache_hit=False if slot.cache else None)

    def _batch_ran(self, slot: Slot, stats: BatchStats) -> None:
        self.metrics.observe_batch(*slot.labels, stats)

    def _batch_answered(self, model: ServedModel, parts: list[Prepared], data: ModelBatch,
                        outputs: dict[str, np.ndarray], finished: float) -> None:
        """Requests the model answered together (a batch, or an unbatched group), handed to
        monitoring in one call; one request alone goes as such (``record``: a tuple, which
        costs the collector less than a batch of one)."""
        observer = self.observer
        if observer is None:
            return
        if len(parts) == 1:
            part = parts[0]
            observer.record(model, part.request_id, time.time(), finished - part.started,
                            part.rows, data, outputs)
            return
        observer.record_batch(model, parts, time.time(), finished, data, outputs)

    async def _run(
        self, slot: Slot, model: ServedModel, prepared: Prepared, deadline: float | None
    ) -> dict[str, np.ndarray]:
        if deadline is not None and deadline <= time.monotonic():
            raise DeadlineExceeded("the request's deadline passed before it reached the model")
        if slot.batcher is not None:
            return await slot.batcher.submit(prepared, deadline)
        try:  # with the requests read together (:attr:`unbatched`)
            future = self.unbatched.run(model, slot.labels, prepared)
            if deadline is None:
                return await future
            return await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise DeadlineExceeded(
                f"the request's deadline passed while model {model.key} was running"
            ) from None
        except ModelyardError:
            raise
        except Exception as exc:
            raise model_failure(model, exc) from exc

    @staticmethod
    def _response(
        model: ServedModel, request_id: str, outputs: list[Tensor], cache_hit: bool | None
    ) -> InferResponse:
        return InferResponse(
            model_name=model.name,
            model_version=str(model.version),
            id=request_id,
            outputs=outputs,
            cache_hit=cache_hit,
        )

    async def stream(
        self, request: InferRequest, protocol: str
    ) -> AsyncIterator[InferResponse]:
        """Partial results of a model whose ``predict`` yields, one response per chunk."""
        slot = self.manager.resolve(request.model, request.version)
        model = slot.require_ready()
        names = model.check_outputs(request.outputs)
        prepared = model.prepare(request.inputs)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=64)

        def produce() -> None:
            try:
                for chunk in model.runtime.stream(prepared.data):
                    asyncio.run_coroutine_threadsafe(queue.put(("chunk", chunk)), loop).result()
            except Exception as exc:
                asyncio.run_coroutine_threadsafe(queue.put(("error", exc)), loop).result()
            asyncio.run_coroutine_threadsafe(queue.put(("end", None)), loop).result()

        producer = self.manager.pool.run(produce)
        request_id = request.id if request.id is not None else request_ids.next()
        started = time.perf_counter()
        outcome = "ok"
        try:
            while True:
                kind, value = await queue.get()
                if kind == "end":
                    break
                if kind == "error":
                    outcome = "model_error"
                    raise model_failure(model, value)
                available = [n for n in names if n in value]
                yield InferResponse(
                    model.name, str(model.version), request_id, model.to_tensors(value, available)
                )
        finally:
            await producer
            self.metrics.observe_request(
                slot.name, str(slot.version), protocol, outcome, time.perf_counter() - started
            )

    # -- KServe V1 -----------------------------------------------------------------------

    async def predict_v1(
        self, name: str, instances: Any, request_id: str | None = None,
    ) -> list[Any]:
        """``{"instances": [...]}`` → predictions, one per instance (TF-Serving row format)."""
        predictions, _ = await self.predict_v1_versioned(name, instances, request_id)
        return predictions

    async def predict_v1_versioned(
        self, name: str, instances: Any, request_id: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> tuple[list[Any], int]:
        """:meth:`predict_v1`, and the version that answered (V1 bodies cannot say it)."""
        rows = v1.require_rows(instances)
        slot = self._slot(InferRequest(name, [], headers=headers))
        model = slot.require_ready()
        data = v1.model_input(model, rows)
        started = time.perf_counter()
        prepared = Prepared(data, len(instances), request_id=request_id or request_ids.next(),
                            started=started)
        outputs = await self._observed(  # (monitoring gets it from the batch or group it ran in)
            slot, "rest_v1", started, self._run(slot, model, prepared, None),
        )
        main = outputs["predict"] if "predict" in outputs else next(iter(outputs.values()))
        return [v1.plain(value) for value in main], model.version

    def status_v1(self, name: str) -> dict[str, Any]:
        slot = self.manager.resolve(name)
        return {"name": slot.name, "version": str(slot.version), "ready": slot.state == READY}

    def repository_index(self) -> list[RepositoryEntry]:
        return self.manager.index()

    async def load_model(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        slots = await loop.run_in_executor(None, self.manager.load_model, name)
        failed = [s for s in slots if s.state != READY]
        if failed and len(failed) == len(slots):
            raise Unavailable(f"model {name!r} failed to load: {failed[0].reason}")

    async def unload_model(self, name: str) -> None:
        self.manager.unload_model(name)

    # -- shutdown ------------------------------------------------------------------------

    async def drain(self, timeout_s: float) -> None:
        """Stop reporting ready, then wait for in-flight requests (at most ``timeout_s``)."""
        self.draining = True
        deadline = time.monotonic() + timeout_s
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for slot in self.manager.slots():
            if slot.batcher is not None:
                await slot.batcher.close()


def _settle(task: asyncio.Task[InferResponse], done: Done) -> None:
    if task.cancelled():  # the loop is closing under it
        done(None, Unavailable("the server stopped before the model answered"))
    elif task.exception() is not None:
        done(None, task.exception())
    else:
        done(task.result(), None)


def _failure(model: ServedModel, exc: BaseException) -> BaseException:
    """What the caller sees of an exception raised while ``model`` ran."""
    if isinstance(exc, ModelyardError) or not isinstance(exc, Exception):
        return exc
    return model_failure(model, exc)


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, ModelFailed):
        return "model_error"
    if isinstance(exc, InvalidInput | NotFound):
        return "client_error"
    if isinstance(exc, DeadlineExceeded):
        return "timeout"
    if isinstance(exc, Unavailable):
        return "unavailable"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "error"

