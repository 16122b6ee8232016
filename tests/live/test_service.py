"""The live-monitoring wiring of a server process: journals left by workers that are gone."""

from __future__ import annotations

from pathlib import Path

from modelyard.live.journal import Journal
from modelyard.live.records import row_of
from modelyard.live.service import LiveMonitoring
from modelyard.serving.metrics import ServingMetrics
from modelyard.settings import Settings
from modelyard.store.tables import feedback, prediction_log

from .conftest import T0
from .test_predlog import count, record


def test_the_primary_replays_journals_of_workers_that_no_longer_run(tmp_path: Path) -> None:
    """A server ran with four workers during an outage and restarts with one: the records
    and labels spooled in slots 1-3 reach the database; a slot a live process holds is left
    to it."""
    settings = Settings(home=tmp_path / "home")
    limit = settings.monitoring.journal_max_bytes
    root = settings.home / "journal"
    for slot in (1, 2, 3):
        with Journal(root / f"slot-{slot}" / "predictions", limit) as journal:
            journal.append([row_of(record(100 * slot + i, T0)) for i in range(10)])
        with Journal(root / f"slot-{slot}" / "feedback", limit) as journal:
            journal.append([{"request_id": f"r{100 * slot}", "label": 1,
                             "received_at": "2026-11-24T00:00:00.000000+00:00"}])
    held = Journal(root / "slot-3" / "predictions", limit)  # a worker still running
    live = LiveMonitoring(settings, ServingMetrics(), replica="a", run_monitor=True, worker=0)
    try:
        assert live.adopt_orphans() == 20 + 3
        assert count(live.database, prediction_log) == 20
        assert count(live.database, feedback) == 3
        assert live.adopt_orphans() == 0  # replayed segments are gone
    finally:
        held.close()
        live.close()
    again = LiveMonitoring(settings, ServingMetrics(), replica="a", run_monitor=True, worker=0)
    try:
        assert again.adopt_orphans() == 10  # slot 3's records, once its worker let go
        assert count(again.database, prediction_log) == 30
    finally:
        again.close()
