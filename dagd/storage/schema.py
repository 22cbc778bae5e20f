"""Table definitions (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them.

Timestamps are stored as timezone-aware UTC. JSON payloads are stored as text so SQLite and
PostgreSQL behave the same.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    # seq is the submission order: FIFO within a priority, and the pagination cursor.
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, unique=True),
    sa.Column("job_name", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("tags", sa.Text, nullable=False, server_default="{}"),
    sa.Column("run_config", sa.Text, nullable=False, server_default="{}"),
    sa.Column("code_location", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("worker_pid", sa.Integer, nullable=True),
    # psutil create_time of the worker: a pid alone can be reused.
    sa.Column("worker_started_at", sa.Float, nullable=True),
    sa.Column("worker_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    # Epoch of the lease holder that claimed the run (fencing).
    sa.Column("claim_epoch", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # The run's current attempt (run_attempts.attempt; 0 = never launched). Every status write of
    # a worker is fenced by it. worker_host/worker_pid/worker_started_at say where it runs.
    sa.Column("current_attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("worker_host", sa.String(255), nullable=True),
    # Counts kept as fields (never read back from event wording).
    sa.Column("launch_failures", sa.Integer, nullable=False, server_default="0"),
    # A run put back in the queue after a failed launch waits until then (database clock).
    sa.Column("launch_not_before", sa.DateTime(timezone=True), nullable=True),
    sa.Column("resumes", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_runs_status_seq", "status", "seq"),
    sa.Index("ix_runs_job_name", "job_name"),
    # Run retries look for failures that ended since a time (RunStore.failed_since).
    sa.Index("ix_runs_status_ended_at", "status", "ended_at"),
)

# One row per launch of a run (dagd.runs.attempts): dispatched, claimed by exactly one worker with
# a compare-and-set on its dispatch token, heartbeated on the database's clock, then DONE, LOST
# (silent past the heartbeat timeout, or its worker died) or ABANDONED (superseded before a claim).
run_attempts = sa.Table(
    "run_attempts",
    metadata,
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("dispatch_token", sa.String(64), nullable=False),
    sa.Column("epoch", sa.Integer, nullable=True),
    # Who dispatched it ("host:pid:start time"): an orphaned dispatch is one whose dispatcher died.
    sa.Column("dispatcher", sa.String(255), nullable=True),
    sa.Column("queue", sa.String(255), nullable=True),
    sa.Column("worker", sa.String(255), nullable=True),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("pid_started_at", sa.Float, nullable=True),
    sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("end_reason", sa.Text, nullable=True),
    sa.PrimaryKeyConstraint("run_id", "attempt"),
    sa.Index("ix_run_attempts_state", "state"),
)

run_tags = sa.Table(
    "run_tags",
    metadata,
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    # The run's runs.seq: a tag filter walks (key, value, run_seq) newest first and stops after a
    # page, where (key, value) alone made it collect and sort every run with the tag.
    sa.Column("run_seq", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("run_id", "key"),
    sa.Index("ix_run_tags_key_value_seq", "key", "value", "run_seq"),
)

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=True),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    # Ids are stream cursors (dagd.runs.cursor): never reused, even after the newest row is deleted.
    sqlite_autoincrement=True,
)

run_logs = sa.Table(
    "run_logs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stream", sa.String(16), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_run_logs_run_id_id", "run_id", "id"),
)

daemon_heartbeats = sa.Table(
    "daemon_heartbeats",
    metadata,
    sa.Column("daemon_name", sa.String(64), primary_key=True),
    sa.Column("daemon_id", sa.String(64), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("incarnation", sa.Integer, nullable=False),
    sa.Column("iteration", sa.Integer, nullable=False),
    sa.Column("phase", sa.String(64), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("errors", sa.Text, nullable=False, server_default="[]"),
    sa.Column("info", sa.Text, nullable=False, server_default="{}"),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


instigators = sa.Table(
    "instigators",
    metadata,
    sa.Column("kind", sa.String(16), nullable=False),  # "schedule" or "sensor"
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # RUNNING or STOPPED
    sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("cursor", sa.Text, nullable=True),
    sa.Column("last_evaluated_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("kind", "name"),
)

ticks = sa.Table(
    "ticks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("scheduled_time", sa.DateTime(timezone=True), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # STARTED, SUCCESS, SKIPPED, FAILURE
    # The run requests decided for this tick, saved before any run is submitted (crash resume).
    sa.Column("planned", sa.Text, nullable=True),
    sa.Column("new_cursor", sa.Text, nullable=True),
    sa.Column("cursor_updated", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("run_ids", sa.Text, nullable=False, server_default="[]"),
    sa.Column("skip_reason", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("epoch", sa.Integer, nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_ticks_kind_name_id", "kind", "name", "id"),
    sa.Index("ux_ticks_schedule_time", "kind", "name", "scheduled_time", unique=True),
)

# Worker hosts of the Celery launcher (dagd.runs.celery): one row per `dagctl worker run`, keyed by
# its name (host:pid). It heartbeats on the database's clock; a host silent past
# run_monitoring.worker_heartbeat_timeout_seconds is dead and its slots stop counting.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("queues", sa.Text, nullable=False, server_default="[]"),  # JSON list of queue names
    sa.Column("slots", sa.Integer, nullable=False),
    sa.Column("in_use", sa.Integer, nullable=False, server_default="0"),
    # False once it stopped taking work (SIGTERM: draining its runs).
    sa.Column("accepting", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
)


# PostgreSQL wakes the supervisors' stream readers (dagd.supervisor.streams) on every statement that
# adds run events or log lines, from whichever process or host wrote them. Migration 0005 creates
# the same function and triggers on an existing database.
NOTIFY_CHANNEL = "dagd_changes"
PG_NOTIFY_DDL = (
    "CREATE OR REPLACE FUNCTION dagd_notify_changes() RETURNS trigger AS $$ BEGIN"
    f" PERFORM pg_notify('{NOTIFY_CHANNEL}', TG_TABLE_NAME); RETURN NULL; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER run_events_notify AFTER INSERT ON run_events"
    " FOR EACH STATEMENT EXECUTE FUNCTION dagd_notify_changes()",
    "CREATE TRIGGER run_logs_notify AFTER INSERT ON run_logs"
    " FOR EACH STATEMENT EXECUTE FUNCTION dagd_notify_changes()",
)
PG_NOTIFY_DROP = (
    "DROP TRIGGER IF EXISTS run_logs_notify ON run_logs",
    "DROP TRIGGER IF EXISTS run_events_notify ON run_events",
    "DROP FUNCTION IF EXISTS dagd_notify_changes()",
)


@sa.event.listens_for(metadata, "after_create")
def _create_notify_triggers(target: sa.MetaData, connection: sa.Connection, **_: object) -> None:
    if connection.dialect.name == "postgresql":
        for statement in PG_NOTIFY_DDL:
            connection.exec_driver_sql(statement)
