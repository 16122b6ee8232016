"""Requests to a model without batching: each runs alone, but they travel together.

Every request read in one iteration of the event loop is queued here; at the iteration's end
each model's requests go to a model thread as one call (split across the threads when there
are several). On that thread each request runs on its own — its own input, its own requested
outputs, its own failure — and the answers come back to the loop together. A request alone in
its iteration (as at c=1) goes straight to a thread, with nothing to group.

What the group adds is for live monitoring. Once a group is answered, the model thread hands
it to monitoring itself (:meth:`~modelyard.serving.observe.Observer.accumulate`), which writes
its inputs and outputs into column buffers there and then; the event loop only withdraws a
request whose caller stopped waiting meanwhile. A group monitoring does not take that way
(requests that asked for other outputs, inputs as named tensors or a DataFrame) is stacked on
the model thread when its requests' outputs agree, and handed over by the loop as a batcher's
batch is: one hand-off a group rather than one a request. With monitoring off nothing is
handed over or stacked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from operator import attrgetter, itemgetter
from typing import cast

import numpy as np

from modelyard.serving.batching import Outputs, Ran, hand_off_failed, monitor_answered
from modelyard.serving.executor import InferencePool
from modelyard.serving.model import ModelBatch, Prepared, ServedModel
from modelyard.serving.observe import Observer

logger = logging.getLogger("modelyard.serving")
# done(outputs, None) or done(None, error): a request's answer, on the event loop; False back
# means its caller had stopped waiting (then monitoring does not get it)
Done = Callable[[Outputs | None, BaseException | None], object]
# observe(labels, rows, waited, took): one request's wait for a model thread and run
Observe = Callable[[tuple[str, str], int, float, float], None]


# one queued request: its model, the model's metric labels, its input, where its answer goes
_Item = tuple[ServedModel, tuple[str, str], Prepared, Done]
# a request's answer (or its own error), how long it waited for a model thread and ran
_Answer = tuple[Outputs | Exception, float, float]
# what a group's call gives back: each request's answer; whether monitoring took the group on
# the model thread; if not, the stacked input and outputs for the loop to hand over (None:
# hand each answer over alone); and perf_counter() when the last one ended
_Ran = tuple[list[_Answer], bool, tuple[ModelBatch, Outputs] | None, float]
_ROWS = attrgetter("rows")


class Unbatched:
    def __init__(self, pool: InferencePool, observe: Observe) -> None:
        self.pool = pool
        self.observe = observe
        self.on_run: Ran | None = None  # live monitoring's hand-off; None: monitoring off
        self.observer: Observer | None = None  # ... and what a model thread hands groups to
        self._queued: list[_Item] = []

    def put(self, model: ServedModel, labels: tuple[str, str], prepared: Prepared,
            done: Done) -> None:
        """Run ``prepared`` on ``model`` alone; ``done`` gets its answer on the event loop."""
        queued = self._queued
        if not queued:
            asyncio.get_running_loop().call_soon(self._hand_over)
        queued.append((model, labels, prepared, done))

    def run(self, model: ServedModel, labels: tuple[str, str], prepared: Prepared,
            ) -> asyncio.Future[Outputs]:
        """:meth:`put` for a caller that awaits the answer (gRPC, KServe V1, a shadow, a
        request with a deadline); cancelling the future tells that it stopped waiting."""
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()

        def done(outputs: Outputs | None, error: BaseException | None) -> bool:
            if future.done():  # cancelled: its caller stopped waiting
                return False
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(cast(Outputs, outputs))
            return True

        self.put(model, labels, prepared, done)
        return future

    def _hand_over(self) -> None:
        queued, self._queued = self._queued, []
        if len(queued) == 1:  # a lone request (as at c=1): no group to form
            item = queued[0]
            self.pool.call(_run_alone, (item[0], item[2], time.perf_counter()),
                           partial(self._answer, queued, [item[2]]))
            return
        groups: dict[ServedModel, list[_Item]] = {}
        for item in queued:
            group = groups.get(item[0])
            if group is None:
                groups[item[0]] = [item]
            else:
                group.append(item)
        threads, observer = self.pool.size, self.observer
        for model, items in groups.items():
            share = -(-len(items) // threads)  # each model thread a share
            for start in range(0, len(items), share):
                chunk = items if share == len(items) else items[start:start + share]
                parts = [item[2] for item in chunk]
                self.pool.call(_run_each, (model, parts, observer, time.perf_counter()),
                               partial(self._answer, chunk, parts))

    def _answer(self, items: list[_Item], parts: list[Prepared], ran: _Ran | None,
                error: BaseException | None) -> None:
        if ran is None:  # the model thread stopped (not a model's exception: those are kept)
            for item in items:
                _tell(item[3], None, error)
            return
        answers, accumulated, whole, finished = ran
        observe = self.observe
        taken = []
        for (_, labels, part, done), (result, waited, took) in zip(items, answers, strict=True):
            observe(labels, part.rows, waited, took)
            if isinstance(result, Exception):
                taken.append(_tell(done, None, result))
            else:
                taken.append(_tell(done, result, None))
        monitor_answered(self.observer, self.on_run, items[0][0], parts, taken, accumulated,
                         whole, [answer[0] for answer in answers], finished)


def _tell(done: Done, outputs: Outputs | None, error: BaseException | None) -> bool:
    """Give a caller its answer; whether it took it."""
    try:
        return done(outputs, error) is not False
    except Exception:  # one caller's failure must not keep the others' answers
        logger.exception("an unbatched request's callback failed")
        return True


def _run_one(model: ServedModel, part: Prepared, handed: float) -> tuple[_Answer, float]:
    """On a model thread: one request, timed; its answer and perf_counter() when it ended."""
    started = time.perf_counter()
    try:
        result: Outputs | Exception = model.run(part.data, part.outputs)
    except Exception as exc:  # this request's failure alone
        result = exc
    finished = time.perf_counter()
    return (result, started - handed, finished - started), finished


def _run_alone(model: ServedModel, part: Prepared, handed: float) -> _Ran:
    """On a model thread: a request alone in its loop iteration, as a group of one that
    monitoring takes from the loop (as a plain tuple: cheaper than buffering one request)."""
    answer, finished = _run_one(model, part, handed)
    return [answer], False, None, finished


def _run_each(model: ServedModel, parts: list[Prepared], observer: Observer | None,
              handed: float) -> _Ran:
    """On a model thread: each request alone, timed; then, with monitoring on (``observer``),
    the group handed to monitoring, or else stacked for the loop to hand over when every
    request was answered with the same outputs."""
    answers: list[_Answer] = []
    finished = handed
    for part in parts:
        answer, finished = _run_one(model, part, handed)  # (the last request's end is the group's)
        answers.append(answer)
    if observer is None:
        return answers, False, None, finished
    results = [answer[0] for answer in answers]
    try:  # (a failed request's exception in results: monitoring says no)
        if observer.accumulate(model, parts, cast(list[Outputs], results), finished):
            return answers, True, None, finished
    except Exception:  # monitoring must not fail a request; the loop hands the group over
        hand_off_failed(model, "an unbatched group")
    return answers, False, _stacked(model, parts, results), finished


def _stacked(model: ServedModel, parts: list[Prepared],
             results: list[Outputs | Exception]) -> tuple[ModelBatch, Outputs] | None:
    """For a group monitoring did not take on the model thread (see the module): its inputs
    and outputs stacked, or None when a request failed, asked for other outputs or did not
    get one output row per input row (monitoring then takes each answer alone). The checks
    run in ``map``'s C loops rather than a Python loop per request."""
    try:
        answered = cast(list[Outputs], results)  # (a failed request's exception is not a
        names = answered[0].keys()  # dict: .keys and dict.keys raise on it)
        if not all(map(names.__eq__, map(dict.keys, answered))):
            return None
        rows = list(map(_ROWS, parts))
        outputs = {}
        for name in names:
            values = list(map(itemgetter(name), answered))
            if list(map(len, values)) != rows:  # (len of a 0-d output raises TypeError)
                return None
            outputs[name] = np.concatenate(values)
        return model.stack(parts), outputs
    except (AttributeError, TypeError, ValueError):  # a failure; parts that do not stack
        return None
