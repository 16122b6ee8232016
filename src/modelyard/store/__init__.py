"""Persistence: the registry database (SQLAlchemy Core tables, Alembic migrations)."""

from modelyard.store.database import Database, display_url

__all__ = ["Database", "display_url"]
