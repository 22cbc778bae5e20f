"""The supervisor's storage: driver SQL on connections from a SQLAlchemy engine.

:class:`Storage` is a :class:`~dagd.storage.database.Database` whose connections come from the engine's
pool (a PostgreSQL connection the server closed is replaced at checkout), so the supervisor, the CLI and the tests run the very store
code the daemons run (:mod:`dagd.storage.sql`). The engine also serves the migrations and the
SQLAlchemy-level ``read()``/``write()`` transactions tests use to inspect or corrupt rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from dagd.errors import StorageUnavailable
from dagd.storage.database import Database
from dagd.storage.sql import first_line

# An execution option of the storage's read transactions: on SQLite they begin deferred, not
# IMMEDIATE (engine.py's "begin" listener).
READ_ONLY = "dagd_read_only"


class Storage(Database):
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.dbapi = engine.dialect.loaded_dbapi
        super().__init__()

    def describe(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _checkout(self) -> Any:
        try:
            return self.engine.raw_connection()
        # Checking out only fails for want of a connection, whatever the exception: the pool's
        # reconnect after a failed checkout check lets the driver's own error through unwrapped, and an
        # exhausted reconnect is an InvalidRequestError.
        except (sa.exc.SQLAlchemyError, self.dbapi.Error) as exc:
            raise StorageUnavailable(f"storage unavailable: {first_line(exc)}") from exc

    def _checkin(self, conn: Any) -> None:
        conn.close()  # back to the pool

    def _discard(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.invalidate()
            conn.close()

    # SQLAlchemy-level transactions, for migrations and for tests that inspect rows directly.

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise StorageUnavailable(f"storage unavailable: {first_line(exc)}") from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
                with conn.begin():
                    yield conn
        except sa.exc.OperationalError as exc:
            raise StorageUnavailable(f"storage unavailable: {first_line(exc)}") from exc

    def _close_connections(self) -> None:
        self.engine.dispose()
