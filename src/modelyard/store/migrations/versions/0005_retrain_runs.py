"""Retraining runs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ACTIVE = "state IN ('running', 'awaiting_approval')"


def upgrade() -> None:
    op.create_table(
        "retrain_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("stage", sa.String(24), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("trigger_key", sa.String(255), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("champion", sa.Integer, nullable=True),
        sa.Column("candidate", sa.Integer, nullable=True),
        sa.Column("rollout_id", sa.Integer, nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_retrain_runs"),
    )
    op.create_index("ux_retrain_runs_active_model", "retrain_runs", ["model"], unique=True,
                    sqlite_where=sa.text(_ACTIVE), postgresql_where=sa.text(_ACTIVE))
    op.create_index("ux_retrain_runs_trigger", "retrain_runs", ["model", "trigger_key"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("ux_retrain_runs_trigger", table_name="retrain_runs")
    op.drop_index("ux_retrain_runs_active_model", table_name="retrain_runs")
    op.drop_table("retrain_runs")
