"""Composition root: builds the server from Settings and runs it.

One process serves REST (uvicorn, httptools, uvloop) and gRPC (grpc.aio) on one event loop,
both over one DataPlane; models run in a thread pool. ``workers > 1`` starts that many
processes, each binding the same ports with SO_REUSEPORT so the kernel spreads connections.

SIGTERM (or SIGINT) drains: readiness turns false, no new connections are accepted, requests
already received are answered (up to ``serving.drain_timeout_s``), then the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import uvicorn

from modelyard.api import open_registry
from modelyard.lifecycle.admin import RetrainAdmin, RolloutAdmin
from modelyard.lifecycle.routing import RolloutRouter
from modelyard.rollout.state import RolloutStore
from modelyard.serving import DataPlane, InferencePool, build_dataplane
from modelyard.serving.rest import RestApp
from modelyard.serving.rest.protocol import HttpToolsProtocol
from modelyard.settings import Settings

if TYPE_CHECKING:
    from modelyard.lifecycle.controller import RolloutController
    from modelyard.lifecycle.triggers import Triggers
    from modelyard.registry import Registry

logger = logging.getLogger("modelyard.server")


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: this module decides how to shut down."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(settings: Settings, announce: Callable[[str], None] = print) -> None:
    """Run the server until SIGTERM/SIGINT. Blocks."""
    from modelyard.lifecycle.triggers import check_lifecycle

    check_lifecycle(settings)  # a typo in a retraining table stops here, before any worker
    workers = settings.serving.workers
    if workers == 1:
        _run(settings, announce)
        return
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_child, args=(settings.model_dump_json(), i), daemon=False)
        for i in range(workers)
    ]
    for child in children:
        child.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = []
    for child in children:
        child.join()
        codes.append(child.exitcode)
    if any(code for code in codes):
        raise SystemExit(f"a server worker exited with code {next(c for c in codes if c)}")


def _child(settings_json: str, worker: int) -> None:
    settings = Settings.model_validate_json(settings_json)
    _run(settings, print if worker == 0 else (lambda _text: None), worker)


def _run(settings: Settings, announce: Callable[[str], None], worker: int = 0) -> None:
    import uvloop  # a dependency: uvicorn[standard]

    _schedule(settings.serving.cpu_scheduling)
    uvloop.run(_main(settings, announce, worker))


def _schedule(policy: str) -> None:
    """Put this thread, and so every thread it starts later (the event loop's, the model
    threads, monitoring's), under ``serving.cpu_scheduling``.

    With the default policy a woken thread preempts the running one. When the event loop hands
    a request to a model thread on the same core, the model thread then runs only to find the
    GIL held, and the loop runs again until it waits; the answer's way back does the same. Under
    SCHED_BATCH the woken thread waits for the running one to block: at c=1 that took the
    server from 7.5 context switches a request to 3, and it answered ~6% more requests a
    second at c=1 and c=16 (ONNX MLP, one core; ``benchmarks/RESULTS.md``). The cost: the
    server's threads no longer preempt other processes on their cores when woken."""
    if policy != "batch" or not hasattr(os, "SCHED_BATCH"):
        return
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError as exc:  # e.g. a sandbox forbidding it: serve anyway, with the default
        logger.warning("serving.cpu_scheduling: could not use SCHED_BATCH (%s)", exc)


async def _main(settings: Settings, announce: Callable[[str], None], worker: int) -> None:
    config = settings.serving
    pool = InferencePool(config.inference_threads)
    loop = asyncio.get_running_loop()
    registry = open_registry(settings)
    dataplane = await loop.run_in_executor(None, build_dataplane, registry, config, pool)
    rollouts = RolloutStore(registry)
    metrics = dataplane.metrics
    router = RolloutRouter(rollouts, dataplane.manager, on_refresh=lambda active: (
        metrics.set_rollouts([(r.model, r.baseline, r.candidate, r.strategy, r.weight)
                              for r in active])))
    await loop.run_in_executor(None, router.start)
    dataplane.router = router
    dataplane.rollouts = RolloutAdmin(rollouts)
    live = None
    if settings.monitoring.enabled:
        from modelyard.live.service import LiveMonitoring

        live = LiveMonitoring(settings, dataplane.metrics, run_monitor=worker == 0,
                              worker=worker, replica=f"{socket.gethostname()}-{os.getpid()}")
        live.attach(dataplane)
        live.start()
    retrains = _retrain_admin(settings, registry, live)
    dataplane.retrains = retrains
    controller = None
    triggers = None
    if worker == 0:  # one controller steps the rollouts (another replica's may race: harmless)
        controller = _controller(rollouts, dataplane, live)
        controller.start()
        triggers = _triggers(settings, registry, live)
    # Everything loaded so far (libraries, models) lives as long as the process: keep it out of
    # the cyclic GC's scans, whose full passes otherwise stall requests for tens of ms.
    gc.collect()
    gc.freeze()
    rest_socket = _bind(config.host, config.port, reuse_port=config.workers > 1)
    rest = _Uvicorn(
        uvicorn.Config(
            RestApp(dataplane),
            http=HttpToolsProtocol,  # uvicorn's, writing head and body in one syscall
            lifespan="off",
            proxy_headers=False,
            access_log=False,
            server_header=False,
            date_header=False,
            log_level="warning",
            timeout_graceful_shutdown=math.ceil(config.drain_timeout_s),
        )
    )
    grpc_server, grpc_port = _grpc(dataplane, settings)
    await grpc_server.start()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    rest_task = asyncio.create_task(rest.serve(sockets=[rest_socket]))
    while not rest.started and not rest_task.done():
        await asyncio.sleep(0.01)
    ready = sum(1 for slot in dataplane.manager.slots() if slot.state == "READY")
    port = rest_socket.getsockname()[1]
    announce(
        f"modelyard serving {ready} model version(s) on http://{config.host}:{port} (REST) "
        f"and {config.host}:{grpc_port} (gRPC), pid {os.getpid()}"
    )
    for slot in dataplane.manager.slots():
        if slot.state != "READY":
            announce(f"  {slot.key} is {slot.state.lower()}: {slot.reason}")
    await _wait(stop, rest_task)
    await _shutdown(dataplane, rest, rest_task, grpc_server, config.drain_timeout_s)
    if controller is not None:
        await loop.run_in_executor(None, controller.close)
    if triggers is not None:
        await loop.run_in_executor(None, triggers.close)
    retrains.close()
    await loop.run_in_executor(None, router.close)
    if live is not None:
        await loop.run_in_executor(None, live.close)
    pool.shutdown()
    # Undo the freeze on the way out: what it kept (window profiles, references) is freed now,
    # not at the interpreter's teardown, where datasketches' nanobind, its module gone, would
    # report every KLL sketch still alive as leaked (~600 lines on stderr).
    gc.unfreeze()
    gc.collect()


def _controller(rollouts: RolloutStore, dataplane: DataPlane, live: Any) -> RolloutController:
    """The rollout controller of the primary worker, reading live data when monitoring is on."""
    from modelyard.lifecycle.controller import RolloutController
    from modelyard.lifecycle.signals import Signals

    if live is not None:
        signals = Signals(live.database, live.predictions, live.feedback, live.monitor.tables
                          if live.monitor is not None else None)
    else:
        signals = Signals(rollouts.database)

    def is_ready(model: str, version: int) -> bool:
        return any(s.version == version and s.state == "READY"
                   for s in dataplane.manager.versions(model))

    return RolloutController(rollouts, signals, is_ready=is_ready)


def _retrain_admin(settings: Settings, registry: Registry, live: Any) -> RetrainAdmin:
    """The admin API's retraining: runs it starts are carried out on a thread of this worker."""
    from modelyard.lifecycle.retrain import Retrainer

    return RetrainAdmin(Retrainer(settings, registry,
                                  predictions=live.predictions if live is not None else None))


def _triggers(settings: Settings, registry: Registry, live: Any) -> Triggers | None:
    """The retraining triggers of the primary worker, when some model declares a retrain."""
    if not (settings.lifecycle.enabled and settings.lifecycle.models):
        return None
    from modelyard.lifecycle.retrain import Retrainer
    from modelyard.lifecycle.triggers import Triggers

    retrainer = Retrainer(settings, registry,
                          predictions=live.predictions if live is not None else None)
    triggers = Triggers(retrainer)
    triggers.start()
    return triggers


async def _wait(stop: asyncio.Event, rest_task: asyncio.Task[None]) -> None:
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({stopper, rest_task}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()


async def _shutdown(
    dataplane: DataPlane,
    rest: uvicorn.Server,
    rest_task: asyncio.Task[None],
    grpc_server: grpc.aio.Server,
    drain_s: float,
) -> None:
    dataplane.draining = True
    rest.should_exit = True
    grpc_stop = grpc_server.stop(grace=drain_s)
    await asyncio.gather(rest_task, grpc_stop, return_exceptions=True)
    await dataplane.drain(drain_s)


def _grpc(dataplane: DataPlane, settings: Settings) -> tuple[grpc.aio.Server, int]:
    from modelyard.serving.grpc import build_grpc_server

    config = settings.serving
    return build_grpc_server(dataplane, config.host, config.grpc_port, config.max_body_bytes)


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"error: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


if __name__ == "__main__":  # pragma: no cover
    serve(Settings.load())
    sys.exit(0)
