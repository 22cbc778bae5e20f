"""Wake-ups across supervisors on real PostgreSQL: a standby's NOTIFY wakes the leader's daemon,
only for the leader's own schema (instances sharing a database do not wake each other)."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

from dagd.storage import Storage, open_storage
from dagd.supervisor.wakeups import WakeListener, notify_leader


@pytest.fixture
def pg_storage(pg_url: str) -> Iterator[Storage]:
    store = open_storage(pg_url)
    yield store
    store.dispose()


@pytest.mark.timeout(30)
def test_a_notify_from_a_standby_wakes_the_named_daemon_of_the_leader_on_the_same_schema(
    pg_storage: Storage,
) -> None:
    woken: queue.Queue[str] = queue.Queue()
    listener = WakeListener.for_storage(pg_storage, woken.put)
    assert listener is not None
    listener.start()
    try:
        # Notify until the listener, which connects on its own thread, has seen one.
        deadline_hits = 0
        while True:
            notify_leader(pg_storage, "run_queue")
            try:
                assert woken.get(timeout=0.5) == "run_queue"
                break
            except queue.Empty:
                deadline_hits += 1
                assert deadline_hits < 40, "the listener never woke"
        notify_leader(pg_storage, "sensor")
        assert woken.get(timeout=5) == "sensor"
        # Another schema's notification on the same channel is not ours.
        with pg_storage.sql_write() as sql:
            sql.execute("SELECT pg_notify('dagd_wake', 'some_other_schema:run_queue')")
        notify_leader(pg_storage, "scheduler")
        assert woken.get(timeout=5) == "scheduler"
        assert woken.empty()
    finally:
        listener.stop()


def test_there_is_no_listener_on_sqlite(sqlite_url: str) -> None:
    store = open_storage(sqlite_url)
    try:
        assert WakeListener.for_storage(store, lambda _name: None) is None
        notify_leader(store, "run_queue")  # nothing to do, and no error
    finally:
        store.dispose()
