"""Alembic environment: always run by modelyard itself on a connection it already holds."""

from __future__ import annotations

from alembic import context

from modelyard.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
