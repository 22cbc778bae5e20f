"""The daemons' storage without SQLAlchemy (``sql.DirectDatabase``), next to the supervisor's.

Both run the same store code, so the storage suite already covers the queries on both databases.
These tests cover what ``DirectDatabase`` owns: its connections (SQLite settings, a dead
PostgreSQL connection replaced), its error mapping and rollback, and that rows written through
either one, or by SQLAlchemy itself, read the same through the other (the stored text of a
timestamp on SQLite must match to the character, or a tick would not be found again).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from helpers.procs import wait_for

from dagd.errors import StorageUnavailable
from dagd.runs.model import RunStatus
from dagd.storage.database import DirectDatabase
from dagd.storage.instigators import TICK_STARTED
from dagd.storage.runs import NewRun
from dagd.storage.schema import runs, ticks

# A scheduled time in another zone than UTC, with microseconds, to catch any drift in the format.
SCHEDULED = datetime(2026, 3, 29, 2, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))


@pytest.fixture
def direct(storage: Any, storage_url: str) -> Iterator[DirectDatabase]:
    """A daemon's storage on the same database as ``storage`` (which created the schema)."""
    db = DirectDatabase(storage_url)
    yield db
    db.dispose()


def test_a_run_stored_by_a_daemon_reads_the_same_through_sqlalchemy(
    storage: Any, direct: DirectDatabase
) -> None:
    run = direct.runs.create(
        NewRun(job_name="j", tags={"team": "a"}, run_config={"x": 1}, priority=3, status=RunStatus.QUEUED)
    )
    with storage.read() as conn:
        row = conn.execute(sa.select(runs).where(runs.c.run_id == run.run_id)).one()
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
    assert created == run.created_at
    assert (row.status, row.priority, row.tags) == ("QUEUED", 3, '{"team": "a"}')
    assert storage.runs.get(run.run_id) == direct.runs.get(run.run_id) == run


def test_a_tick_stored_by_sqlalchemy_is_found_by_a_daemon_at_its_scheduled_time(
    storage: Any, direct: DirectDatabase
) -> None:
    """Ticks written before this storage layer existed (by SQLAlchemy) must still be found, and
    must still block a second tick for the same time: both compare the stored timestamp."""
    with storage.write() as conn:
        conn.execute(
            ticks.insert().values(
                kind="schedule",
                name="s",
                scheduled_time=SCHEDULED.astimezone(timezone.utc),
                status=TICK_STARTED,
                cursor_updated=False,
                run_ids="[]",
                started_at=datetime.now(timezone.utc),
            )
        )
    found = direct.instigators.tick_at("schedule", "s", SCHEDULED)
    assert found is not None and found.scheduled_time == SCHEDULED
    assert direct.instigators.create_tick("schedule", "s", scheduled_time=SCHEDULED, epoch=None) is None
    assert found.cursor_updated is False


def test_a_failed_transaction_leaves_nothing_and_the_connection_is_reused(direct: DirectDatabase) -> None:
    with pytest.raises(RuntimeError), direct.sql_write() as sql:
        sql.execute("INSERT INTO settings (key, value) VALUES ('k', '1')")
        raise RuntimeError("boom")
    assert direct.get_setting("k") is None
    direct.set_setting("k", {"a": 1})
    assert direct.get_setting("k") == {"a": 1}


def test_sqlite_connections_use_wal_and_the_busy_timeout(sqlite_url: str, storage: Any) -> None:
    db = DirectDatabase(sqlite_url)
    try:
        with db.sql_read() as sql:
            assert sql.scalar("PRAGMA journal_mode") == "wal"
            assert sql.scalar("PRAGMA busy_timeout") == 30_000
            assert sql.scalar("PRAGMA synchronous") == 1  # NORMAL
    finally:
        db.dispose()


@pytest.fixture
def pg_storage(pg_url: str) -> Iterator[Any]:
    from dagd.storage import open_storage

    store = open_storage(pg_url)
    yield store
    store.dispose()


def test_a_postgres_connection_killed_while_idle_is_replaced_without_an_error(
    pg_url: str, pg_storage: Any
) -> None:
    db = DirectDatabase(pg_url)
    try:
        with db.sql_read() as sql:
            before = sql.scalar("SELECT pg_backend_pid()")
        with pg_storage.sql_write() as sql:
            assert sql.scalar("SELECT pg_terminate_backend(:pid)", {"pid": before}) is True

        def gone() -> bool:  # pg_terminate_backend only signals: the backend ends a moment later
            with pg_storage.sql_read() as sql:
                return not sql.scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid", {"pid": before}
                )

        wait_for(gone, 10, "the killed backend to end")
        with db.sql_read() as sql:  # the idle connection is dead: checked, dropped, replaced
            after = sql.scalar("SELECT pg_backend_pid()")
        assert after != before
    finally:
        db.dispose()


def test_an_unreachable_postgres_is_storage_unavailable_in_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the socket is closed
    db = DirectDatabase(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")
    with pytest.raises(StorageUnavailable) as caught:
        db.ping()
    assert str(caught.value).startswith("storage unavailable: ")
    assert "\n" not in str(caught.value)
