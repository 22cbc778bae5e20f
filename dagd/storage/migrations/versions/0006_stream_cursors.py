"""Streams (issue #20): run event ids are never reused (SQLite AUTOINCREMENT), and on PostgreSQL
inserting run events or log lines NOTIFYs the supervisors' stream readers.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

from dagd.storage.schema import PG_NOTIFY_DDL, PG_NOTIFY_DROP

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # A table rebuild: SQLite only sets AUTOINCREMENT in CREATE TABLE.
        with op.batch_alter_table(
            "run_events", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
    else:
        for statement in PG_NOTIFY_DDL:
            op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table(
            "run_events", recreate="always", table_kwargs={"sqlite_autoincrement": False}
        ):
            pass
    else:
        for statement in PG_NOTIFY_DROP:
            op.execute(statement)
