"""Dynamic batching for one model version.

Requests queue; a batch closes when it holds ``max_batch_size`` rows or when
``max_delay`` has passed since its *first* request was queued (monotonic clock) — never
earlier, never later than the model allows. With no delay (0) there is no timer: a batch
takes what queued while the model was busy and what arrives together with it, closing at the
first loop iteration that queues nothing new. Requests are stacked by rows, so a 5-row request
counts 5; one that alone exceeds the limit runs by itself. Each caller gets exactly its own
rows back. If the model fails on a stacked batch, its requests are run one by one, so only the
request that makes the model fail gets the error.

One batch runs at a time per version, in the inference thread pool; while it runs, the next
one fills, which is what makes batches grow under load. Live monitoring gets a batch whole:
the requests, the stacked input the model ran on and its outputs, so that nothing is split
per request and stacked again to be monitored. The model thread hands it over itself, before
the callers have their answers (:meth:`~modelyard.serving.observe.Observer.accumulate_batch`);
the event loop then only withdraws a request whose caller stopped waiting meanwhile. A batch
monitoring does not take that way goes to ``on_run`` from the loop, once it is answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from modelyard.errors import (
    DeadlineExceeded,
    ModelFailed,
    ModelyardError,
    Overloaded,
    first_line,
)
from modelyard.serving.executor import InferencePool
from modelyard.serving.model import ModelBatch, Prepared, ServedModel
from modelyard.serving.observe import Observer

logger = logging.getLogger("modelyard.serving")
Outputs = dict[str, np.ndarray]
Clock = Callable[[], float]


@dataclass(slots=True)
class BatchStats:
    """What one batch looked like, for metrics."""

    size_rows: int
    requests: int
    queue_seconds: list[float] = field(default_factory=list)
    run_seconds: float = 0.0


Done = Callable[[Outputs | None, BaseException | None], None]
# on_run(model, requests, input, outputs, finished): requests the model answered together, the
# input it ran on (their rows stacked in order), its outputs, and perf_counter() when it ended
Ran = Callable[[ServedModel, list[Prepared], ModelBatch, Outputs, float], None]
# what a batch's call on the model thread gives back: the stacked input and its outputs for the
# loop to hand to ``on_run`` (None when monitoring took them on the model thread, or when the
# model failed on the stack and each request ran alone); each request's answer; whether
# monitoring took the batch; and perf_counter() when the model was done
_Computed = tuple[tuple[ModelBatch, Outputs] | None, list[Outputs | BaseException], bool, float]
_TOLD: weakref.WeakSet[ServedModel] = weakref.WeakSet()  # models whose hand-off failed once


@dataclass(slots=True, eq=False)
class _Item:
    """A queued request: its caller awaits ``future`` (:meth:`Batcher.submit`) or is called
    back through ``done`` (:meth:`Batcher.put`)."""

    prepared: Prepared
    future: asyncio.Future[Outputs] | None
    queued_at: float
    deadline: float | None
    done: Done | None = None

    def skipped(self) -> bool:
        """Its caller stopped waiting (cancelled, or past its deadline in ``submit``)."""
        return self.future is not None and self.future.done()

    def answer(self, result: Outputs | BaseException) -> None:
        if self.done is not None:
            try:
                if isinstance(result, BaseException):
                    self.done(None, result)
                else:
                    self.done(result, None)
            except Exception:  # the caller's own failure must not stop the batch loop
                logger.exception("a batched request's callback failed")
        elif self.future is not None and not self.future.done():
            if isinstance(result, BaseException):
                self.future.set_exception(result)
            else:
                self.future.set_result(result)


class Batcher:
    """A version's queue and its batches, driven by loop callbacks: no task, event or future
    of its own. A batch is closed by a timer (its first request's delay is up), at the next
    loop iteration (the queue holds a full batch), at the first loop iteration that queued
    nothing new (no delay: see below), or as soon as the batch before it is answered; it
    runs on a model thread as one call, and its answer comes back as one callback.

    With ``max_delay_s`` 0 a batch never waits on a timer, but it does not close while the
    loop is still reading requests that arrived together: after each loop iteration that
    queued more, it looks again (at most ``max_batch_size`` times). On one core this put the
    16 requests of c=16 in one batch instead of two of 8, which raised throughput by 27%
    (ONNX MLP; ``benchmarks/serving/ab_trees.py``): the loop reads, then answers, each in
    one stretch, and the model thread is woken once."""

    def __init__(
        self,
        model: ServedModel,
        pool: InferencePool,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        on_batch: Callable[[BatchStats], None] | None = None,
        clock: Clock = time.monotonic,
        on_run: Ran | None = None,
        observer: Callable[[], Observer | None] = lambda: None,
    ) -> None:
        self.model = model
        self.pool = pool
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.on_run = on_run
        self.observer = observer  # live monitoring's observer at the time of each batch
        self.clock = clock
        self._queue: deque[_Item] = deque()
        self._rows = 0  # rows in the queue
        self._running = False  # a batch is on a model thread
        self._timer: asyncio.Handle | None = None  # when the next batch closes
        self._delayed = False  # ... and whether that is its delay's timer, not the next look
        self._closed = False
        # with no delay: requests queued so far, and when the next batch last looked
        self._puts = 0
        self._seen = 0
        self._looks = 0

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def submit(self, prepared: Prepared, deadline: float | None = None) -> Outputs:
        loop = asyncio.get_running_loop()
        item = _Item(prepared, loop.create_future(), self.clock(), deadline)
        self._enqueue(item)
        timeout = None if deadline is None else max(0.0, deadline - self.clock())
        assert item.future is not None
        try:
            return await asyncio.wait_for(asyncio.shield(item.future), timeout)
        except TimeoutError:
            item.future.cancel()
            raise DeadlineExceeded(
                f"the request's deadline passed while model {self.model.key} was busy"
            ) from None
        except asyncio.CancelledError:
            item.future.cancel()  # the client went away: skip its rows
            raise

    def put(self, prepared: Prepared, done: Done) -> None:
        """:meth:`submit` without a deadline, answered by ``done(outputs, None)`` or
        ``done(None, error)`` on the event loop: no task, future or coroutine per request.
        A full queue raises :class:`Overloaded` here."""
        self._enqueue(_Item(prepared, None, self.clock(), None, done))

    def _enqueue(self, item: _Item) -> None:
        if self._closed:
            raise Overloaded(f"model {self.model.key} is shutting down", retry_after_s=1.0)
        if len(self._queue) >= self.max_queue:
            raise Overloaded(
                f"model {self.model.key} has {len(self._queue)} requests queued (the limit); "
                "retry shortly",
                retry_after_s=max(0.05, self.max_delay_s * 2),
            )
        self._queue.append(item)
        self._rows += item.prepared.rows
        self._puts += 1
        if not self._running:
            self._arm(asyncio.get_running_loop(), soon=True)

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closed = True
        while self._queue or self._running:
            await asyncio.sleep(0.005)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wait_left(self) -> float:
        """Seconds until the next batch may close: 0 once it is full or its first request's
        delay is up."""
        if self._rows >= self.max_batch_size:
            return 0.0
        return self._queue[0].queued_at + self.max_delay_s - self.clock()

    def _arm(self, loop: asyncio.AbstractEventLoop, soon: bool) -> None:
        """Close the next batch when it is due: at the next loop iteration (``soon``) or now,
        if it is due already, else on a timer; a timer is re-armed if it fires early."""
        left = self._wait_left()
        timer = self._timer
        if left > 0:
            if timer is None:
                self._timer, self._delayed = loop.call_later(left, self._due), True
        elif soon:
            if timer is not None and self._delayed:
                timer.cancel()  # a full batch does not wait out the delay
                timer = self._timer = None
            if timer is None:
                self._seen, self._looks = self._puts, 0
                self._timer, self._delayed = loop.call_soon(self._due), False
        else:
            if timer is not None:
                timer.cancel()
                self._timer = None
            self._start(loop)

    def _due(self) -> None:
        self._timer = None
        if self._running or not self._queue:
            return
        loop = asyncio.get_running_loop()
        if self._wait_left() > 0:  # the loop's timers may fire a little early
            self._arm(loop, soon=False)
        elif (self.max_delay_s == 0 and self._puts != self._seen
              and self._looks < self.max_batch_size):
            # No delay, and requests came in since the last look: the loop is still reading
            # the ones that arrived together. Look again after its next iteration.
            self._seen = self._puts
            self._looks += 1
            self._timer, self._delayed = loop.call_soon(self._due), False
        else:
            self._start(loop)

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        now = self.clock()
        queue = self._queue
        while queue:
            item = queue[0]
            if item.skipped():  # cancelled by its caller or timed out
                queue.popleft()
                self._rows -= item.prepared.rows
                continue
            if item.deadline is not None and item.deadline <= now:
                queue.popleft()
                self._rows -= item.prepared.rows
                item.answer(DeadlineExceeded(f"the request's deadline passed before model "
                                             f"{self.model.key} could run it"))
                continue
            if batch and rows + item.prepared.rows > self.max_batch_size:
                break
            queue.popleft()
            batch.append(item)
            rows += item.prepared.rows
        self._rows -= rows
        return batch

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._take()
        if not batch:
            return
        self._running = True
        started = self.clock()
        self.pool.call(self._compute, (batch,),
                       lambda done, error: self._finished(loop, batch, started, done, error))

    def _finished(self, loop: asyncio.AbstractEventLoop, batch: list[_Item], started: float,
                  done: _Computed | None, error: BaseException | None) -> None:
        try:
            if done is None:  # (not an exception of the model's: _compute keeps those)
                failure = error if isinstance(error, Exception) else ModelFailed(
                    f"model {self.model.key} stopped: {error!r}")
                done = None, [failure] * len(batch), False, time.perf_counter()
            whole, results, accumulated, finished = done
            stats = BatchStats(
                size_rows=sum(i.prepared.rows for i in batch),
                requests=len(batch),
                queue_seconds=[started - i.queued_at for i in batch],
                run_seconds=self.clock() - started,
            )
            answered = [not item.skipped() for item in batch]  # (a caller gone is not answered)
            for item, result in zip(batch, results, strict=True):
                item.answer(result)
            if self.on_batch is not None:
                self.on_batch(stats)
            monitor_answered(self.observer(), self.on_run, self.model,
                             [item.prepared for item in batch], answered, accumulated, whole,
                             results, finished)
        finally:
            self._running = False
            if self._queue:
                self._arm(loop, soon=False)

    def _compute(self, batch: list[_Item]) -> _Computed:
        """On a model thread: the batch stacked, and if the model fails on it, each request
        alone, so that only the one that makes it fail gets the error; then, with monitoring
        on, the batch handed to monitoring."""
        parts = [item.prepared for item in batch]
        try:
            wanted: set[str] | None = None
            if all(part.outputs is not None for part in parts):
                wanted = {name for part in parts for name in part.outputs or ()}
            data = self.model.stack(parts)
            outputs = self.model.run(data, wanted)
            finished = time.perf_counter()
            results: list[Outputs | BaseException] = list(
                self.model.split(outputs, [p.rows for p in parts]))
        except Exception:
            answers = [self._alone(part) for part in parts]
            return None, answers, False, time.perf_counter()
        observer = self.observer()
        if observer is not None:
            try:
                if observer.accumulate_batch(self.model, parts, data, outputs, finished):
                    return None, results, True, finished
            except Exception:  # monitoring must not fail a batch; the loop hands it over
                hand_off_failed(self.model, "a batch")
        return (data, outputs), results, False, finished

    def _alone(self, prepared: Prepared) -> Outputs | BaseException:
        try:
            return self.model.run(prepared.data, prepared.outputs)
        except ModelyardError as exc:
            return exc
        except Exception as exc:
            return model_failure(self.model, exc)


def monitor_answered(observer: Observer | None, on_run: Ran | None, model: ServedModel,
                     parts: list[Prepared], taken: list[bool], accumulated: bool,
                     whole: tuple[ModelBatch, Outputs] | None,
                     results: list[Outputs | BaseException], finished: float) -> None:
    """Monitoring's part once the callers have their answers (``taken``: whether each caller
    took its own), on the event loop. Requests the observer took on the model thread
    (``accumulated``) whose callers had gone are withdrawn (rare); else what was answered goes
    to ``on_run`` (:func:`hand_answered`). Shared by a batcher's batches and an unbatched
    model's groups."""
    if accumulated:
        if not all(taken) and observer is not None:
            observer.withdraw([part.request_id
                               for part, took in zip(parts, taken, strict=True) if not took])
    elif on_run is not None:
        hand_answered(on_run, model, parts, taken, whole, results, finished)


def hand_answered(on_run: Ran, model: ServedModel, parts: list[Prepared], taken: list[bool],
                  whole: tuple[ModelBatch, Outputs] | None,
                  results: list[Outputs | BaseException], finished: float) -> None:
    """Hand what the model answered together to ``on_run`` (live monitoring): whole when it
    was stacked and every caller took its answer, else each answered request alone. Shared by
    a batcher's batches and an unbatched model's groups; monitoring never stops either."""
    try:
        if whole is not None and all(taken):
            on_run(model, parts, *whole, finished)
            return
        for part, took, result in zip(parts, taken, results, strict=True):
            if took and not isinstance(result, BaseException):
                on_run(model, [part], part.data, result, finished)
    except Exception:
        logger.exception("handing answered requests to monitoring failed")


def hand_off_failed(model: ServedModel, what: str) -> None:
    """Log, with its traceback, that monitoring raised taking ``what`` of ``model`` on a model
    thread: once per model, since a bug there would repeat for every batch or group. (Called
    from the ``except`` clause; what was refused then goes the general way.)"""
    if model not in _TOLD:
        _TOLD.add(model)
        logger.exception("monitoring could not take %s of %s; they go the general way",
                         what, model.key)


def model_failure(model: ServedModel, exc: Exception) -> ModelFailed:
    """A model that raises on input that passed its signature is told to the caller as a
    client-side problem with the model's own words, never as a server crash."""
    detail = first_line(str(exc)) or type(exc).__name__
    return ModelFailed(f"model {model.key} failed on this input: {detail}")
