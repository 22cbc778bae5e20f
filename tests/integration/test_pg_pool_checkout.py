"""The PostgreSQL pool's checkout check (issue #20: ``pool_pre_ping`` cost a round trip a checkout).

A pooled connection the server closed (``pg_terminate_backend``, as a database restart or an idle
timeout does) must be replaced before use, transparently; and checking out must not ask the
server anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from helpers.procs import wait_for

from dagd.storage import Storage, open_storage


@pytest.fixture
def pg_storage(pg_url: str) -> Iterator[Storage]:
    store = open_storage(pg_url, pool_size=3)
    yield store
    store.dispose()


def backend_pids(storage: Storage, count: int) -> set[int]:
    """Check out ``count`` connections at once (so the pool holds that many), note each one's
    server process id, and give them back to the pool."""
    conns = [storage.engine.raw_connection() for _ in range(count)]
    pids = set()
    for conn in conns:
        cursor = conn.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        pids.add(cursor.fetchone()[0])
        conn.rollback()
    for conn in conns:
        conn.close()
    return pids


def terminate(pg_engine: sa.Engine, pids: set[int]) -> None:
    with pg_engine.connect() as conn:
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    def all_gone() -> bool:
        with pg_engine.connect() as conn:
            alive = conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"), {"pids": list(pids)}
            ).scalar()
        return alive == 0

    wait_for(all_gone, 10, "the terminated backends to exit")


@pytest.mark.timeout(60)
def test_a_pooled_connection_killed_server_side_is_replaced_transparently(
    pg_storage: Storage, pg_engine: sa.Engine
) -> None:
    pids = backend_pids(pg_storage, 3)
    assert len(pids) == 3
    terminate(pg_engine, pids)
    # Every pooled connection is dead; each of the next transactions gets a live one, no error.
    for _ in range(6):
        with pg_storage.sql_read() as sql:
            (pid,) = sql.rows("SELECT pg_backend_pid()")[0]
        assert pid not in pids
    assert pg_storage.runs.get("no-such-run") is None  # the stores' own path, too


@pytest.mark.timeout(60)
def test_checkout_asks_the_server_nothing(pg_storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ping: a checkout of a healthy pooled connection sends no statement at all."""
    backend_pids(pg_storage, 1)  # a connection in the pool
    pings: list[Any] = []
    monkeypatch.setattr(pg_storage.engine.dialect, "do_ping", lambda conn: pings.append(conn) or True)
    sent: list[str] = []
    conn = pg_storage.engine.raw_connection()
    try:
        real = conn.dbapi_connection
        assert real is not None
        original = real.execute
        monkeypatch.setattr(real, "execute", lambda *a, **k: sent.append(str(a[0])) or original(*a, **k))
    finally:
        conn.close()
    for _ in range(5):
        pg_storage.engine.raw_connection().close()
    assert pings == [] and sent == []


# -- the daemons' own connections (sql.DirectDatabase) take the same check ----------------------------


@pytest.fixture
def direct(pg_url: str, pg_storage: Storage) -> Iterator[Any]:
    from dagd.storage.database import DirectDatabase

    db = DirectDatabase(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    yield db
    db.dispose()


def direct_pids(db: Any, count: int) -> set[int]:
    """``count`` connections into the DirectDatabase's idle list; their server process ids."""
    conns = [db._checkout() for _ in range(count)]
    pids = set()
    for conn in conns:
        pids.add(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        conn.rollback()
    for conn in conns:
        db._checkin(conn)
    return pids


@pytest.mark.timeout(60)
def test_a_daemons_idle_connection_killed_server_side_is_replaced_transparently(
    direct: Any, pg_engine: sa.Engine
) -> None:
    pids = direct_pids(direct, 3)
    assert len(pids) == 3
    terminate(pg_engine, pids)
    for _ in range(6):
        with direct.sql_read() as sql:
            (pid,) = sql.rows("SELECT pg_backend_pid()")[0]
        assert pid not in pids


@pytest.mark.timeout(60)
def test_a_daemons_connection_is_reused_without_a_query(direct: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    direct_pids(direct, 1)
    (conn,) = direct._idle
    sent: list[str] = []
    original = conn.execute
    monkeypatch.setattr(conn, "execute", lambda *a, **k: sent.append(str(a[0])) or original(*a, **k))
    for _ in range(5):
        assert direct._checkout() is conn
        direct._checkin(conn)
    assert sent == []
