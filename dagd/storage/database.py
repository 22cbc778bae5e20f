"""Where transactions come from: :class:`Database` (transactions on driver connections, and the
stores that use them) and :class:`DirectDatabase` (driver connections of its own, no SQLAlchemy:
the daemons' and workers' storage). The SQL helpers they use are :mod:`dagd.storage.sql`'s; the
stores import only those, so nothing in ``dagd.storage`` imports in a circle.
"""

from __future__ import annotations

import abc
import contextlib
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

from dagd.errors import StorageUnavailable
from dagd.storage.attempts import AttemptStore
from dagd.storage.daemons import DaemonStore
from dagd.storage.instigators import InstigatorStore
from dagd.storage.leases import LeaseStore
from dagd.storage.runs import RunStore
from dagd.storage.sql import (
    _PG_CANCELED,
    PG_CONNECT_TIMEOUT_SECONDS,
    PG_CONNECTION_ARGS,
    PG_STATEMENT_TIMEOUT_SECONDS,
    POSTGRES,
    SQLITE,
    SQLITE_BUSY_TIMEOUT_MS,
    ConstraintViolation,
    Sql,
    check_sqlite_version,
    configure_postgres,
    configure_sqlite,
    first_line,
    pg_connection_usable,
)
from dagd.storage.workers import WorkerStore


class Database(abc.ABC):
    """Transactions on driver connections, and the stores that use them.

    Subclasses say where a connection comes from (:meth:`_checkout`) and where it goes after a
    transaction (:meth:`_checkin`) or after a failure that may have killed it (:meth:`_discard`).
    """

    dialect: str
    dbapi: Any
    sqlite_busy_timeout_seconds: float = SQLITE_BUSY_TIMEOUT_MS / 1000
    pg_statement_timeout_seconds: float = PG_STATEMENT_TIMEOUT_SECONDS

    def __init__(self) -> None:
        self.group_commit: Any = None
        self.runs: RunStore = RunStore(self)
        self.attempts: AttemptStore = AttemptStore(self)
        self.daemons: DaemonStore = DaemonStore(self)
        self.leases: LeaseStore = LeaseStore(self)
        self.instigators: InstigatorStore = InstigatorStore(self)
        self.workers: WorkerStore = WorkerStore(self)

    @abc.abstractmethod
    def _checkout(self) -> Any:
        raise NotImplementedError

    @abc.abstractmethod
    def _checkin(self, conn: Any) -> None:
        raise NotImplementedError

    @abc.abstractmethod
    def _discard(self, conn: Any) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def sql_write(self) -> Iterator[Sql]:
        """A short write transaction (SQLite takes the write lock up front: ``BEGIN IMMEDIATE``,
        so two writers queue on the busy timeout rather than failing to upgrade a read lock)."""
        with self._transaction("BEGIN IMMEDIATE") as sql:
            yield sql

    @contextlib.contextmanager
    def sql_read(self) -> Iterator[Sql]:
        """A read transaction: one consistent snapshot for every statement in the block."""
        with self._transaction("BEGIN") as sql:
            yield sql

    @contextlib.contextmanager
    def _transaction(self, sqlite_begin: str) -> Iterator[Sql]:
        dbapi = self.dbapi
        conn = self._checkout()
        try:
            cursor = conn.cursor()
            if self.dialect == SQLITE:
                cursor.execute(sqlite_begin)
            yield Sql(cursor, self.dialect)
            conn.commit()
        except (dbapi.OperationalError, dbapi.InterfaceError) as exc:
            if getattr(exc, "sqlstate", None) in _PG_CANCELED:
                _rollback(conn)  # a timeout: the connection still works
            else:
                self._discard(conn)  # the connection may be dead: never hand it out again
                conn = None
            raise StorageUnavailable(f"storage unavailable: {first_line(exc)}") from exc
        except dbapi.IntegrityError as exc:
            _rollback(conn)
            raise ConstraintViolation(first_line(exc)) from exc
        except BaseException:
            _rollback(conn)
            raise
        finally:
            if conn is not None:
                self._checkin(conn)

    def ping(self) -> None:
        with self.sql_read() as sql:
            sql.scalar("SELECT 1")

    def get_setting(self, key: str) -> Any:
        with self.sql_read() as sql:
            raw = sql.scalar("SELECT value FROM settings WHERE key = :key", {"key": key})
        return None if raw is None else json.loads(raw)

    def set_setting(self, key: str, value: Any) -> None:
        with self.sql_write() as sql:
            sql.execute(
                "INSERT INTO settings (key, value) VALUES (:key, :value)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                {"key": key, "value": json.dumps(value)},
            )

    @property
    def longest_wait_seconds(self) -> float:
        """How long one call may block on the database by the driver's own bounds while it is
        down or locked: SQLite's busy timeout; PostgreSQL's connect timeout or statement timeout
        (which also bounds lock waits). A call blocked longer than this is stuck (a server that
        never answers at all), not waiting."""
        if self.dialect == SQLITE:
            return self.sqlite_busy_timeout_seconds
        return max(float(PG_CONNECT_TIMEOUT_SECONDS), self.pg_statement_timeout_seconds)

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the data is, without the password."""
        raise NotImplementedError

    def enable_group_commit(self) -> None:
        """Let concurrent run creations share transactions (for the supervisor's submit path)."""
        from dagd.storage.batching import GroupCommit

        if self.group_commit is None:
            self.group_commit = GroupCommit(self.runs.create_many)

    def dispose(self) -> None:
        if self.group_commit is not None:
            self.group_commit.close()
        self._close_connections()

    @abc.abstractmethod
    def _close_connections(self) -> None:
        raise NotImplementedError


def _rollback(conn: Any) -> None:
    with contextlib.suppress(Exception):  # the original error is the one worth reporting
        conn.rollback()


class DirectDatabase(Database):
    """Driver connections opened by this process (the daemons): a few kept idle for reuse.

    PostgreSQL connections are checked when taken from the idle list, as the supervisor's pool
    does (:func:`pg_connection_usable`, no round trip), so one the server closed (a database
    restart, ``pg_terminate_backend``) costs no failed transaction.
    """

    MAX_IDLE = 5  # as the supervisor's pool keeps (SQLAlchemy's default pool_size)

    def __init__(
        self,
        url: str,
        *,
        sqlite_busy_timeout_seconds: float = SQLITE_BUSY_TIMEOUT_MS / 1000,
        pg_statement_timeout_seconds: float = PG_STATEMENT_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        self.sqlite_busy_timeout_seconds = sqlite_busy_timeout_seconds
        self.pg_statement_timeout_seconds = pg_statement_timeout_seconds
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        if url.startswith("sqlite"):
            import sqlite3

            check_sqlite_version()
            self.dialect, self.dbapi = SQLITE, sqlite3
            self._path = url.split(":///", 1)[1]
        elif url.startswith("postgresql"):
            import psycopg

            self.dialect, self.dbapi = POSTGRES, psycopg
            self._conninfo = "postgresql://" + url.split("://", 1)[1]
        else:
            raise ValueError(f"unsupported storage URL {url!r}")
        super().__init__()

    def describe(self) -> str:
        return re.sub(r"://([^:@/]*):[^@/]*@", r"://\1:***@", self.url)

    def _connect(self) -> Any:
        try:
            if self.dialect == SQLITE:
                timeout = self.sqlite_busy_timeout_seconds
                conn = self.dbapi.connect(self._path, timeout=timeout, check_same_thread=False)
                configure_sqlite(conn, timeout)
                return conn
            conn = self.dbapi.connect(self._conninfo, **PG_CONNECTION_ARGS)
            try:
                configure_postgres(conn, self.pg_statement_timeout_seconds)
            except BaseException:
                _close(conn)
                raise
            return conn
        except self.dbapi.Error as exc:
            raise StorageUnavailable(f"storage unavailable: {first_line(exc)}") from exc

    def _checkout(self) -> Any:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect()
            if self.dialect == SQLITE or self._alive(conn):
                return conn

    def _alive(self, conn: Any) -> bool:
        if pg_connection_usable(conn):
            return True
        _close(conn)
        return False

    def _checkin(self, conn: Any) -> None:
        with self._lock:
            if len(self._idle) < self.MAX_IDLE:
                self._idle.append(conn)
                return
        _close(conn)

    def _discard(self, conn: Any) -> None:
        _close(conn)

    def _close_connections(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()
