"""Schedules and sensors: their persisted state (running or not, cursor) and their ticks.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "instigators",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_changed_at", TS, nullable=False),
        sa.Column("cursor", sa.Text, nullable=True),
        sa.Column("last_evaluated_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("kind", "name"),
    )
    op.create_table(
        "ticks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("scheduled_time", TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("planned", sa.Text, nullable=True),
        sa.Column("new_cursor", sa.Text, nullable=True),
        sa.Column("cursor_updated", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("run_ids", sa.Text, nullable=False, server_default="[]"),
        sa.Column("skip_reason", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("epoch", sa.Integer, nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
    )
    op.create_index("ix_ticks_kind_name_id", "ticks", ["kind", "name", "id"])
    # One tick per due time of a schedule (sensor ticks have no scheduled time).
    op.create_index("ux_ticks_schedule_time", "ticks", ["kind", "name", "scheduled_time"], unique=True)


def downgrade() -> None:
    op.drop_table("ticks")
    op.drop_table("instigators")
