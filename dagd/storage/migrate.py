"""Schema versions: create a fresh database at head, refuse an older one, upgrade on request.

A fresh database is created from the table definitions (``schema.metadata.create_all``) and
stamped with the head revision, the way Dagster does it: no alembic import, which would keep ~11 MB
of alembic, mako and pygments alive in a supervisor that runs for months, for a one-time job.
A test checks that replaying every migration gives exactly the same schema, so the two paths
cannot drift. Upgrading an older database (``dagd instance migrate``) runs alembic
programmatically on a connection we own (no alembic.ini). Both happen inside one transaction
guarded against concurrent creators: SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock.
"""

from __future__ import annotations

import logging
import pathlib
from typing import TYPE_CHECKING

import sqlalchemy as sa

from dagd.errors import SchemaOutOfDate

if TYPE_CHECKING:
    from alembic.config import Config

# The newest migration in migrations/versions. Checking a database against this constant needs no
# alembic import, which keeps run workers and daemons quick to start; a unit test keeps it honest.
HEAD_REVISION = "0006"

MIGRATIONS = pathlib.Path(__file__).parent / "migrations"
_PG_LOCK_ID = 0x0DA6D  # any constant; serialises schema changes across processes


# Alembic's INFO lines ("Context impl SQLiteImpl") are noise in every process that opens storage.
logging.getLogger("alembic").setLevel(logging.WARNING)


def _alembic_config(connection: sa.Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The head according to alembic's scripts (slow: imports alembic)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(connection: sa.Connection) -> str | None:
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


# Alembic's own version table, as alembic creates it (it finds and reads this one later).
_version_table = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def create_at_head(connection: sa.Connection) -> None:
    """Create every table of a fresh database and record it as being at ``HEAD_REVISION``."""
    from dagd.storage.schema import metadata

    metadata.create_all(connection)
    _version_table.create(connection)
    connection.execute(_version_table.insert().values(version_num=HEAD_REVISION))


def _lock(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})


def ensure_schema(engine: sa.Engine, *, create: bool = True) -> None:
    head = HEAD_REVISION
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
            create_at_head(connection)
            return
        raise SchemaOutOfDate(
            f"the database schema is at revision {current or 'none'}, this dagd needs {head}: "
            "run `dagctl instance migrate` (if the database is newer than this dagd, upgrade dagd instead)"
        )


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Bring the database to head; returns (before, after)."""
    from alembic import command

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Every connection bounds its statements (configure_postgres); a migration rewriting a
            # table of a million runs may rightly take longer, and waits for the lock below.
            connection.execute(sa.text("SET LOCAL statement_timeout = 0"))
            connection.execute(sa.text("SET LOCAL lock_timeout = 0"))
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
