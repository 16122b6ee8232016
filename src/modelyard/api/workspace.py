"""Opening a workspace: settings → database (migrated) + artifact store → registry.

Databases are opened once per process and URL and then shared, so a notebook that registers
and loads many times keeps one connection pool rather than one per call.
"""

from __future__ import annotations

import os
import threading

from modelyard.registry import ArtifactStore, Registry
from modelyard.settings import Settings, StoreSettings
from modelyard.store import Database

_lock = threading.Lock()
_databases: dict[tuple[int, str, str], Database] = {}


def open_database(url: str, store: StoreSettings) -> Database:
    """The process's shared Database for ``url``, its schema checked (and migrated) once."""
    key = (os.getpid(), url, store.model_dump_json())
    with _lock:
        db = _databases.get(key)
        if db is None:
            db = Database(url, store)
            try:
                db.migrate(upgrade=store.migrate_on_start)
            except BaseException:
                db.dispose()
                raise
            _databases[key] = db
        return db


def close_databases() -> None:
    """Dispose of every shared connection pool (tests, and processes about to exit)."""
    with _lock:
        for db in _databases.values():
            db.dispose()
        _databases.clear()


def open_registry(settings: Settings | None = None) -> Registry:
    """The registry the settings point at, with its schema brought up to date."""
    settings = settings or Settings.load()
    db = open_database(settings.resolved_database_url, settings.store)
    artifacts = ArtifactStore(settings.resolved_artifacts_uri, cache_dir=settings.home / "cache")
    return Registry(db, artifacts, settings.resolved_actor)
