"""The stores' SQL, run on the database driver itself: sqlite3 or psycopg, without SQLAlchemy.

Every query of the stores (runs, ticks, heartbeats, leases, settings) is hand-written SQL that
SQLite and PostgreSQL both accept, executed here on a DBAPI cursor. Two kinds of process run it:

- the supervisor, the CLI and the tests, through :class:`dagd.storage.store.Storage`, whose
  connections come from a SQLAlchemy engine (its pool, checkout check and migrations);
- the four daemons, through :class:`dagd.storage.database.DirectDatabase`, which opens driver
  connections itself.
  A daemon never imports SQLAlchemy: at ~15 MB of Python objects per process it was a third of a
  daemon's memory (issue #3, docs/architecture.md, "Queries").

Both share one store implementation, so the storage tests, which run every method on both
databases, cover what the daemons run.

Conventions of the SQL text: parameters are named ``:name`` (rewritten to ``%(name)s`` for
psycopg); no ``::`` casts and no literal ``%``. Values are stored as SQLAlchemy stores them, so
rows written by either kind of process read the same: on SQLite a timestamp is the text
``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, a boolean is 0 or 1; JSON is always text.

Errors: a lost or refused connection (the driver's ``OperationalError`` or ``InterfaceError``) is
:class:`~dagd.errors.StorageUnavailable`, and the connection is dropped; a PostgreSQL statement or
lock timeout (:func:`configure_postgres`) is StorageUnavailable too, but the connection is kept; a
constraint violation is :class:`ConstraintViolation`.
"""

from __future__ import annotations

import collections
import pathlib
import random
import re
import select
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from dagd.errors import ConfigError
from dagd.timefmt import as_utc

SQLITE, POSTGRES = "sqlite", "postgresql"
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_SECONDS = 5
#: How long data sent on a PostgreSQL connection may stay unacknowledged (and, with keepalives,
#: how long a silent peer is tolerated) before the kernel drops the connection: libpq's
#: ``tcp_user_timeout``, in milliseconds.
PG_TCP_USER_TIMEOUT_MS = 8000
#: libpq parameters for every PostgreSQL connection dagd opens: the supervisor's pool
#: (:func:`dagd.storage.engine.make_engine`), a daemon's own connections (:class:`DirectDatabase`)
#: and the leader's LISTEN connection (:mod:`dagd.supervisor.wakeups`). Without keepalives and
#: ``tcp_user_timeout`` a connection whose link is cut (a partition: packets dropped, nothing
#: refused) hangs in the kernel's retransmissions for many minutes, past any ``statement_timeout``
#: (the server's verdict never arrives), and stays stuck in exponential backoff after the link
#: heals; with them a call on such a connection fails as storage unavailable within about
#: ``PG_TCP_USER_TIMEOUT_MS`` and the next one connects afresh.
PG_CONNECTION_ARGS: dict[str, int] = {
    "connect_timeout": PG_CONNECT_TIMEOUT_SECONDS,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": PG_TCP_USER_TIMEOUT_MS,
}
#: PostgreSQL's ``statement_timeout`` where no heartbeat timeout says otherwise (tests, tools).
PG_STATEMENT_TIMEOUT_SECONDS = 30.0
# SQLSTATEs of a statement PostgreSQL canceled (statement_timeout, or an operator's cancel) and of
# a lock wait that hit lock_timeout: the connection is fine, only the transaction is lost.
_PG_CANCELED = frozenset({"57014", "55P03"})


def storage_wait_bound(heartbeat_timeout_seconds: float) -> float:
    """The longest one statement may wait on the database (a SQLite lock, a PostgreSQL lock or
    slow statement) before it fails as storage unavailable: half the heartbeat timeout, at most
    30 s. A daemon stuck on a lock then reports itself degraded and retries, well before the
    supervisor would take its silence for a hang and kill it (docs/chaos.md)."""
    return min(SQLITE_BUSY_TIMEOUT_MS / 1000, heartbeat_timeout_seconds / 2)


class Refused(Exception):
    """Raised inside a transaction to roll it back: a later condition of a multi-statement
    compare-and-set did not hold, so nothing of it may stay. Callers turn it into "nothing changed"."""


class ConstraintViolation(Exception):
    """A unique (or other) constraint refused a write; the transaction was rolled back."""


def sqlite_url(base_dir: pathlib.Path) -> str:
    base_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{base_dir / 'dagd.db'}"


# -- values -----------------------------------------------------------------------------------


def sqlite_time(value: datetime) -> str:
    """A timestamp as SQLAlchemy's SQLite dialect stores it (UTC, microseconds always written)."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


def when(value: Any) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (SQLite hands back text, psycopg a datetime)."""
    if value is None:
        return None
    if isinstance(value, str):
        zone = value[19:]
        if "+" not in zone and "-" not in zone and "Z" not in zone:
            # Naive UTC, as stored: parsing it with its offset is ~6x cheaper than .replace(tzinfo=)
            # afterwards, which counts when run monitoring reads 10,000 runs a pass.
            return datetime.fromisoformat(value + "+00:00")
        value = datetime.fromisoformat(value)
    return as_utc(value)


# -- statements of variable shape ---------------------------------------------------------------

# Batched statements come in a few fixed sizes, whatever the size of the batch. An ``IN (?, ?, ...)``
# or a multi-row statement is a different SQL string for every row count, and each connection
# keeps a cache of prepared statements (SQLite: 128; a 500-row insert is ~400 KB of compiled
# program): with batch sizes varying from pass to pass, connections filled their caches with
# one-off statements and the churn fragmented the C heap, so a daemon's RSS crept up for as long
# as it ran (docs/performance.md, "Sensor daemon memory"). Powers of two: a batch of n rows is at
# most log2(n) + n / MAX_PIECE statements.
MAX_PIECE = 256
_PIECES = tuple(2**i for i in range(MAX_PIECE.bit_length() - 1, -1, -1))  # 256, 128, ..., 2, 1


def pieces(items: list[Any]) -> Iterator[list[Any]]:
    """``items`` cut into consecutive slices whose lengths are powers of two, at most ``MAX_PIECE``."""
    start = 0
    for size in _PIECES:
        while len(items) - start >= size:
            yield items[start : start + size]
            start += size


def padded(names: list[Any]) -> Iterator[list[Any]]:
    """``names`` in slices of at most ``MAX_PIECE``, each padded (by repeating its last name) to a
    power of two: an ``IN`` list with a duplicate matches the same rows, with one statement per size."""
    for start in range(0, len(names), MAX_PIECE):
        chunk = names[start : start + MAX_PIECE]
        size = 1 << (len(chunk) - 1).bit_length()
        yield chunk + [chunk[-1]] * (size - len(chunk))


def in_list(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``(":p0, :p1, ...", {"p0": v0, ...})`` for an ``IN (...)`` of ``values``.

    No values give ``IN (NULL)``, which matches nothing (``IN ()`` is not SQL).
    """
    if not values:
        return "NULL", {}
    names = [f"{prefix}{i}" for i in range(len(values))]
    return ", ".join(f":{n}" for n in names), dict(zip(names, values, strict=True))


def by_status(dialect: str) -> str:
    """``" INDEXED BY ix_runs_status_seq"`` on SQLite (after ``FROM runs [alias]``), else nothing.

    For a query on runs by a few statuses (``status IN (...)``): after ANALYZE, sqlite_stat1 holds
    only the average number of runs per status (a third of the history when three finished statuses
    are stored), so a handful of statuses looks like most of the table and SQLite scans every run
    instead of the few in progress: 200-400 ms a read at 1,000,000 runs (the run queue's view, run
    monitoring's, the runs page). PostgreSQL keeps per-value statistics and needs no hint.
    """
    return " INDEXED BY ix_runs_status_seq" if dialect == SQLITE else ""


def insert_sql(table: str, columns: Sequence[str]) -> str:
    """``INSERT INTO table (a, b) VALUES (:a, :b)``: each value bound by its column's name."""
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"


# -- executing ------------------------------------------------------------------------------------

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_PG_TEXT: dict[str, str] = {}
_RECORDS: dict[tuple[str, ...], Any] = {}


# Above this many rows, PostgreSQL inserts by COPY (+ a SELECT for RETURNING): two round trips,
# worth it only for a batch. Group commit's few rows stay one INSERT ... RETURNING.
_PG_COPY_FROM_ROWS = 16


def _sqlite_max_params(conn: Any) -> int:
    """The SQLite library's limit on a statement's parameters (999 before SQLite 3.32)."""
    try:
        return int(conn.getlimit(getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", 9)))
    except (AttributeError, sqlite3.Error):  # Python < 3.11 has no getlimit
        return 999


def _pg_text(sql: str) -> str:
    text = _PG_TEXT.get(sql)
    if text is None:
        text = _PG_TEXT[sql] = _NAMED.sub(r"%(\1)s", sql)
    return text


def _record_type(names: tuple[str, ...]) -> Any:
    cls = _RECORDS.get(names)
    if cls is None:
        cls = _RECORDS[names] = collections.namedtuple("Record", names)  # type: ignore[misc]
    return cls


#: The database's clock in SQL text: ``clock_timestamp()`` on PostgreSQL (the moment of the
#: statement; ``now()`` would be the transaction's start), and on SQLite, whose database lives on
#: one host, that host's clock bound as ``:db_now``. Liveness judged across processes and hosts
#: (worker heartbeats, attempt ages) is stamped and aged with this, never with a caller's clock.
DB_NOW = {POSTGRES: "clock_timestamp()", SQLITE: ":db_now"}


class Sql:
    """The statements of one transaction, on one DBAPI cursor."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self.cursor = cursor
        self.dialect = dialect

    @property
    def now(self) -> str:
        """The database's clock as an SQL expression (see :data:`DB_NOW`)."""
        return DB_NOW[self.dialect]

    def db_now(self) -> datetime:
        """The database's clock, read (PostgreSQL) or, on SQLite's single host, this host's."""
        if self.dialect == POSTGRES:
            return when(self.scalar("SELECT clock_timestamp()"))  # type: ignore[return-value]
        return datetime.now(timezone.utc)

    def older_than(self, column: str, param: str) -> str:
        """``column`` is older than ``:param`` seconds by the database's clock (SQL condition)."""
        if self.dialect == POSTGRES:
            return f"{column} < clock_timestamp() - make_interval(secs => :{param})"
        return f"{column} < strftime('%Y-%m-%d %H:%M:%f', :db_now, '-' || :{param} || ' seconds')"

    def later(self, param: str) -> str:
        """``:param`` seconds from now by the database's clock (SQL expression)."""
        if self.dialect == POSTGRES:
            return f"clock_timestamp() + make_interval(secs => :{param})"
        return f"strftime('%Y-%m-%d %H:%M:%f', :db_now, '+' || :{param} || ' seconds')"

    def _text_params(self, sql: str, params: Mapping[str, Any] | None) -> tuple[str, Any]:
        if params is None:
            params = {}
        if self.dialect == POSTGRES:
            return _pg_text(sql), params
        values = {k: sqlite_time(v) if isinstance(v, datetime) else v for k, v in params.items()}
        if ":db_now" in sql and "db_now" not in values:
            values["db_now"] = sqlite_time(datetime.now(timezone.utc))
        return sql, values

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run one statement; the number of rows it changed."""
        text, values = self._text_params(sql, params)
        self.cursor.execute(text, values)
        return int(self.cursor.rowcount)

    def many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement for each of ``rows`` (no results)."""
        if not rows:
            return
        if len(rows) == 1:
            self.execute(sql, rows[0])
            return
        text, _ = self._text_params(sql, rows[0])
        self.cursor.executemany(
            text, [self._text_params(sql, row)[1] for row in rows] if self.dialect == SQLITE else rows
        )

    def stamp(self, value: datetime) -> Any:
        """A timestamp as :meth:`insert_rows` takes it (SQLite: its stored text)."""
        return sqlite_time(value) if self.dialect == SQLITE else value

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], returning: str = ""
    ) -> list[tuple[Any, ...]]:
        """Insert many driver-ready tuples (timestamps through :meth:`stamp`) in few round trips;
        the RETURNING rows, in no promised order.

        Multi-row ``INSERT ... VALUES (...), (...)`` statements, as large as the driver's parameter
        limit allows; on PostgreSQL, more than a few rows go by ``COPY`` instead (a huge multi-row
        VALUES costs the server more to plan, and a pipelined ``executemany`` a message per row),
        then, for ``returning``, one SELECT of the rows by the first column, which must be unique.
        """
        if not rows:
            return []
        names = ", ".join(columns)
        tail = f" RETURNING {returning}" if returning else ""
        out: list[tuple[Any, ...]] = []
        if self.dialect == POSTGRES and len(rows) > _PG_COPY_FROM_ROWS:
            with self.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            if returning:
                key = columns[0]
                self.cursor.execute(
                    f"SELECT {returning} FROM {table} WHERE {key} = ANY(%s)", [[row[0] for row in rows]]
                )
                out.extend(tuple(r) for r in self.cursor.fetchall())
            return out
        if self.dialect == POSTGRES:
            mark, limit = "%s", 65_535  # the protocol's limit on a statement's parameters
        else:
            mark, limit = "?", _sqlite_max_params(self.cursor.connection)
        per = max(1, min(limit // len(columns), 5_000))
        one = "(" + ", ".join([mark] * len(columns)) + ")"
        head = f"INSERT INTO {table} ({names}) VALUES "
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            self.cursor.execute(
                head + ", ".join([one] * len(chunk)) + tail, [v for row in chunk for v in row]
            )
            if returning:
                out.extend(tuple(r) for r in self.cursor.fetchall())
        return out

    def many_returning(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """An ``INSERT ... RETURNING`` for each of ``rows``; the returned rows, in order."""
        if len(rows) <= 1:
            return self.rows(sql, rows[0]) if rows else []
        out: list[tuple[Any, ...]] = []
        if self.dialect == POSTGRES:
            # One round trip for the whole batch; each input row's RETURNING is its own result set.
            self.cursor.executemany(_pg_text(sql), rows, returning=True)
            while True:
                out.extend(tuple(r) for r in self.cursor.fetchall())
                if not self.cursor.nextset():
                    return out
        for row in rows:  # sqlite3's executemany cannot return rows
            out.extend(self.rows(sql, row))
        return out

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """All result rows as plain tuples (the cheapest form, for large reads)."""
        text, values = self._text_params(sql, params)
        self.cursor.execute(text, values)
        return self.cursor.fetchall()  # type: ignore[no-any-return]  # both drivers give tuples

    def records(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """All result rows, each with its columns as attributes (``row.run_id``)."""
        text, values = self._text_params(sql, params)
        self.cursor.execute(text, values)
        record = _record_type(tuple(d[0] for d in self.cursor.description))
        return [record._make(r) for r in self.cursor.fetchall()]

    def record(self, sql: str, params: Mapping[str, Any] | None = None) -> Any | None:
        found = self.records(sql, params)
        return found[0] if found else None

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row, or None when there is no row."""
        found = self.rows(sql, params)
        return found[0][0] if found else None


# -- connections and transactions -------------------------------------------------------------------


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- SQLite connection settings (shared with the supervisor's engine) ---------------------------------

#: The oldest SQLite the stores' SQL runs on: ``INSERT ... RETURNING`` arrived in 3.35.0.
MIN_SQLITE_VERSION = (3, 35, 0)


def check_sqlite_version(version: str | None = None) -> None:
    """Refuse, with one line saying what to do, a SQLite library too old for the stores' SQL.

    Checked when storage is opened, so an old library fails at start, not at the first submit.
    ``version`` defaults to the library Python's sqlite3 module is linked against.
    """
    if version is None:
        import sqlite3

        version = sqlite3.sqlite_version
    found = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    if found < MIN_SQLITE_VERSION:
        need = ".".join(map(str, MIN_SQLITE_VERSION[:2]))
        raise ConfigError(
            f"SQLite {version} is too old: dagd needs SQLite {need} or newer (for RETURNING); "
            "run dagd on a Python linked against a newer SQLite, or use PostgreSQL (storage.postgres)"
        )


def configure_sqlite(conn: Any, busy_timeout_seconds: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
    """WAL (readers never block the writer), a busy timeout, ``synchronous=NORMAL`` (durable
    against process crashes, the promise we make), and transactions begun by us, not the driver."""
    conn.isolation_level = None
    cursor = conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")
    enable_wal(cursor, busy_timeout_seconds)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def enable_wal(cursor: Any, deadline_seconds: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
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


# -- PostgreSQL connection settings (shared with the supervisor's engine) -----------------------------


def configure_postgres(conn: Any, statement_timeout_seconds: float = PG_STATEMENT_TIMEOUT_SECONDS) -> None:
    """Bound every statement of the session: ``statement_timeout``, and ``lock_timeout`` at half
    of it (so a lock wait fails first, with a message that says so). Without them a query waiting
    on a lock another connection holds waits forever, and the daemon running it looks hung.

    ``SET`` after connecting rather than libpq's ``options``: a URL may carry its own ``options``
    (the tests' ``search_path``), and poolers such as PgBouncer refuse startup options.
    """
    statement_ms = max(1, int(statement_timeout_seconds * 1000))
    conn.execute(f"SET statement_timeout = {statement_ms}")
    conn.execute(f"SET lock_timeout = {max(1, statement_ms // 2)}")
    conn.commit()  # a SET inside a transaction that is rolled back would be undone


def pg_connection_usable(dbapi_conn: Any) -> bool:
    """Whether a pooled psycopg connection is still usable, without a query.

    SQLAlchemy's ``pool_pre_ping`` sends a query on every checkout: a round trip per
    transaction, which was a large part of a submission's cost. An idle pooled connection has
    nothing to read, unless the server closed it: then its socket holds the server's error
    ("terminating connection due to administrator command") and end of file. So one ``select``
    with no wait decides: nothing to read, usable (the common case); something, discarded. The
    rare harmless message an idle connection can get (a notice; pooled connections never LISTEN)
    costs one reconnect, and the test holds over TLS, where the bytes cannot be read as messages.
    """
    from psycopg import pq

    if dbapi_conn.closed or dbapi_conn.broken:
        return False
    pgconn = dbapi_conn.pgconn
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status == pq.TransactionStatus.UNKNOWN:
        return False
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except (OSError, ValueError, dbapi_conn.OperationalError):
        return False
    return not readable


# -- a daemon's own connections -------------------------------------------------------------------------
