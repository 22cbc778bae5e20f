"""Engines for SQLite and PostgreSQL, with the settings each needs to be safe with many processes.

SQLite: WAL (readers never block the writer), a busy timeout, ``synchronous=NORMAL`` (durable
against process crashes, which is the promise we make), and ``BEGIN IMMEDIATE`` for write
transactions so two writers queue on the busy timeout instead of failing with "database is locked"
when a read lock cannot be upgraded. PostgreSQL: psycopg 3 with a small pool and pre-ping, so a
database restart costs one failed query rather than a dead daemon.

Engines are never shared across ``fork()``: every process opens its own (see docs/architecture.md).
"""

from __future__ import annotations

import pathlib
import random
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from dagd.errors import StorageUnavailable
from dagd.storage.migrate import ensure_schema
from dagd.storage.store import Storage, _first_line

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "dagd_read_only"


def sqlite_url(base_dir: pathlib.Path) -> str:
    base_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{base_dir / 'dagd.db'}"


def make_engine(url: str, *, pool_size: int = 5) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": pool_size, "max_overflow": 10}
    if url.startswith("postgresql"):
        # Fail fast when the server is unreachable instead of hanging a daemon loop.
        kwargs["connect_args"] = {"connect_timeout": 5}
    return sa.create_engine(url, **kwargs)


def _enable_wal(cursor: Any, deadline_seconds: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another connection holds the database.

    Only the first switch of a fresh file needs the exclusive lock (the mode is stored in the
    file), and SQLite answers "database is locked" at once there instead of waiting on the busy
    timeout: several processes opening a new database together (a supervisor and its first
    `dagctl` calls, tests) would otherwise fail.
    """
    import sqlite3

    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02 + random.random() * 0.05)


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite would defer it).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_storage(url: str, *, create: bool = True, pool_size: int = 5) -> Storage:
    """Open storage at ``url``; create the schema on a fresh database, refuse an outdated one."""
    engine = make_engine(url, pool_size=pool_size)
    try:
        ensure_schema(engine, create=create)
    except sa.exc.OperationalError as exc:
        engine.dispose()
        where = engine.url.render_as_string(hide_password=True)
        raise StorageUnavailable(f"storage unavailable at {where}: {_first_line(exc)}") from exc
    except BaseException:
        engine.dispose()
        raise
    return Storage(engine)
