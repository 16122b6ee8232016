"""Live monitoring inside one server process: wiring the collector, the monitor and gauges.

Every worker process observes its own traffic (the collector) and refreshes its gauges from
the stored results, so any worker's ``/metrics`` shows the monitor's latest verdicts; only the
primary process (or ``modelyard monitor run``) runs the monitor itself.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from modelyard.api.workspace import open_database
from modelyard.errors import StorageError
from modelyard.live._clock import Clock, SystemClock
from modelyard.live.collector import Collector
from modelyard.live.feedback import FeedbackStore
from modelyard.live.history import History
from modelyard.live.journal import Journal
from modelyard.live.monitor import Monitor, metric_values
from modelyard.live.notifiers import Alerting
from modelyard.live.predlog import PredictionLog
from modelyard.serving.dataplane import DataPlane
from modelyard.serving.metrics import ServingMetrics
from modelyard.settings import Settings

log = logging.getLogger("modelyard.monitoring")


class LiveMonitoring:
    """Observe a data plane's traffic into window profiles and judge the windows."""

    def __init__(
        self, settings: Settings, metrics: ServingMetrics, *, replica: str,
        run_monitor: bool = True, worker: int = 0, clock: Clock | None = None,
    ) -> None:
        config = settings.monitoring
        self.settings = settings
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.database = open_database(settings.resolved_database_url, settings.store)
        self.journals = _journals(settings, worker)
        sink: Any = self.database if config.log_sink == "database" else (
            f"{settings.resolved_artifacts_uri.rstrip('/')}/prediction-log")
        self.predictions = PredictionLog(
            sink, sample_rate=config.log_sample_rate, journal=self.journals[0], clock=self.clock,
            retention=timedelta(days=config.log_retention_days) if run_monitor else None,
        )
        self.feedback = FeedbackStore(
            self.database, self.journals[1], self.clock,
            predictions=self.predictions if config.log_sink == "parquet" else None,
        )
        self.collector = Collector(self.database, replica=replica, window_s=config.window_s,
                                   clock=self.clock,
                                   log=self.predictions.submit_folded)
        self.history = History(self.database, self.clock)
        self.alerting = Alerting.from_settings(self.database, config, self.clock)
        self.monitor = Monitor(
            self.database, settings, clock=self.clock,
            evaluate_alerts=self.alerting.evaluator.evaluate,
            feedback=self.feedback, predictions=self.predictions,
        ) if run_monitor else None
        self.tick_s = min(max(config.window_s / 4, 0.5), 15.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, dataplane: DataPlane) -> None:
        dataplane.observer = self.collector
        dataplane.history = self.history
        dataplane.feedback_sink = self.feedback

    def start(self) -> None:
        self.predictions.start()
        self.feedback.start()
        self.collector.start()
        if self.monitor is not None:
            self.alerting.outbox.start()
        self._thread = threading.Thread(target=self._loop, name="modelyard-monitor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        if self.monitor is not None:
            self.adopt_orphans()
        while not self._stop.wait(self.tick_s):
            self.tick()

    def adopt_orphans(self) -> int:
        """Replay the journals of slots no process holds (run by the primary at start).

        A worker's slot is replayed by the worker that next takes it; when a server restarts
        with fewer workers, or a home's second server is gone for good, nobody takes it again,
        and its spooled records and labels would wait forever. Returns the records replayed;
        a failure (the database still away) leaves the rest for the next start.
        """
        mine = {journal.directory.parent for journal in self.journals}
        limit = self.settings.monitoring.journal_max_bytes
        owners: dict[str, Any] = {"predictions": self.predictions, "feedback": self.feedback}
        replayed = 0
        for slot in sorted((self.settings.home / "journal").glob("slot-*")):
            if slot in mine:
                continue
            for name, owner in owners.items():
                if not (slot / name).is_dir():
                    continue
                try:
                    journal = Journal(slot / name, limit)
                except StorageError:
                    continue  # a live worker holds it and replays it itself
                try:
                    if journal.records:
                        count = owner.adopt(journal)
                        replayed += count
                        log.info("monitoring: replayed %d %s left in %s", count, name, slot)
                except Exception as error:
                    log.warning("monitoring: %s left in %s stay for the next start: %s", name,
                                slot, str(error).splitlines()[0] if str(error) else error)
                finally:
                    journal.close()
        return replayed

    def tick(self) -> None:
        """Judge ended windows (primary only) and refresh the gauges; never raises."""
        try:
            if self.monitor is not None:
                self.monitor.run_once()
            self.metrics.set_monitoring(self.history.latest(), metric_values)
        except Exception:
            log.exception("monitoring: the monitor round failed; retrying next tick")

    def close(self) -> None:
        """Stop, and store every open window (the SIGTERM path)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.monitor is not None:
            self.alerting.outbox.close()
        try:
            self.collector.close()
        except Exception:
            log.exception("monitoring: could not store the last window profiles")
        parts: list[Any] = [self.predictions, self.feedback, *self.journals]
        for part in parts:
            try:
                part.close()
            except Exception:
                log.exception("monitoring: could not close %r cleanly", part)

    def status(self) -> dict[str, Any]:
        """Counters of what happened to observed requests (for logs and tests)."""
        return {
            "observed": self.collector.observed, "dropped": self.collector.dropped,
            "logged": self.predictions.written, "spooled": self.predictions.spooled,
            "log_dropped": self.predictions.dropped,
        }


def _journals(settings: Settings, worker: int) -> list[Journal]:
    """This process's spool folders: the first free slot from the worker's number on.

    Each journal is locked by the process that opened it, so two servers on one home (or a
    restart overlapping the old process) take different slots, and a restarted worker finds
    its slot's spooled records and replays them.
    """
    root = settings.home / "journal"
    limit = settings.monitoring.journal_max_bytes
    for slot in range(worker, worker + 64):
        opened: list[Journal] = []
        try:
            for name in ("predictions", "feedback"):
                opened.append(Journal(root / f"slot-{slot}" / name, limit))
        except StorageError:
            for journal in opened:
                journal.close()
            continue
        return opened
    raise StorageError(f"every journal slot under {root} is in use by another process")
