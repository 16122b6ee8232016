"""Shared fixtures: a registry on SQLite and on PostgreSQL, and small real models."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.api import open_registry
from modelyard.api.workspace import close_databases
from modelyard.registry import Registry
from modelyard.settings import Settings
from modelyard.store import Database

POSTGRES_URL = os.environ.get(
    "MODELYARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MODELYARD_* variable or modelyard.toml of the developer's leaks into a test."""
    for key in list(os.environ):
        if key.startswith("MODELYARD_") and key != "MODELYARD_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database, dropped afterwards."""
    admin = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"modelyard_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = POSTGRES_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        close_databases()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'modelyard.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database on SQLite and on PostgreSQL."""
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        artifacts_uri=str(tmp_path / "home" / "artifacts"),
        actor="tester",
    )


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Embedded defaults only: SQLite and a local folder under a fresh home."""
    return Settings(home=tmp_path / "home", actor="tester")


@pytest.fixture
def registry(settings: Settings) -> Registry:
    return open_registry(settings)


@pytest.fixture(autouse=True)
def _close_pools() -> Iterator[None]:
    yield
    close_databases()


@pytest.fixture(scope="session")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def cancer_model(cancer: tuple[pd.DataFrame, pd.Series]) -> Pipeline:
    X, y = cancer
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)


def migrate_to(db: Database, revision: str) -> None:
    """Bring ``db``'s schema up or down to ``revision`` (a test of what a migration keeps)."""
    from alembic import command
    from alembic.config import Config
    from alembic.migration import MigrationContext

    from modelyard.store import database as module

    config = Config()
    config.set_main_option("script_location", str(module._migrations_dir()))
    with db.write() as conn:
        config.attributes["connection"] = conn
        current = MigrationContext.configure(conn).get_current_revision()
        if current is not None and current > revision:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)
