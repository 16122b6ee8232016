"""What the live-monitoring tests share: a fake clock (injected through the Clock Protocol),
a bounded wait, a migrated database on SQLite and PostgreSQL, and a SQLite file whose writers
give up quickly, so a held lock looks like an outage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelyard.settings import StoreSettings
from modelyard.store import Database

T0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
DEADLINE_S = 60.0


class FakeClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'live.db'}", StoreSettings(busy_timeout_s=0.05))
    database.migrate()
    yield database
    database.dispose()
