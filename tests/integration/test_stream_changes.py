"""The change feed under the streams (issue #20) on real SQLite and PostgreSQL: event ids are never
reused, a transaction that commits after a later id is still read, PostgreSQL NOTIFYs on new events,
and the shared reader drops a subscriber that does not keep up instead of buffering for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from helpers.procs import wait_for

from dagd.runs.cursor import Cursor
from dagd.runs.model import RunStatus
from dagd.storage import Storage, open_storage
from dagd.storage.changes import latest_ids, read_changes
from dagd.storage.migrate import upgrade
from dagd.storage.retention import delete_runs
from dagd.storage.runs import NewRun
from dagd.supervisor.streams import StreamHub, pg_conninfo


def new_run(job_name: str = "job_a") -> NewRun:
    return NewRun(job_name=job_name, tags={}, run_config={}, priority=0, status=RunStatus.QUEUED)


def finish(storage: Storage, run_id: str) -> None:
    storage.runs.transition(run_id, RunStatus.CANCELED)


@pytest.mark.parametrize("migrated", [False, True], ids=["created", "migrated"])
def test_an_event_id_is_never_reused_after_the_newest_run_is_deleted(
    storage: Storage, migrated: bool
) -> None:
    if migrated:  # the same through the migrations (0006 rebuilds run_events on SQLite)
        with storage.write() as conn:
            for table in sa.inspect(conn).get_table_names():
                conn.execute(sa.text(f'DROP TABLE "{table}"'))
        upgrade(storage.engine)
    run = storage.runs.create(new_run())
    finish(storage, run.run_id)
    newest, _, _ = latest_ids(storage)
    delete_runs(storage, [run.run_id])
    again = storage.runs.create(new_run())
    changes = read_changes(storage, Cursor()).changes
    assert [c.run_id for c in changes] == [again.run_id]
    assert changes[0].event_id > newest, "a cursor past the deleted event would skip this one"


@pytest.mark.timeout(60)
def test_a_transaction_committing_after_a_later_id_is_still_read(pg_url: str) -> None:
    storage = open_storage(pg_url)
    try:
        early = storage.runs.create(new_run())
        cursor = Cursor().advance(read_changes(storage, Cursor()).ids, time.time())
        with storage.sql_write() as slow:  # takes its event id first...
            slow.execute(
                "INSERT INTO run_events (run_id, at, kind, status, message)"
                " VALUES (:r, clock_timestamp(), 'status', 'STARTING', 'late')",
                {"r": early.run_id},
            )
            later = storage.runs.create(new_run())  # ...and commits after this one
            batch = read_changes(storage, cursor)
            assert [c.run_id for c in batch.changes] == [later.run_id]
            cursor = cursor.advance(batch.ids, batch.now)
            assert len(cursor.gaps) == 1
        batch = read_changes(storage, cursor)
        assert [(c.run_id, c.message) for c in batch.changes] == [(early.run_id, "late")]
        assert cursor.advance(batch.ids, batch.now).gaps == {}
    finally:
        storage.dispose()


@pytest.mark.timeout(60)
def test_postgres_notifies_the_reader_on_new_events_and_logs(pg_url: str) -> None:
    import psycopg

    storage = open_storage(pg_url)
    conninfo = pg_conninfo(storage)
    assert conninfo is not None
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("LISTEN dagd_changes")
            run = storage.runs.create(new_run())
            storage.runs.append_logs(run.run_id, [(datetime.now(timezone.utc), "log", "INFO", "hello")])
            notes = {n.payload for n in conn.notifies(timeout=5, stop_after=2)}
            assert notes == {"run_events", "run_logs"}
    finally:
        storage.dispose()


@pytest.fixture
def hub(storage: Storage) -> Iterator[StreamHub]:
    hub = StreamHub(storage, max_streams=2, queue_size=2, pg_conninfo=pg_conninfo(storage))
    hub.start()
    yield hub
    hub.stop()


@pytest.mark.timeout(60)
def test_a_subscriber_that_does_not_read_is_dropped_with_bounded_memory(
    hub: StreamHub, storage: Storage
) -> None:
    with hub.subscribe("changes") as (slow, _), hub.subscribe("changes") as (fast, _):
        got: list[int] = []
        for _ in range(8):  # separate commits, each read by the hub as its own batch
            storage.runs.create(new_run())
            wait_for(lambda: _drain(fast, got), 10, "the reading subscriber to get the change")
        assert slow.behind and slow.queue.qsize() <= hub.queue_size + 1
        assert slow.get(timeout=0.1) is None, "the handler learns it fell behind"
        assert not fast.behind and len(got) == 8


def _drain(sub: object, got: list[int]) -> bool:
    from dagd.supervisor.streams import WAKE

    before = len(got)
    item = sub.get(timeout=0.05)  # type: ignore[attr-defined]
    if item is not None and item is not WAKE:
        got += [c.event_id for c in item.changes]
    return len(got) > before


def test_streams_past_the_cap_are_refused(hub: StreamHub) -> None:
    from dagd.errors import TooManyStreams

    with hub.subscribe("changes"), hub.subscribe("daemons"):
        with pytest.raises(TooManyStreams, match=r"too many open streams \(2, streams.max_streams\)"):
            with hub.subscribe("logs"):
                pass
    with hub.subscribe("logs"):
        assert hub.open_streams == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("indexed", [False, True], ids=["predicate", "job-index"])
def test_a_filtered_watcher_gets_its_changes_once_and_its_cursor_moves_past_the_others(
    hub: StreamHub, storage: Storage, monkeypatch: pytest.MonkeyPatch, indexed: bool
) -> None:
    from dagd.supervisor import streams

    monkeypatch.setattr(streams, "KEEPALIVE_SECONDS", 0.0)
    monkeypatch.setattr(streams, "IDLE_WAKE_SECONDS", 0.2)
    got: list[tuple[str, str]] = []
    positions: list[Cursor] = []
    active = {"on": True}

    def watch() -> None:
        for cursor, change in streams.watch_runs(
            hub, None, from_beginning=False, is_active=lambda: active["on"],
            matches=lambda c: c.run is not None and c.run.job_name == "b", job="b" if indexed else None,
        ):  # fmt: skip
            positions.append(cursor)
            if change is not None:
                got.append((change.run_id, change.status.value if change.status else ""))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    wait_for(lambda: positions, 10, "the watch to open")
    wanted = []
    for i in range(20):
        run = storage.runs.create(new_run("b" if i % 2 else "a"))
        if i % 2:
            wanted.append((run.run_id, "QUEUED"))
    wait_for(lambda: got == wanted, 20, "the watcher to get the 10 changes of job b")
    newest, _, _ = latest_ids(storage)
    wait_for(lambda: positions[-1].last >= newest, 10, "the keep-alive cursor to pass the last change")
    active["on"] = False
    thread.join(timeout=5)
    assert got == wanted


@pytest.mark.timeout(60)
def test_with_no_watcher_open_the_hub_reads_event_ids_only(
    hub: StreamHub, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy feed nobody watches costs the supervisor an id read per pass, not a read and decode of
    every event's run (57% of its Python time during 10,000-run batch submissions)."""
    from dagd.supervisor import streams

    calls: list[bool] = []

    def spy(*args: object, ids_only: bool = False, **kwargs: object) -> object:
        calls.append(ids_only)
        return read_changes(*args, ids_only=ids_only, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(streams, "read_changes", spy)
    assert hub._ready.wait(10), "the hub took its starting position"
    runs = [storage.runs.create(new_run()) for _ in range(5)]
    wait_for(lambda: hub._cursor.last >= latest_ids(storage)[0], 10, "the hub to pass the new events")
    assert runs and calls and all(calls), f"the hub read whole changes with nobody watching: {calls}"


@pytest.mark.timeout(60)
def test_a_watcher_opening_during_an_ids_only_read_gets_the_changes_of_that_read(
    hub: StreamHub, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub's position moves past an ids-only batch only if still nobody watches; a watcher that
    opened meanwhile (its position before the batch) gets the batch read again, whole."""
    import contextlib

    from dagd.supervisor import streams

    opened: list[object] = []
    stack = contextlib.ExitStack()

    def trap(*args: object, ids_only: bool = False, **kwargs: object) -> object:
        batch = read_changes(*args, ids_only=ids_only, **kwargs)  # type: ignore[arg-type]
        if ids_only and batch.ids and not opened:
            opened.append(stack.enter_context(hub.subscribe("changes")))
        return batch

    monkeypatch.setattr(streams, "read_changes", trap)
    assert hub._ready.wait(10), "the hub took its starting position"
    with stack:
        run = storage.runs.create(new_run())
        wait_for(lambda: opened, 10, "a watcher to open during the hub's ids-only read")
        sub, _position = opened[0]  # type: ignore[misc]
        got: list[int] = []
        wait_for(lambda: _drain(sub, got), 10, "the watcher to get the change read ids-only")
        assert got == [e.id for e in [_newest_event(storage, run.run_id)]]


def _newest_event(storage: Storage, run_id: str) -> object:
    with storage.engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT id FROM run_events WHERE run_id = :r ORDER BY id DESC LIMIT 1"), {"r": run_id}
        ).one()
