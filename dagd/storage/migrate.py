"""Schema versions: create a fresh database at head, refuse an older one, upgrade on request.

Alembic runs programmatically on a connection we own (no alembic.ini), inside one transaction
guarded against concurrent creators: SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock.
"""

from __future__ import annotations

import logging
import pathlib

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from dagd.errors import SchemaOutOfDate

MIGRATIONS = pathlib.Path(__file__).parent / "migrations"
_PG_LOCK_ID = 0x0DA6D  # any constant; serialises schema changes across processes


# Alembic's INFO lines ("Context impl SQLiteImpl") are noise in every process that opens storage.
logging.getLogger("alembic").setLevel(logging.WARNING)


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _lock(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})


def ensure_schema(engine: sa.Engine, *, create: bool = True) -> None:
    head = head_revision()
    with engine.connect() as connection:
        if current_revision(connection) == head:
            return
    with engine.begin() as connection:
        _lock(connection)
        current = current_revision(connection)
        if current == head:
            return
        fresh = current is None and not sa.inspect(connection).has_table("runs")
        if fresh and create:
            command.upgrade(_alembic_config(connection), "head")
            return
        raise SchemaOutOfDate(
            f"the database schema is at revision {current or 'none'}, this dagd needs {head}: "
            "run `dagctl instance migrate`"
        )


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Bring the database to head; returns (before, after)."""
    with engine.begin() as connection:
        _lock(connection)
        before = current_revision(connection)
        if before is None and sa.inspect(connection).has_table("runs"):
            # Alembic would replay 0001 and die on CREATE TABLE; we cannot tell which revision it is.
            raise SchemaOutOfDate(
                "the database has dagd tables but no schema version (alembic_version is empty): "
                "refusing to migrate it; restore its version row or start from an empty database"
            )
        command.upgrade(_alembic_config(connection), "head")
        return before, head_revision()
