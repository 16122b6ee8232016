"""Fixtures shared by the live-monitoring tests: a migrated database on SQLite and
PostgreSQL, and a SQLite file whose writers give up quickly, so a held lock looks like an
outage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.settings import StoreSettings
from modelyard.store import Database


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'live.db'}", StoreSettings(busy_timeout_s=0.05))
    database.migrate()
    yield database
    database.dispose()
