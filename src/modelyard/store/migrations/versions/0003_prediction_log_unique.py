"""The prediction log keeps one row per logged request: replays after an outage are no-ops.

A batch is replayed from the journal when the database comes back; if the first attempt had in
fact been committed (the connection broke after the commit), the replay used to store the
batch twice. A unique index on (request id, model, version, time) lets the writer ignore rows
it already stored. Duplicates left by earlier replays are removed first (the oldest row stays).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM prediction_log WHERE id NOT IN "
        "(SELECT keep FROM (SELECT MIN(id) AS keep FROM prediction_log "
        "GROUP BY request_id, model, version, ts) AS kept)"
    )
    op.drop_index("ix_prediction_log_request_id", table_name="prediction_log")
    op.create_index("ux_prediction_log_entry", "prediction_log",
                    ["request_id", "model", "version", "ts"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_prediction_log_entry", table_name="prediction_log")
    op.create_index("ix_prediction_log_request_id", "prediction_log", ["request_id"])
