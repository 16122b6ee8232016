"""What the data plane hands to live monitoring: each answered batch of a batched model, each
group of an unbatched one, or a request answered alone, in one O(1) call.

A batch or group goes from the model thread that ran it (``accumulate_batch``,
``accumulate``), before its callers have their answers; what the observer does not take that
way, the event loop hands over once it is answered (``record_batch``, ``record``). The data
plane knows only this Protocol; the composition root plugs in
:class:`modelyard.live.collector.Collector`, which writes what the model threads hand it into
column buffers, stacks what the loop hands it within ~10 ms, and folds both into window
profiles and the prediction log off the request path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from modelyard.serving.model import Prepared, ServedModel


@dataclass(slots=True)
class Observation:
    """One answered request: the model's input rows as it saw them and the outputs it gave.

    ``data`` is a 2-D array or a DataFrame with ``columns`` in signature order (tabular
    models), or a dict of named tensors; ``outputs`` are the computed outputs by name;
    ``at`` is wall-clock seconds (``time.time()``); ``latency_s`` the time to the answer.
    """

    model: str
    version: int
    request_id: str
    at: float
    latency_s: float
    rows: int
    columns: list[str]
    data: Any
    outputs: dict[str, np.ndarray]
    classes: list[Any] | None = None


class Observer(Protocol):
    def record(self, model: ServedModel, request_id: str, at: float, latency_s: float,
               rows: int, data: Any, outputs: dict[str, np.ndarray]) -> None:
        """Take one answered request of ``model`` (what an :class:`Observation` holds, without
        building one); must return at once and never raise. The observer may keep ``data``
        and ``outputs`` for a while: the caller must not change them afterwards."""
        ...

    def record_batch(self, model: ServedModel, parts: list[Prepared], at: float,
                     finished: float, data: Any, outputs: dict[str, np.ndarray]) -> None:
        """Take requests the model answered together: ``parts`` (each with its id, rows and
        start), the input ``data`` the model ran on (their rows stacked in order) and its
        ``outputs``; ``finished`` is ``perf_counter()`` when the model was done (a request's
        latency is ``finished - part.started``). Same rules as :meth:`record`."""
        ...

    def accumulate(self, model: ServedModel, parts: list[Prepared],
                   results: list[dict[str, np.ndarray]], finished: float) -> bool:
        """Called on a model thread, from any of them: take requests it answered one by one
        (``results``: each request's outputs, in order), before their callers have them.
        False: not taken (the caller hands them over with :meth:`record_batch` or
        :meth:`record`). Same rules as :meth:`record`."""
        ...

    def accumulate_batch(self, model: ServedModel, parts: list[Prepared], data: Any,
                         outputs: dict[str, np.ndarray], finished: float) -> bool:
        """Called on a model thread, from any of them: take requests it answered as one batch
        (what :meth:`record_batch` gets), before their callers have them. False: not taken
        (the caller hands them over with :meth:`record_batch`). Same rules as :meth:`record`."""
        ...

    def withdraw(self, request_ids: list[str]) -> None:
        """Requests taken by :meth:`accumulate` or :meth:`accumulate_batch` whose callers had
        stopped waiting: not to be monitored, unless the observer already used them. Never
        raises."""
        ...

    def observe(self, observation: Observation) -> None:
        """Take one answered request; must return at once and never raise."""
        ...

    def failed(self, model: str, version: int, at: float, latency_s: float) -> None:
        """Count one request of this version that ended in an error."""
        ...


class FeedbackSink(Protocol):
    def ingest(self, items: Any) -> Any:
        """Store delayed labels ``[{"id": ..., "label": ...}]``; returns what was accepted."""
        ...


class MonitoringHistory(Protocol):
    def results(self, model: str, since: str | None) -> list[dict[str, Any]]:
        """The monitor's stored window results of ``model``, oldest first."""
        ...
