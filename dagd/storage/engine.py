"""Engines for SQLite and PostgreSQL, with the settings each needs to be safe with many processes.

SQLite: the connection settings of :func:`dagd.storage.sql.configure_sqlite` (WAL, busy timeout,
``synchronous=NORMAL``), and ``BEGIN IMMEDIATE`` for write transactions so two writers queue on the
busy timeout instead of failing with "database is locked" when a read lock cannot be upgraded.
PostgreSQL: psycopg 3 with a small pool whose checkout checks the connection without a round trip
(:func:`pg_connection_usable`), so a connection the server closed (a database restart,
``pg_terminate_backend``, an idle timeout) is replaced before use rather than failing a query; TCP
keepalives and ``tcp_user_timeout`` (``PG_CONNECTION_ARGS``), so a cut link fails a call within
seconds instead of hanging it for minutes; and :func:`dagd.storage.sql.configure_postgres` on every
new connection (``statement_timeout``, ``lock_timeout``), so a query stuck behind a lock fails as
storage unavailable instead of holding a gRPC worker forever.

Engines are never shared across ``fork()``: every process opens its own (see docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from dagd.errors import StorageUnavailable
from dagd.storage.migrate import ensure_schema
from dagd.storage.sql import (
    PG_CONNECTION_ARGS,
    PG_STATEMENT_TIMEOUT_SECONDS,
    SQLITE_BUSY_TIMEOUT_MS,
    check_sqlite_version,
    configure_postgres,
    configure_sqlite,
    first_line,
    pg_connection_usable,
    sqlite_url,
)
from dagd.storage.store import READ_ONLY, Storage

__all__ = ["READ_ONLY", "make_engine", "open_storage", "sqlite_url"]


def make_engine(
    url: str, *, pool_size: int = 5, pg_statement_timeout_seconds: float | None = PG_STATEMENT_TIMEOUT_SECONDS
) -> sa.Engine:
    """An engine for ``url``. ``pg_statement_timeout_seconds=None`` leaves PostgreSQL's
    statements unbounded (``dagctl instance migrate``: rebuilding an index may take minutes)."""
    if url.startswith("sqlite"):
        check_sqlite_version()
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    kwargs: dict[str, Any] = {"pool_size": pool_size, "max_overflow": 10}
    if url.startswith("postgresql"):
        # Fail fast when the server is unreachable or the link is cut, instead of hanging a call.
        kwargs["connect_args"] = dict(PG_CONNECTION_ARGS)
    else:
        kwargs["pool_pre_ping"] = True  # another database: SQLAlchemy's ping (a round trip)
    engine = sa.create_engine(url, **kwargs)
    if url.startswith("postgresql"):

        @event.listens_for(engine, "checkout")
        def _on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            if not pg_connection_usable(dbapi_conn):
                # The pool discards it and checks out another (a new one if need be), up to 3 times.
                raise sa.exc.DisconnectionError("the server closed the connection")

    if url.startswith("postgresql") and pg_statement_timeout_seconds is not None:
        timeout = pg_statement_timeout_seconds

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            configure_postgres(dbapi_conn, timeout)

    return engine


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The same settings as a daemon's own connections; SQLAlchemy's "begin" event below then
        # emits BEGIN itself (pysqlite would defer it).
        configure_sqlite(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_storage(
    url: str,
    *,
    create: bool = True,
    pool_size: int = 5,
    pg_statement_timeout_seconds: float = PG_STATEMENT_TIMEOUT_SECONDS,
) -> Storage:
    """Open storage at ``url``; create the schema on a fresh database, refuse an outdated one."""
    engine = make_engine(url, pool_size=pool_size, pg_statement_timeout_seconds=pg_statement_timeout_seconds)
    try:
        ensure_schema(engine, create=create)
    except sa.exc.OperationalError as exc:
        engine.dispose()
        where = engine.url.render_as_string(hide_password=True)
        raise StorageUnavailable(f"storage unavailable at {where}: {first_line(exc)}") from exc
    except BaseException:
        engine.dispose()
        raise
    storage = Storage(engine)
    storage.pg_statement_timeout_seconds = pg_statement_timeout_seconds
    return storage
