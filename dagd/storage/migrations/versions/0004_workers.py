"""Worker hosts of the Celery run launcher: name, host, queues, slots, in use, heartbeat (database
clock).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("queues", sa.Text, nullable=False, server_default="[]"),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("in_use", sa.Integer, nullable=False, server_default="0"),
        sa.Column("accepting", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("workers")
