"""Hot-path inserts on the database driver's own cursor.

Storing a submitted run is three small INSERTs. Executed as SQLAlchemy constructs they cost ~0.6 ms
of CPU per transaction (execution contexts, result objects, the "insertmanyvalues" machinery for
``RETURNING``), which was a third of the supervisor's CPU per submission; the same statements on the
driver's cursor cost ~0.1 ms. So the submit path compiles each INSERT once, with SQLAlchemy, for
the engine's dialect (the SQL text and the column types stay defined in one place,
``dagd/storage/schema.py``) and executes the text on the DBAPI cursor, converting values with the
column types' own bind processors so rows are stored exactly as SQLAlchemy would store them.

Errors keep the meaning the rest of the storage layer gives them: a lost or refused connection is
:class:`~dagd.errors.StorageUnavailable`, a constraint violation is ``sqlalchemy.exc.IntegrityError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from dagd.errors import StorageUnavailable
from dagd.storage.store import _first_line


class DriverInsert:
    """``INSERT INTO table (columns) VALUES (...) [RETURNING ...]`` as driver SQL, compiled once."""

    def __init__(
        self, table: sa.Table, columns: Sequence[str], dialect: sa.Dialect, returning: Sequence[str] = ()
    ) -> None:
        stmt: Any = table.insert().values(
            {name: sa.bindparam(name, type_=table.c[name].type) for name in columns}
        )
        if returning:
            stmt = stmt.returning(*(table.c[name] for name in returning))
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        self.returns = bool(returning)
        self._positional = bool(compiled.positional)
        self._order: list[str] = list(compiled.positiontup or ()) if self._positional else list(columns)
        self._convert = {
            name: processor
            for name in columns
            if (processor := table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }

    def params(self, row: Mapping[str, Any]) -> Any:
        """The row's values in the driver's parameter style, converted by the column types."""
        convert = self._convert
        values = {name: convert[name](row[name]) if name in convert else row[name] for name in self._order}
        return tuple(values[name] for name in self._order) if self._positional else values

    def execute_many(self, cursor: Any, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Insert ``rows`` in order; with ``RETURNING``, one returned row per input row, in order."""
        if not rows:
            return []
        params = [self.params(row) for row in rows]
        out: list[tuple[Any, ...]] = []
        if len(params) == 1:  # the common case (one submission); psycopg's executemany pipelines
            cursor.execute(self.sql, params[0])
            return [tuple(r) for r in cursor.fetchall()] if self.returns else out
        if not self.returns:
            cursor.executemany(self.sql, params)
            return out
        if _is_psycopg(cursor):
            # One round trip for the whole batch; each input row's RETURNING is its own result set.
            cursor.executemany(self.sql, params, returning=True)
            while True:
                out.extend(tuple(r) for r in cursor.fetchall())
                if not cursor.nextset():
                    return out
        for one in params:  # sqlite3's executemany cannot return rows
            cursor.execute(self.sql, one)
            out.extend(tuple(r) for r in cursor.fetchall())
        return out


def _is_psycopg(cursor: Any) -> bool:
    return type(cursor).__module__.startswith("psycopg")


@contextlib.contextmanager
def driver_transaction(engine: sa.Engine) -> Iterator[Any]:
    """A write transaction on a pooled connection's DBAPI cursor; committed when the block ends.

    SQLite takes the write lock up front (``BEGIN IMMEDIATE``, as ``Storage.write`` does), so two
    writers queue on the busy timeout rather than failing to upgrade a read lock.
    """
    dbapi = engine.dialect.loaded_dbapi
    try:
        conn = engine.raw_connection()
    # Checking out only fails for want of a connection, whatever the exception: the pool's
    # reconnect after a failed pre-ping lets the driver's own error through unwrapped, and an
    # exhausted reconnect is an InvalidRequestError.
    except (sa.exc.SQLAlchemyError, dbapi.Error) as exc:
        raise StorageUnavailable(f"storage unavailable: {_first_line(exc)}") from exc
    try:
        cursor = conn.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        yield cursor
        conn.commit()
    except (dbapi.OperationalError, dbapi.InterfaceError) as exc:
        conn.invalidate()  # the connection may be dead: never hand it out again
        raise StorageUnavailable(f"storage unavailable: {_first_line(exc)}") from exc
    except dbapi.IntegrityError as exc:
        _rollback(conn)
        raise sa.exc.IntegrityError(None, None, exc) from exc
    except BaseException:
        _rollback(conn)
        raise
    finally:
        conn.close()


def _rollback(conn: Any) -> None:
    with contextlib.suppress(Exception):  # the original error is the one worth reporting
        conn.rollback()
