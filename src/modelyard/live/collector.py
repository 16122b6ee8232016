"""Observations from the data plane → window profiles per model version, off the request path.

:meth:`Collector.record` (the data plane's call per request), :meth:`Collector.record_batch`
(its call per batch of a batched model) and :meth:`Collector.observe` are one
``deque.append``. A background thread stacks what queued every ``stack_interval_s`` (10 ms;
less often under light traffic) per model version into columns (:mod:`.handoff` for one
round, :mod:`.stacked` for the columns: inputs, then the outputs as ``prediction`` and
``proba_<class>`` columns, the names reports use), and every ``interval_s`` folds the stacked
columns into that version's window profile with one chunk (and at once when a window ends,
so that it is stored whole before the monitor judges it); the same stacked groups go on to
the prediction log, so a request's arrays are stacked once for both. A batched model's
batch and an unbatched model's group skip the queue: the model thread writes them into column
buffers (:meth:`Collector.accumulate_batch`, :meth:`Collector.accumulate`, :mod:`.columns`),
which the fold takes whole; what the queue gets is what the buffers refuse (a batch there
comes stacked already: its input and outputs are taken as the model ran them), requests
answered alone and failures. A window is written to the
store when it ends, on :meth:`Collector.flush`, and on :meth:`Collector.close`; a replica
writes the whole of its window each time, so a rewrite replaces rather than adds.

Why stack so often: a request's own objects (its arrays, dicts, id) cost a server more the
longer they live. Held for a whole fold interval (half a second: thousands of requests),
every new request's allocations land on memory that is no longer in cache and the thread
that frees them later pays again — measured on the ONNX MLP at 20k requests a second
on one core, 6 µs a request for holding and dropping them, more than the monitoring work.
Stacked within 10 ms, a request's objects are gone while their memory is still warm, and
what lives on until the fold is a few arrays per hundred requests.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from modelyard.live._clock import Clock, SystemClock
from modelyard.live.columns import Buffers
from modelyard.live.handoff import AnsweredBatch, Failure, Item, frame_of, stack_round
from modelyard.live.stacked import PREDICTION, Stacked
from modelyard.live.windows import WindowProfile, save, window_start
from modelyard.monitoring._tables import CATEGORICAL
from modelyard.monitoring.profile import TableProfile
from modelyard.monitoring.sketches import NumericSketch
from modelyard.serving.model import Prepared, ServedModel
from modelyard.serving.observe import Observation
from modelyard.store import Database

log = logging.getLogger("modelyard.monitoring")

# What the prediction log is handed each round: stacked groups, and requests that are not.
Folded = Stacked | Observation


# the thread's cadence under light traffic (Collector's interval_s and stack_interval_s)
_FEW = 32  # a stacking round that took fewer requests than this makes the next one wait
_SLOWER = 10  # ... this many stacking intervals
_FOLD_REQUESTS = 4_096  # requests that make a fold due at interval_s
_SLOWER_FOLD = 4  # with fewer, a fold is due after this many intervals
_YIELD_EVERY_S = 0.002  # see _Yield
_SCHED_YIELD = getattr(os, "sched_yield", None)


class _Yield:
    """Called between a fold's columns: gives the core back if this thread has had it for
    ``_YIELD_EVERY_S`` since the last time.

    numpy releases the GIL while it sorts; on the server's core the scheduler then lets this
    thread run on for its whole time slice, and the event loop, woken meanwhile, waited ~4 ms
    (its p99 at c=16 with monitoring on). Yielding hands the core back. But every yield also
    lets the loop and the model thread run, and they push the fold's columns and sketches out
    of the core's caches: the next column starts cold. In a server (ONNX MLP, c=16,
    unbatched) the fold cost, as a share of the model's CPU a request, 4.9 to 5.5% yielding
    after every column, 4.8 to 4.9% at most every 1 ms, 3.6 to 4.1% at most every 2 ms and
    3.0 to 3.4% never; the p99s were 5.5 to 6.9, 5.8, 5.7 to 6.8 and 7.1 to 8.6 ms. Batched,
    every 2 ms took the fold from 1.9 to 1.3 µs a request; the p99s were 5.5 to 5.7 and
    5.4 to 5.5 ms (and 7.0 in one run on a slowed host) (``benchmarks/RESULTS.md``, ninth
    session)."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self) -> None:
        now = time.perf_counter()
        if now - self._last >= _YIELD_EVERY_S and _SCHED_YIELD is not None:
            self._last = now
            _SCHED_YIELD()


class Collector:
    """The data plane's :class:`~modelyard.serving.observe.Observer` for live monitoring.

    Parameters
    ----------
    database : where window profiles go (``window_profiles``).
    replica : this process's name in the store (host and pid).
    window_s : window length; windows are aligned to the epoch.
    clock : wall-clock time for window boundaries (a fake one in tests).
    log : called with what each fold took (the prediction log), off the request path:
        :class:`~modelyard.live.stacked.Stacked` groups and single observations.
    interval_s : how often the thread folds into the window profiles once 4,096 requests
        wait (else at the latest every four intervals), and at once when a window has ended
        (so that it is stored whole before the monitor judges it). Half a second holds
        ~8,000 requests at a busy server's rate: enough for the sketches' cheaper path for
        large batches (see :func:`~modelyard.monitoring.sketches.feed_sorted`).
    stack_interval_s : how often it stacks what queued (see the module); ten times as long
        after a round that found fewer than 32 requests. Each round and each fold has a cost
        of its own (a wake-up, per-column work), which at a few hundred requests a second
        came to ~25 µs a request at the old fixed cadence.
    max_buffer : requests queued before new ones are dropped (counted in ``dropped``).
    """

    def __init__(
        self, database: Database, *, replica: str, window_s: float = 60.0,
        clock: Clock | None = None, log: Callable[[list[Folded]], None] | None = None,
        interval_s: float = 0.5, stack_interval_s: float = 0.01, max_buffer: int = 200_000,
    ) -> None:
        self.database = database
        self.replica = replica
        self.window_s = window_s
        self.clock = clock or SystemClock()
        self.log = log
        self.interval_s = interval_s
        self.stack_interval_s = stack_interval_s
        self.max_buffer = max_buffer
        self.observed = 0
        self._dropped = 0  # (written on the event loop; the buffers count their own)
        self._columns = Buffers(max_buffer)  # groups written by model threads
        self._warned: dict[tuple[str, int], str] = {}
        self._yield = _Yield()  # between a fold's columns (one thread folds)
        self._buffer: deque[Item] = deque()
        self._stacked: dict[tuple[Any, ...], list[Stacked]] = {}  # by layout, till the fold
        self._loose: list[Observation | Failure] = []  # what does not stack, till the fold
        self._staging = threading.Lock()  # the two above: stacked by the thread, folded by it
        self._windows: dict[tuple[str, int], WindowProfile] = {}  # or by close()
        self._pending: list[WindowProfile] = []  # ended, not stored yet
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the hot path --------------------------------------------------------------------

    def record(self, model: ServedModel, request_id: str, at: float, latency_s: float,
               rows: int, data: Any, outputs: dict[str, np.ndarray]) -> None:
        if len(self._buffer) >= self.max_buffer:
            self._dropped += 1
            return
        self._buffer.append((model, request_id, at, latency_s, rows, data, outputs))

    def record_batch(self, model: ServedModel, parts: list[Prepared], at: float,
                     finished: float, data: Any, outputs: dict[str, np.ndarray]) -> None:
        if len(self._buffer) >= self.max_buffer:
            self._dropped += len(parts)
            return
        self._buffer.append(AnsweredBatch(model, [p.request_id for p in parts],
                                          [p.started for p in parts], [p.rows for p in parts],
                                          at, finished, data, outputs))

    def observe(self, observation: Observation) -> None:
        if len(self._buffer) >= self.max_buffer:
            self._dropped += 1
            return
        self._buffer.append(observation)

    def failed(self, model: str, version: int, at: float, latency_s: float) -> None:
        if len(self._buffer) < self.max_buffer:
            self._buffer.append(Failure(model, version, at, latency_s))

    def accumulate(self, model: ServedModel, parts: list[Prepared],
                   results: list[dict[str, np.ndarray]], finished: float) -> bool:
        # (on a model thread: straight into the column buffers, see .columns)
        return self._columns.add(model, parts, results, finished)

    def accumulate_batch(self, model: ServedModel, parts: list[Prepared], data: Any,
                         outputs: dict[str, np.ndarray], finished: float) -> bool:
        # (on a model thread, likewise)
        return self._columns.add_batch(model, parts, data, outputs, finished)

    def withdraw(self, request_ids: list[str]) -> None:
        self._columns.withdraw(request_ids)

    @property
    def dropped(self) -> int:
        """Requests not monitored because too many waited (``max_buffer``)."""
        return self._dropped + self._columns.dropped

    # -- the background thread -----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="modelyard-collector",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        folded_at = time.monotonic()
        window = self._current_window()
        waiting = 0  # requests stacked since the last fold
        wait = self.stack_interval_s
        while not self._stop.wait(wait):
            try:
                taken = self.stack()
                waiting += taken
                # light traffic: each round's and each fold's own cost would be spread over
                # few requests, so both wait longer (see the class)
                wait = self.stack_interval_s * (1 if taken >= _FEW else _SLOWER)
                current = self._current_window()
                since = time.monotonic() - folded_at
                if current != window or since >= self.interval_s * _SLOWER_FOLD or (
                        since >= self.interval_s
                        and waiting + self._columns.held >= _FOLD_REQUESTS):
                    folded_at = time.monotonic()
                    window = current
                    waiting = 0
                    self.drain()
                    self.flush(ended_only=True)
            except Exception:  # the server keeps serving; the next round retries
                log.exception("monitoring: could not update or store window profiles")

    def _current_window(self) -> float:
        return window_start(self.clock.now().timestamp(), self.window_s)

    def stack(self) -> int:
        """Stack what queued since the last call, per model version; returns requests taken."""
        buffer = self._buffer
        taken = [buffer.popleft() for _ in range(len(buffer))]
        if not taken:
            return 0
        stacked, loose, requests = stack_round(taken)
        with self._staging:
            for layout, found in stacked.items():
                self._stacked.setdefault(layout, []).append(found)
            self._loose.extend(loose)
        return requests

    def drain(self) -> int:
        """Stack, then fold everything taken so far into the window profiles; returns the
        requests folded."""
        self.stack()
        columns = self._columns.take()
        with self._staging:
            for found in columns:  # (with the rounds' groups of the same layout, if any)
                self._stacked.setdefault(found.layout(), []).append(found)
            stacked = [Stacked.concat(parts) for parts in self._stacked.values()]
            taken = self._loose
            self._stacked, self._loose = {}, []
        if not taken and not stacked:
            return 0
        by_version: dict[tuple[str, int], list[Observation | Failure]] = {}
        for item in taken:
            group = by_version.get((item.model, item.version))
            if group is None:
                by_version[(item.model, item.version)] = [item]
            else:
                group.append(item)
        observed: list[Folded] = []
        with self._lock:
            for found in stacked:
                for start, keep in self._by_window(found.at):
                    self._fold_stacked(start, found if keep is None else found.take(keep),
                                       observed)
            for (model, version), items in by_version.items():
                ats = np.fromiter((item.at for item in items), np.float64, len(items))
                for start, keep in self._by_window(ats):
                    picked = items if keep is None else [items[i] for i in np.flatnonzero(keep)]
                    self._fold(model, version, start, picked, observed)
        # (the prediction log gets every observation, whatever became of the profiles)
        self.observed += sum(f.requests if isinstance(f, Stacked) else 1 for f in observed)
        if self.log is not None and observed:
            self.log(observed)
        return len(taken) + sum(found.requests for found in stacked)

    def _by_window(self, ats: np.ndarray) -> list[tuple[float, np.ndarray | None]]:
        """The windows (their starts, oldest first) the requests at ``ats`` fall in, each with
        which requests (None: all of them, the common case)."""
        starts = np.floor(ats / self.window_s) * self.window_s  # as window_start does
        if (starts == starts[0]).all():
            return [(float(starts[0]), None)]
        return [(float(start), starts == start) for start in np.unique(starts)]

    def _fold_stacked(self, start: float, stacked: Stacked, observed: list[Folded]) -> None:
        window = self._window(stacked.model, stacked.version, start)
        _count(window, stacked.latency_ms / 1000.0)
        window.rows += stacked.rows
        self._update(window, stacked.profile_columns(), bool(stacked.classes), stacked.rows)
        observed.append(stacked)

    def _fold(self, model: str, version: int, start: float,
              items: list[Observation | Failure], observed: list[Folded]) -> None:
        window = self._window(model, version, start)
        _count(window, np.fromiter((item.latency_s for item in items), np.float64, len(items)))
        served = [item for item in items if isinstance(item, Observation)]
        window.errors += len(items) - len(served)
        if served:
            rows = sum(item.rows for item in served)
            window.rows += rows
            self._update(window, lambda: frame_of(served), bool(served[0].classes), rows)
            observed.extend(served)

    def _window(self, model: str, version: int, start: float) -> WindowProfile:
        current = self._windows.get((model, version))
        if current is not None and current.start == start:
            return current
        if current is not None and current.start < start:
            self._pending.append(current)  # ended: stored by the next flush
        if current is None or current.start < start:
            current = WindowProfile(model, version, start, start + self.window_s)
            self._windows[(model, version)] = current
            return current
        # a straggler from an earlier window (clock skew between threads): keep it there
        for pending in self._pending:
            if (pending.model, pending.version, pending.start) == (model, version, start):
                return pending
        late = WindowProfile(model, version, start, start + self.window_s)
        self._pending.append(late)
        return late

    def _update(self, window: WindowProfile, chunk: Any, classes: bool, rows: int) -> None:
        """Fold one chunk (or a function making it) into the window's profile. A chunk whose
        columns differ from the window's so far (requests that asked for other outputs) is
        merged as a union: a column one side lacks counts as missing on its rows."""
        try:
            if callable(chunk):
                chunk = chunk()
            kinds = {PREDICTION: CATEGORICAL} if classes and PREDICTION in chunk else {}
            if window.profile is None:
                window.profile = TableProfile(kinds=kinds).update(chunk, self._yield)
            elif list(window.profile.schema) == [str(name) for name in chunk]:
                window.profile.update(chunk, self._yield)
            else:
                window.profile.merge(TableProfile(kinds=kinds).update(chunk, self._yield),
                                     union=True)
        except Exception as error:  # e.g. a column changed kind mid-window; keep serving
            if self._warned.get((window.model, window.version)) != str(error):
                self._warned[(window.model, window.version)] = str(error)  # once per cause
                log.warning("monitoring: %s:%s window profile skipped %d rows: %s",
                            window.model, window.version, rows, error)

    def flush(self, ended_only: bool = False) -> int:
        """Store ended windows (and, unless ``ended_only``, the open ones); returns how many."""
        now = self.clock.now().timestamp()
        with self._lock:
            ended = [w for w in self._pending]
            self._pending = []
            for key, window in list(self._windows.items()):
                if window.end <= now:
                    ended.append(window)
                    del self._windows[key]
            chosen = ended if ended_only else [*ended, *self._windows.values()]
            snapshot = [_copy(w) for w in chosen]
        try:
            save(self.database, self.replica, snapshot)
        except Exception:
            with self._lock:  # keep the ended ones for the next round
                self._pending.extend(w for w in ended)
            raise
        return len(snapshot)

    def close(self) -> None:
        """Stop the thread, fold in what is queued, store every window (SIGTERM path)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.drain()
        self.flush()


def _count(window: WindowProfile, latency_s: np.ndarray) -> None:
    """Requests (one latency each, in seconds) into the window's count and latency sketch."""
    window.requests += len(latency_s)
    window.latency = window.latency or NumericSketch()
    window.latency.update(latency_s)


def _copy(window: WindowProfile) -> WindowProfile:
    return WindowProfile(
        window.model, window.version, window.start, window.end, window.rows, window.requests,
        window.errors,
        TableProfile.from_bytes(window.profile.to_bytes()) if window.profile else None,
        NumericSketch.from_bytes(window.latency.to_bytes()) if window.latency else None,
    )
