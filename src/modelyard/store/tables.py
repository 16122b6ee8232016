"""The registry's tables, as SQLAlchemy Core metadata; migrations in ``migrations/`` create them.

Timestamps are stored as ISO-8601 UTC strings with microseconds so that the audit chain hashes
the same text on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", String(32), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("deleted_at", String(32), nullable=True),
    # The last version number handed out; bumped under the row lock so numbers stay dense
    # and are never reused, even after a version is deleted.
    Column("last_version", Integer, nullable=False, default=0),
)

versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("deleted_at", String(32), nullable=True),
    Column("description", Text, nullable=False, default=""),
    Column("flavor", String(32), nullable=False),
    Column("task", String(32), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("manifest", JSON, nullable=False),
    UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id"), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version_id", Integer, ForeignKey("model_versions.id"), nullable=False),
    Column("updated_at", String(32), nullable=False),
)

version_tags = Table(
    "version_tags",
    metadata,
    Column("version_id", Integer, ForeignKey("model_versions.id"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row (id = 1): the newest audit entry. Appending locks it, which serialises writers, and it
# lets `audit verify` notice rows cut from the end of the log.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)


# --- live monitoring (migration 0002) ---------------------------------------------------------

# One row per (model, version, replica, window start): a worker's window profile of inputs and
# outputs, and its service statistics (requests, errors, a latency sketch). The monitor merges
# the replicas' rows of one window.
window_profiles = Table(
    "window_profiles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("replica", String(128), nullable=False),
    Column("window_start", String(32), nullable=False),
    Column("window_end", String(32), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("profile", LargeBinary, nullable=True),
    Column("latency", LargeBinary, nullable=True),
    Column("updated_at", String(32), nullable=False),
    UniqueConstraint("model", "version", "replica", "window_start",
                     name="uq_window_profiles_model_version_replica_window_start"),
)

# The durable prediction log (0006, 0007): each written batch is one compressed Arrow table in
# `prediction_batches` (`batch_key` makes a replayed batch a no-op; its span, model and version
# for filtering), and every logged request has an index row in `prediction_log` — its id and
# its batch, the key feedback looks up — in a table without row ids on SQLite.
prediction_batches = Table(
    "prediction_batches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_key", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("ts_min", String(32), nullable=False),
    Column("ts_max", String(32), nullable=False),
    Column("requests", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    UniqueConstraint("batch_key", name="uq_prediction_batches_batch_key"),
    Index("ix_prediction_batches_model_version_ts", "model", "version", "ts_max"),
)

prediction_log = Table(
    "prediction_log",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("batch_id", Integer, primary_key=True, autoincrement=False),
    sqlite_with_rowid=False,
)

# Delayed labels, keyed by the request id they judge; posting the same id again is a no-op.
feedback = Table(
    "feedback",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("label", JSON, nullable=False),
    Column("received_at", String(32), nullable=False),
)

# The monitor's verdict per model version and window: drift, quality, performance, SLOs.
monitor_results = Table(
    "monitor_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("window_start", String(32), nullable=False),
    Column("window_end", String(32), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("result", JSON, nullable=False),
    Column("created_at", String(32), nullable=False),
    UniqueConstraint("model", "version", "window_start",
                     name="uq_monitor_results_model_version_window_start"),
)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
)

# One row per rule and subject (e.g. "churn:3"): pending → firing → resolved, across restarts.
alert_states = Table(
    "alert_states",
    metadata,
    Column("rule", String(128), primary_key=True),
    Column("subject", String(256), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("labels", JSON, nullable=False),
    Column("pending_since", String(32), nullable=True),
    Column("firing_since", String(32), nullable=True),
    Column("resolved_at", String(32), nullable=True),
    Column("updated_at", String(32), nullable=False),
)

# An outbox: one row per notification and notifier, retried until delivered.
alert_notifications = Table(
    "alert_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(128), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("notifier", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", String(32), nullable=False),
    Column("delivered_at", String(32), nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_alert_notifications_delivered_at", "delivered_at"),
)

# Rollouts: how a model's traffic is split between its baseline and a candidate. At most one
# per model is active (running or paused): the partial unique index enforces it on both engines.
rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("baseline", Integer, nullable=False),
    Column("candidate", Integer, nullable=False),
    Column("strategy", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("steps", JSON, nullable=False),
    Column("step", Integer, nullable=False),
    Column("weight", Float, nullable=False),
    Column("step_duration_s", Float, nullable=False),
    Column("analysis", JSON, nullable=False),
    Column("sticky_header", String(128), nullable=True),
    Column("started_at", String(32), nullable=False),
    Column("step_started_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("finished_at", String(32), nullable=True),
    Column("reason", Text, nullable=True),
    Column("created_by", String(128), nullable=False),
    Index("ux_rollouts_active_model", "model", unique=True,
          sqlite_where=text("state IN ('running', 'paused')"),
          postgresql_where=text("state IN ('running', 'paused')")),
    Index("ix_rollouts_state", "state"),
)

# What happened in each rollout, step by step: starts, weight changes, analysis verdicts.
rollout_events = Table(
    "rollout_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Integer, ForeignKey("rollouts.id"), nullable=False),
    Column("at", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("step", Integer, nullable=False),
    Column("weight", Float, nullable=False),
    Column("detail", JSON, nullable=False),
    Index("ix_rollout_events_rollout_id", "rollout_id"),
)

# Retraining runs: what triggered each, where it got to (data, training, gate, approval,
# rollout) and what it decided. At most one run per model is active (running or awaiting
# approval); a trigger is remembered by its key so one firing starts one run.
retrain_runs = Table(
    "retrain_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("state", String(24), nullable=False),
    Column("stage", String(24), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("trigger_key", String(255), nullable=True),
    Column("reason", Text, nullable=False),
    Column("champion", Integer, nullable=True),
    Column("candidate", Integer, nullable=True),
    Column("rollout_id", Integer, nullable=True),
    Column("detail", JSON, nullable=False),
    Column("message", Text, nullable=True),
    Column("started_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("finished_at", String(32), nullable=True),
    Column("created_by", String(128), nullable=False),
    Index("ux_retrain_runs_active_model", "model", unique=True,
          sqlite_where=text("state IN ('running', 'awaiting_approval')"),
          postgresql_where=text("state IN ('running', 'awaiting_approval')")),
    Index("ux_retrain_runs_trigger", "model", "trigger_key", unique=True),
)
