from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from modelyard.errors import DatabaseUnavailable, SchemaMismatch
from modelyard.live.predlog import PredictionLog
from modelyard.settings import StoreSettings
from modelyard.store import Database, display_url
from tests.conftest import migrate_to


def test_migrate_creates_the_registry_schema_and_is_idempotent(database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    db.migrate()
    tables = set(inspect(db.engine).get_table_names())
    assert {"models", "model_versions", "aliases", "version_tags", "audit_log"} <= tables
    assert {"window_profiles", "prediction_log", "prediction_batches", "feedback",
            "monitor_results", "alert_rules",
            "alert_states", "alert_notifications"} <= tables
    with db.read() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0007"
    db.dispose()


def test_sqlite_database_uses_wal(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x' / 'modelyard.db'}")
    db.migrate()
    with db.read() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    db.dispose()


def test_a_new_sqlite_store_has_16_kb_pages_and_an_older_4_kb_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    new = Database(f"sqlite:///{tmp_path / 'new.db'}")
    new.migrate()
    with new.read() as conn:
        assert conn.execute(text("PRAGMA page_size")).scalar() == 16384
    new.dispose()
    older = tmp_path / "older.db"  # a store made before 16 KB pages: WAL with 4 KB pages
    raw = sqlite3.connect(older)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("CREATE TABLE kept (x INTEGER)")
    raw.execute("INSERT INTO kept VALUES (7)")
    raw.commit()
    raw.close()
    db = Database(f"sqlite:///{older}")
    db.migrate()  # opens, migrates and writes as before
    with db.write() as conn:
        conn.execute(text("INSERT INTO kept VALUES (8)"))
    with db.read() as conn:
        assert conn.execute(text("PRAGMA page_size")).scalar() == 4096
        assert conn.execute(text("SELECT x FROM kept ORDER BY x")).scalars().all() == [7, 8]
        assert conn.execute(text("SELECT count(*) FROM models")).scalar() == 0
    db.dispose()


def test_a_database_from_a_newer_modelyard_is_refused(database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    with db.write() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(SchemaMismatch, match="9999_future.*newer than this modelyard"):
        db.migrate()
    db.dispose()


def test_an_old_schema_is_refused_when_migrations_are_left_to_operators(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'modelyard.db'}")
    with pytest.raises(SchemaMismatch, match="MIGRATE_ON_START"):
        db.migrate(upgrade=False)
    db.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "malformed"),
        ("mysql://root@127.0.0.1/test", "not supported"),
        ("postgresql+nosuchdriver://u@127.0.0.1/x", "unknown driver"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", "cannot use the database"),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/no_such_db_here", "does not exist"),
    ],
)
def test_a_wrong_database_url_gives_a_clear_error(url: str, message: str) -> None:
    with pytest.raises(DatabaseUnavailable, match=message):
        Database(url, StoreSettings(connect_timeout_s=2)).migrate()


def test_passwords_are_hidden_in_messages() -> None:
    shown = display_url("postgresql+psycopg://bob:s3cret@db.example/x")
    assert "s3cret" not in shown
    assert "bob" in shown


def test_the_migrations_create_exactly_the_tables_the_code_declares(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from modelyard.store.tables import metadata

    db = Database(database_url)
    db.migrate()
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        assert compare_metadata(context, metadata) == []
    db.dispose()


def test_upgrading_a_prediction_log_with_replayed_duplicates_keeps_one_of_each(
    database_url: str,
) -> None:
    db = Database(database_url)
    migrate_to(db, "0002")
    row = ("INSERT INTO prediction_log (request_id, ts, model, version, inputs, outputs, "
           "latency_ms) VALUES (:id, :ts, 'm', 1, '{}', '{}', 1.0)")
    t1, t2 = "2026-11-24T10:00:00.000000+00:00", "2026-11-24T10:00:01.000000+00:00"
    with db.write() as conn:
        for request, ts in (("a", t1), ("a", t1), ("a", t1), ("b", t1), ("a", t2)):
            conn.execute(text(row), {"id": request, "ts": ts})
    migrate_to(db, "0003")  # the revision that removes them
    with db.read() as conn:
        kept = conn.execute(text("SELECT request_id, ts FROM prediction_log ORDER BY id")).all()
    assert [tuple(r) for r in kept] == [("a", t1), ("b", t1), ("a", t2)]
    db.migrate()  # and the later ones keep them: one index row per request and batch
    assert PredictionLog(db).records("m")["request_id"].tolist() == ["a", "b", "a"]
    db.dispose()
