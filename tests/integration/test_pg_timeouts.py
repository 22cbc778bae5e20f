"""No query hangs forever on PostgreSQL: every connection (the supervisor's SQLAlchemy pool and a
daemon's own driver connections) carries ``statement_timeout`` and ``lock_timeout``, so a store call
stuck behind another connection's lock fails as storage unavailable within the bound, and the
connection stays usable. Real PostgreSQL; the lock is held by a separate connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import yaml

from dagd.errors import StorageUnavailable
from dagd.instance.instance import Instance
from dagd.runs.model import RunStatus
from dagd.storage.database import Database, DirectDatabase
from dagd.storage.engine import open_storage
from dagd.storage.runs import NewRun

BOUND = 1.0  # statement_timeout for these tests; lock_timeout is half of it
SLACK = 3.0  # a loaded 2-core machine; without the timeouts the call waits until the lock goes


def driver_url(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


@pytest.fixture(params=["supervisor", "daemon"])
def db(request: pytest.FixtureRequest, pg_url: str) -> Iterator[Database]:
    """The same schema through the supervisor's engine and through a daemon's connections."""
    supervisor = open_storage(pg_url, pg_statement_timeout_seconds=BOUND)
    if request.param == "supervisor":
        yield supervisor
    else:
        daemon = DirectDatabase(pg_url, pg_statement_timeout_seconds=BOUND)
        yield daemon
        daemon.dispose()
    supervisor.dispose()


@pytest.fixture
def locker(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(driver_url(pg_url), connect_timeout=5)
    yield conn
    conn.rollback()
    conn.close()


def fails_within_bound(call: Any) -> str:
    began = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        call()
    assert time.monotonic() - began < BOUND + SLACK
    return str(info.value)


def test_a_store_call_behind_another_connections_lock_fails_within_the_bound(
    db: Database, locker: psycopg.Connection[Any]
) -> None:
    run = db.runs.create(NewRun(job_name="j", tags={}, run_config={}, priority=0, status=RunStatus.QUEUED))
    locker.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")  # held until locker rolls back
    message = fails_within_bound(lambda: db.runs.get(run.run_id))
    assert message.startswith("storage unavailable:") and "lock timeout" in message
    fails_within_bound(
        lambda: db.runs.create(
            NewRun(job_name="j", tags={}, run_config={}, priority=0, status=RunStatus.QUEUED)
        )
    )
    locker.rollback()
    # The timed-out connections were rolled back, not broken: the next calls just work.
    assert db.runs.get(run.run_id) == run
    db.runs.create(NewRun(job_name="j", tags={}, run_config={}, priority=0, status=RunStatus.QUEUED))


def test_a_row_lock_held_by_another_connection_fails_a_write_within_the_bound(
    db: Database, locker: psycopg.Connection[Any]
) -> None:
    db.set_setting("k", 1)
    locker.execute("SELECT value FROM settings WHERE key = 'k' FOR UPDATE")
    fails_within_bound(lambda: db.set_setting("k", 2))
    assert db.get_setting("k") == 1  # reads are not blocked by a row lock
    locker.rollback()
    db.set_setting("k", 2)
    assert db.get_setting("k") == 2


def test_a_slow_statement_is_canceled_at_the_statement_timeout(db: Database) -> None:
    def sleep() -> None:
        with db.sql_read() as sql:
            sql.scalar("SELECT pg_sleep(30)")

    assert "statement timeout" in fails_within_bound(sleep)
    assert db.get_setting("missing") is None


def test_an_instances_storage_bounds_statements_below_the_heartbeat_timeout(home: Any, pg_url: str) -> None:
    (home / "dagd.yaml").write_text(
        yaml.safe_dump(
            {"storage": {"postgres": {"url": pg_url}}, "daemons": {"heartbeat_timeout_seconds": 8}}
        )
    )
    supervisor = Instance.load(home)
    daemon = Instance.load(home)
    daemon.direct_storage = True  # as from_handoff makes it
    for instance in (supervisor, daemon):
        storage = instance.storage
        try:
            with storage.sql_read() as sql:
                assert (sql.scalar("SHOW statement_timeout"), sql.scalar("SHOW lock_timeout")) == ("4s", "2s")
            assert storage.longest_wait_seconds == 5.0  # the connect timeout is longer still
        finally:
            storage.dispose()
