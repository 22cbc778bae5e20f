"""The storage facade: one engine, short transactions, and the per-concept query classes.

``Storage.write()`` is a short write transaction (BEGIN IMMEDIATE on SQLite); ``Storage.read()`` a
read-only one. Database connection failures surface as :class:`dagd.errors.StorageUnavailable`, so
callers can tell an outage from a bug.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dagd.errors import StorageUnavailable

if TYPE_CHECKING:
    from dagd.storage.batching import GroupCommit


class Storage:
    def __init__(self, engine: sa.Engine) -> None:
        from dagd.storage.daemons import DaemonStore
        from dagd.storage.instigators import InstigatorStore
        from dagd.storage.leases import LeaseStore
        from dagd.storage.runs import RunStore

        self.engine = engine
        self.group_commit: GroupCommit | None = None
        self.runs = RunStore(self)
        self.daemons = DaemonStore(self)
        self.leases = LeaseStore(self)
        self.instigators = InstigatorStore(self)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise StorageUnavailable(f"storage unavailable: {_first_line(exc)}") from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        from dagd.storage.engine import READ_ONLY

        try:
            with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
                with conn.begin():
                    yield conn
        except sa.exc.OperationalError as exc:
            raise StorageUnavailable(f"storage unavailable: {_first_line(exc)}") from exc

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def get_setting(self, key: str) -> Any:
        from dagd.storage.schema import settings

        with self.read() as conn:
            raw = conn.execute(sa.select(settings.c.value).where(settings.c.key == key)).scalar()
        return None if raw is None else json.loads(raw)

    def set_setting(self, key: str, value: Any) -> None:
        from dagd.storage.schema import settings

        with self.write() as conn:
            upsert(conn, settings, {"key": key, "value": json.dumps(value)}, ["key"])

    def enable_group_commit(self) -> None:
        """Let concurrent run creations share transactions (for the supervisor's submit path)."""
        from dagd.storage.batching import GroupCommit

        if self.group_commit is None:
            self.group_commit = GroupCommit(self.runs.create_many)

    def dispose(self) -> None:
        if self.group_commit is not None:
            self.group_commit.close()
        self.engine.dispose()


def dialect_insert(conn: sa.Connection) -> Any:
    # Imported on use: a SQLite process never pays for the PostgreSQL dialect (and vice versa).
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


def upsert(conn: sa.Connection, table: sa.Table, values: dict[str, Any], keys: list[str]) -> None:
    """An atomic insert-or-update in one statement (never insert-then-update)."""
    insert = dialect_insert(conn)
    stmt = insert(table).values(**values)
    update = {k: v for k, v in values.items() if k not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update))


def insert_ignore(conn: sa.Connection, table: sa.Table, values: dict[str, Any], keys: list[str]) -> None:
    """Insert unless a row with the same key exists (atomic, one statement)."""
    insert = dialect_insert(conn)
    conn.execute(insert(table).values(**values).on_conflict_do_nothing(index_elements=keys))


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# Batched statements come in a few fixed sizes, whatever the size of the batch. A multi-row
# ``INSERT ... RETURNING`` (SQLAlchemy's insertmanyvalues) or an ``IN (?, ?, ...)`` is a different
# SQL string for every row count, and SQLite keeps up to 128 prepared statements per pooled
# connection (a 500-row insert is ~400 KB of compiled program): with the sensor daemon's batch
# sizes varying from pass to pass (more so on a loaded machine, when sensors fall behind), every
# connection filled its cache with one-off statements and the churn fragmented the C heap, so the
# daemon's RSS crept up for as long as it ran (docs/performance.md, "Sensor daemon memory"). The
# run queue's claims and the bulk status changes use the same helpers for the same reason.
# Powers of two: a batch of n rows is at most log2(n) + n / MAX_PIECE statements.
MAX_PIECE = 256
_PIECES = tuple(2**i for i in range(MAX_PIECE.bit_length() - 1, -1, -1))  # 256, 128, ..., 2, 1


def pieces(items: list[Any]) -> Iterator[list[Any]]:
    """``items`` cut into consecutive slices whose lengths are powers of two, at most ``MAX_PIECE``."""
    start = 0
    for size in _PIECES:
        while len(items) - start >= size:
            yield items[start : start + size]
            start += size


def padded(names: list[str]) -> Iterator[list[str]]:
    """``names`` in slices of at most ``MAX_PIECE``, each padded (by repeating its last name) to a
    power of two: an ``IN`` list with a duplicate matches the same rows, with one statement per size."""
    for start in range(0, len(names), MAX_PIECE):
        chunk = names[start : start + MAX_PIECE]
        size = 1 << (len(chunk) - 1).bit_length()
        yield chunk + [chunk[-1]] * (size - len(chunk))
