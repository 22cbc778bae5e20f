"""Run attempts: one row per launch, claimed with a dispatch token, heartbeated on the database's
clock; runs gain their current attempt, where it runs, and launch/resume counts as fields.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "run_attempts",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("dispatch_token", sa.String(64), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=True),
        sa.Column("dispatcher", sa.String(255), nullable=True),
        sa.Column("queue", sa.String(255), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("pid_started_at", sa.Float, nullable=True),
        sa.Column("dispatched_at", TS, nullable=False),
        sa.Column("claimed_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("end_reason", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("run_id", "attempt"),
    )
    op.create_index("ix_run_attempts_state", "run_attempts", ["state"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("current_attempt", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("worker_host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("launch_failures", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("launch_not_before", TS, nullable=True))
        batch.add_column(sa.Column("resumes", sa.Integer, nullable=False, server_default="0"))
    # A run in progress when the database was upgraded keeps going: its worker is an attempt 1
    # that was claimed before attempts existed (no token to check, no heartbeat to age yet).
    op.execute(
        "INSERT INTO run_attempts (run_id, attempt, state, dispatch_token, dispatched_at, claimed_at, pid,"
        " pid_started_at, heartbeat_at)"
        " SELECT run_id, 1, 'CLAIMED', 'migrated', updated_at, started_at, worker_pid, worker_started_at,"
        " COALESCE(worker_heartbeat_at, updated_at)"
        " FROM runs WHERE status IN ('STARTING', 'STARTED', 'CANCELING')"
    )
    op.execute("UPDATE runs SET current_attempt = 1 WHERE status IN ('STARTING', 'STARTED', 'CANCELING')")
    op.execute(
        "UPDATE runs SET current_attempt = 1 WHERE status IN ('SUCCESS', 'FAILURE') AND started_at IS NOT NULL"
    )
