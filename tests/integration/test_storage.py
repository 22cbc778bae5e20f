"""Storage on real databases: every test runs on SQLite and PostgreSQL (the ``storage_url`` fixture).

What must hold: the schema is created once at head and an outdated one is refused; runs, tags,
events, logs, heartbeats and settings round-trip; a status change is a compare-and-set, so many
threads or processes racing to claim the same runs claim each exactly once.
"""

from __future__ import annotations

import multiprocessing
import pathlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from helpers.procs import wait_for
from helpers.tcp_proxy import proxy_to

from dagd.errors import InvalidTransition, NotFound, SchemaOutOfDate, StorageUnavailable
from dagd.runs.model import FINISHED_STATUSES, RunFilter, RunStatus
from dagd.storage import Storage, open_storage
from dagd.storage.daemons import MAX_ERRORS, Heartbeat
from dagd.storage.migrate import head_revision, upgrade
from dagd.storage.runs import NewRun
from dagd.storage.schema import run_events

Q = RunStatus.QUEUED


def new_run(
    job_name: str = "job_a",
    *,
    tags: dict[str, str] | None = None,
    status: RunStatus = Q,
    run_config: dict[str, Any] | None = None,
    priority: int = 0,
    idempotency_key: str | None = None,
    code_location: str | None = None,
) -> NewRun:
    return NewRun(
        job_name=job_name,
        tags=tags or {},
        run_config=run_config or {},
        priority=priority,
        status=status,
        code_location=code_location,
        idempotency_key=idempotency_key,
    )


def create_runs(storage: Storage, count: int, **kwargs: Any) -> list[str]:
    """``count`` runs in submission order; returns their ids."""
    return [storage.runs.create(new_run(**kwargs)).run_id for _ in range(count)]


def alembic_versions(storage: Storage) -> list[str]:
    with storage.read() as conn:
        return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def event_counts(storage: Storage) -> Counter[str]:
    query = sa.select(run_events.c.run_id, sa.func.count()).group_by(run_events.c.run_id)
    with storage.read() as conn:
        return Counter({run_id: n for run_id, n in conn.execute(query)})


@pytest.fixture
def capture_sql() -> Iterator[list[str]]:
    """Every SQL statement any engine executes while the fixture is active."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.strip())

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)


# -- schema versions ------------------------------------------------------------------------------


def test_fresh_database_is_created_at_head(storage: Storage) -> None:
    assert alembic_versions(storage) == [head_revision()]
    with storage.read() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"runs", "run_tags", "run_events", "run_logs", "daemon_heartbeats", "leases", "settings"} <= tables


def reflect_schema(conn: sa.Connection) -> dict[str, Any]:
    """Everything about each table that a migration could get wrong, as comparable plain data."""
    inspector = sa.inspect(conn)
    out: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")), c.get("autoincrement"))
                for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), i["unique"]) for i in inspector.get_indexes(table)
            ),
            "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in inspector.get_foreign_keys(table)
            ),
        }
    return out


def test_a_fresh_database_has_exactly_the_schema_the_migrations_build(storage: Storage) -> None:
    """Fresh databases are created from the table definitions; replaying the migrations must agree."""
    with storage.read() as conn:
        created = reflect_schema(conn)
    with storage.write() as conn:
        for table in sa.inspect(conn).get_table_names():
            conn.execute(sa.text(f'DROP TABLE "{table}"'))
    upgrade(storage.engine)  # every migration, from an empty database, through alembic
    with storage.read() as conn:
        migrated = reflect_schema(conn)

    assert "runs" in created and "alembic_version" in created
    assert migrated == created
    assert alembic_versions(storage) == [head_revision()]


def test_reopening_a_database_at_head_changes_nothing(
    storage: Storage, storage_url: str, capture_sql: list[str]
) -> None:
    run = storage.runs.create(new_run())
    capture_sql.clear()

    again = open_storage(storage_url)
    try:
        writes = [
            s for s in capture_sql if s.split()[0].upper() in {"CREATE", "ALTER", "INSERT", "UPDATE", "DROP"}
        ]
        assert writes == []
        assert alembic_versions(again) == [head_revision()]
        assert again.runs.require(run.run_id) == run
    finally:
        again.dispose()


def open_together(url: str, openers: int) -> list[str]:
    """``openers`` threads open storage at ``url`` at the same moment and each stores a run."""
    start = threading.Barrier(openers)

    def open_and_create() -> str:
        start.wait(timeout=30)
        storage = open_storage(url)
        try:
            return storage.runs.create(new_run()).run_id
        finally:
            storage.dispose()

    with ThreadPoolExecutor(openers) as pool:
        return [f.result() for f in [pool.submit(open_and_create) for _ in range(openers)]]


@pytest.mark.timeout(60)
def test_concurrent_first_opens_create_the_schema_once(storage_url: str) -> None:
    run_ids = open_together(storage_url, 4)

    storage = open_storage(storage_url)
    try:
        assert alembic_versions(storage) == [head_revision()]
        assert {r.run_id for r in storage.runs.list(RunFilter())} == set(run_ids)
    finally:
        storage.dispose()


@pytest.mark.timeout(120)
def test_openers_racing_on_a_new_sqlite_file_all_succeed(tmp_path: pathlib.Path) -> None:
    """Regression: switching a new file to WAL needs its exclusive lock, and SQLite answered
    "database is locked" at once instead of waiting on the busy timeout (seen in CI: 1 in 4 openers
    failed under load; 1 round in 15 of 8 openers failed on a quiet machine)."""
    for round_ in range(10):
        run_ids = open_together(f"sqlite:///{tmp_path / f'race{round_}.db'}", 8)
        assert len(set(run_ids)) == 8


def test_fresh_database_is_refused_without_create(storage_url: str) -> None:
    with pytest.raises(SchemaOutOfDate, match="dagctl instance migrate"):
        open_storage(storage_url, create=False)


@pytest.mark.parametrize(
    ("tamper", "named_revision"),
    [
        ("UPDATE alembic_version SET version_num = '0000_older'", "0000_older"),
        ("DELETE FROM alembic_version", "none"),
    ],
    ids=["older-revision", "version-row-deleted"],
)
def test_outdated_schema_is_refused(
    storage: Storage, storage_url: str, tamper: str, named_revision: str
) -> None:
    run = storage.runs.create(new_run())
    with storage.write() as conn:
        conn.execute(sa.text(tamper))

    with pytest.raises(SchemaOutOfDate) as refused:
        open_storage(storage_url)

    message = str(refused.value)
    assert "dagctl instance migrate" in message
    assert f"at revision {named_revision}," in message
    assert head_revision() in message
    assert "\n" not in message
    # Refusing must not touch the database.
    assert storage.runs.require(run.run_id) == run


def test_upgrade_refuses_unversioned_database_with_tables(storage: Storage) -> None:
    """Regression: ``dagctl instance migrate`` on tables without a version row crashed with a raw
    "table runs already exists" from CREATE TABLE instead of refusing with a one-line reason."""
    run = storage.runs.create(new_run())
    with storage.write() as conn:
        conn.execute(sa.text("DELETE FROM alembic_version"))

    with pytest.raises(SchemaOutOfDate, match="no schema version") as refused:
        upgrade(storage.engine)

    assert "\n" not in str(refused.value)
    assert alembic_versions(storage) == []
    assert storage.runs.require(run.run_id) == run


def test_upgrade_at_head_is_a_no_op(storage: Storage) -> None:
    assert upgrade(storage.engine) == (head_revision(), head_revision())
    assert alembic_versions(storage) == [head_revision()]


# -- runs: creation and reads ---------------------------------------------------------------------


def test_create_get_require_round_trip(storage: Storage) -> None:
    tags = {"team": "data", "dagd/priority": "3", "note": "naïve ☃ = value"}
    run_config = {"ops": {"load": {"config": {"n": 3, "paths": ["a", "b"], "dry": False, "x": None}}}}
    before = datetime.now(timezone.utc)
    created = storage.runs.create(
        new_run("etl", tags=tags, run_config=run_config, priority=3, code_location="repo_a")
    )
    after = datetime.now(timezone.utc)

    fetched = storage.runs.get(created.run_id)
    assert fetched == created
    assert storage.runs.require(created.run_id) == created
    assert fetched.job_name == "etl"
    assert fetched.status is Q
    assert fetched.tags == tags
    assert fetched.run_config == run_config
    assert fetched.priority == 3
    assert fetched.code_location == "repo_a"
    assert fetched.started_at is None and fetched.ended_at is None
    assert fetched.created_at.utcoffset() == timedelta(0)
    assert before <= fetched.created_at <= after

    [event] = storage.runs.events(created.run_id)
    assert (event.kind, event.status, event.message) == ("status", Q, "submitted")
    assert event.at.utcoffset() == timedelta(0)


def test_unknown_run_is_none_or_not_found(storage: Storage) -> None:
    storage.runs.create(new_run())
    assert storage.runs.get("no-such-run") is None
    with pytest.raises(NotFound, match="no-such-run"):
        storage.runs.require("no-such-run")


def test_same_idempotency_key_creates_one_run(storage: Storage) -> None:
    first = storage.runs.create(new_run(idempotency_key="sched:2024-01-01"))
    second = storage.runs.create(new_run("other_job", idempotency_key="sched:2024-01-01"))
    other = storage.runs.create(new_run(idempotency_key="sched:2024-01-02"))

    assert second.run_id == first.run_id
    assert second.job_name == "job_a"
    assert other.run_id != first.run_id
    assert sorted(r.run_id for r in storage.runs.list(RunFilter())) == sorted([first.run_id, other.run_id])
    assert event_counts(storage)[first.run_id] == 1


@pytest.mark.timeout(60)
def test_concurrent_creates_with_same_idempotency_key_create_one_run(
    storage: Storage, storage_url: str
) -> None:
    start = threading.Barrier(6)

    def submit() -> str:
        own = open_storage(storage_url, create=False)
        try:
            start.wait(timeout=30)
            return own.runs.create(new_run(idempotency_key="backfill:42")).run_id
        finally:
            own.dispose()

    with ThreadPoolExecutor(6) as pool:
        run_ids = {f.result() for f in [pool.submit(submit) for _ in range(6)]}

    assert len(run_ids) == 1
    assert [r.run_id for r in storage.runs.list(RunFilter())] == list(run_ids)


def test_a_batch_is_stored_in_order_exactly_as_single_creates_are(storage: Storage) -> None:
    """create_many writes through the driver's cursor: rows must read back as SQLAlchemy wrote them."""
    single = storage.runs.create(new_run("etl", tags={"team": "a"}, idempotency_key="k-single"))
    batch = storage.runs.create_many(
        [
            new_run("etl", tags={"team": "b", "dagd/priority": "2"}, priority=2, run_config={"n": 1}),
            new_run("load", code_location='{"name": "repo"}', idempotency_key="k-batch"),
            new_run("etl", tags={"team": "b"}, status=RunStatus.NOT_STARTED),
        ]
    )

    assert [r.seq for r in batch] == sorted(r.seq for r in batch)
    assert batch[0].seq > single.seq
    for created in [single, *batch]:
        assert storage.runs.get(created.run_id) == created
        [event] = storage.runs.events(created.run_id)
        assert (event.status, event.message) == (created.status, "submitted")
    team_b = storage.runs.list(RunFilter(tags={"team": "b"}))
    assert {r.run_id for r in team_b} == {batch[0].run_id, batch[2].run_id}
    # Idempotency keys stored by the batch are found again; a retry returns the stored run.
    again = storage.runs.create_many([new_run("other", idempotency_key="k-batch"), new_run("etl")])
    assert again[0] == batch[1]
    assert again[1].run_id not in {r.run_id for r in batch}


def test_a_batch_with_a_clashing_key_stores_the_rest(storage: Storage) -> None:
    """A key inserted by another writer between the lookup and the insert: no run is lost or doubled."""
    taken = storage.runs.create(new_run(idempotency_key="raced"))
    # Simulate the race: the batch's lookup of existing keys misses the stored one.
    original = storage.runs.by_idempotency_keys
    storage.runs.by_idempotency_keys = lambda keys: {}  # type: ignore[method-assign]
    try:
        created = storage.runs.create_many(
            [new_run("a"), new_run("b", idempotency_key="raced"), new_run("c")]
        )
    finally:
        storage.runs.by_idempotency_keys = original  # type: ignore[method-assign]

    assert [r.job_name for r in created] == ["a", "job_a", "c"]
    assert created[1].run_id == taken.run_id
    assert len(storage.runs.list(RunFilter())) == 3


@pytest.mark.timeout(60)
def test_creating_during_a_postgres_outage_is_storage_unavailable_then_recovers(pg_url: str) -> None:
    """The driver-cursor path maps a dead connection to StorageUnavailable and never reuses it."""
    url = sa.make_url(pg_url)
    with proxy_to(url.host or "127.0.0.1", url.port or 5432) as proxy:
        storage = open_storage(pg_url.replace(f"{url.host}:{url.port}", f"127.0.0.1:{proxy.port}"))
        try:
            first = storage.runs.create(new_run())
            proxy.outage()
            with pytest.raises(StorageUnavailable):
                storage.runs.create(new_run())
            proxy.restore()

            def create_after() -> Any:
                try:
                    return storage.runs.create(new_run("after"))
                except StorageUnavailable:
                    return None

            second = wait_for(create_after, 20, "storage to recover after the outage", interval=0.2)
            assert [r.run_id for r in storage.runs.list(RunFilter())] == [second.run_id, first.run_id]
        finally:
            storage.dispose()


# -- runs: status changes -------------------------------------------------------------------------


def test_transition_is_a_compare_and_set(storage: Storage) -> None:
    run_id = storage.runs.create(new_run()).run_id

    claimed = storage.runs.transition(run_id, RunStatus.STARTING, expected=(Q,), message="claimed by a")
    lost = storage.runs.transition(run_id, RunStatus.STARTING, expected=(Q,), message="claimed by b")

    assert claimed is not None and claimed.status is RunStatus.STARTING
    assert lost is None
    assert storage.runs.require(run_id).status is RunStatus.STARTING
    assert [e.message for e in storage.runs.events(run_id)] == ["submitted", "claimed by a"]


def test_transition_sets_started_and_ended_and_records_each_event(storage: Storage) -> None:
    run_id = storage.runs.create(new_run()).run_id
    steps = [
        (RunStatus.STARTING, "launched"),
        (RunStatus.STARTED, "worker up"),
        (RunStatus.SUCCESS, "done"),
    ]
    seen = {}
    for to, message in steps:
        run = storage.runs.transition(run_id, to, message=message)
        assert run is not None and run.status is to
        seen[to] = run

    assert seen[RunStatus.STARTING].started_at is None
    started_at = seen[RunStatus.STARTED].started_at
    assert started_at is not None and started_at.utcoffset() == timedelta(0)
    assert seen[RunStatus.STARTED].ended_at is None
    done = seen[RunStatus.SUCCESS]
    assert done.started_at == started_at
    assert done.ended_at is not None and done.ended_at >= started_at
    events = storage.runs.events(run_id)
    assert [(e.kind, e.status, e.message) for e in events] == [
        ("status", Q, "submitted"),
        ("status", RunStatus.STARTING, "launched"),
        ("status", RunStatus.STARTED, "worker up"),
        ("status", RunStatus.SUCCESS, "done"),
    ]


@pytest.mark.parametrize("finished", sorted(FINISHED_STATUSES), ids=lambda s: s.value)
def test_every_finished_status_sets_ended_at(storage: Storage, finished: RunStatus) -> None:
    run_id = storage.runs.create(new_run()).run_id
    storage.runs.transition(run_id, RunStatus.STARTING)
    run = storage.runs.transition(run_id, finished, error="boom" if finished is RunStatus.FAILURE else None)
    assert run is not None and run.status is finished
    assert run.ended_at is not None and run.ended_at.utcoffset() == timedelta(0)
    assert storage.runs.events(run_id)[-1].status is finished


def test_illegal_explicit_transition_raises(storage: Storage) -> None:
    run_id = storage.runs.create(new_run()).run_id
    storage.runs.transition(run_id, RunStatus.STARTING)
    storage.runs.transition(run_id, RunStatus.SUCCESS)

    with pytest.raises(InvalidTransition, match="SUCCESS to STARTED"):
        storage.runs.transition(run_id, RunStatus.STARTED, expected=(RunStatus.SUCCESS,))

    assert storage.runs.require(run_id).status is RunStatus.SUCCESS
    assert len(storage.runs.events(run_id)) == 3


def test_transition_of_unknown_run_raises_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound, match="no-such-run"):
        storage.runs.transition("no-such-run", RunStatus.STARTING, expected=(Q,))
    with pytest.raises(NotFound, match="no-such-run"):
        storage.runs.transition("no-such-run", RunStatus.CANCELED)


def claim_all(url: str, run_ids: list[str], worker: str, start: Any) -> list[str]:
    """One claimer with its own storage: try to move every run QUEUED -> STARTING."""
    storage = open_storage(url, create=False)
    try:
        start.wait(timeout=30)
        return [
            run_id
            for run_id in run_ids
            if storage.runs.transition(
                run_id, RunStatus.STARTING, expected=(Q,), message=f"claimed by {worker}"
            )
            is not None
        ]
    finally:
        storage.dispose()


def claim_all_in_process(url: str, run_ids: list[str], worker: str, start: Any, results: Any) -> None:
    try:
        results.put((worker, claim_all(url, run_ids, worker, start)))
    except BaseException as exc:
        results.put((worker, f"{type(exc).__name__}: {exc}"))
        raise


def assert_claimed_exactly_once(storage: Storage, run_ids: list[str], claims: dict[str, list[str]]) -> None:
    counts = Counter(run_id for claimed in claims.values() for run_id in claimed)
    assert {r for r, n in counts.items() if n > 1} == set(), "runs claimed more than once"
    assert set(counts) == set(run_ids), "runs nobody claimed"
    assert {r.status for r in storage.runs.list(RunFilter(limit=len(run_ids)))} == {RunStatus.STARTING}
    # The losers of each race must not have written an event.
    assert event_counts(storage) == Counter({run_id: 2 for run_id in run_ids})
    for worker, claimed in claims.items():
        for run_id in claimed[:3]:
            assert storage.runs.events(run_id)[-1].message == f"claimed by {worker}"


@pytest.mark.timeout(60)
def test_threads_with_own_storage_claim_each_run_once(storage: Storage, storage_url: str) -> None:
    run_ids = create_runs(storage, 50)
    start = threading.Barrier(8)

    with ThreadPoolExecutor(8) as pool:
        futures = {f"t{i}": pool.submit(claim_all, storage_url, run_ids, f"t{i}", start) for i in range(8)}
        claims = {worker: future.result() for worker, future in futures.items()}

    assert_claimed_exactly_once(storage, run_ids, claims)


@pytest.mark.timeout(60)
def test_processes_claim_each_run_once(storage: Storage, storage_url: str) -> None:
    run_ids = create_runs(storage, 50)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(3)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=claim_all_in_process, args=(storage_url, run_ids, f"p{i}", start, results))
        for i in range(3)
    ]
    try:
        for proc in procs:
            proc.start()
        claims: dict[str, Any] = dict(results.get(timeout=45) for _ in procs)
        for proc in procs:
            proc.join(timeout=10)
            assert proc.exitcode == 0, f"claimer pid {proc.pid} exited with {proc.exitcode}"
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)

    failures = {w: c for w, c in claims.items() if isinstance(c, str)}
    assert failures == {}
    assert_claimed_exactly_once(storage, run_ids, claims)


def test_bulk_transition_moves_only_runs_in_the_expected_status(storage: Storage) -> None:
    queued = create_runs(storage, 200)
    starting = create_runs(storage, 3)
    for run_id in starting:
        storage.runs.transition(run_id, RunStatus.STARTING, expected=(Q,))

    changed = storage.runs.bulk_transition(queued + starting, Q, RunStatus.CANCELED, "canceled by user")

    assert sorted(changed) == sorted(queued)
    runs = {r.run_id: r for r in storage.runs.list(RunFilter(limit=1000))}
    assert {runs[r].status for r in queued} == {RunStatus.CANCELED}
    assert all(runs[r].ended_at is not None for r in queued)
    assert {runs[r].status for r in starting} == {RunStatus.STARTING}
    assert all(runs[r].ended_at is None for r in starting)
    counts = event_counts(storage)
    assert {counts[r] for r in queued} == {2}
    assert {counts[r] for r in starting} == {2}
    assert storage.runs.events(queued[0])[-1].message == "canceled by user"

    assert storage.runs.bulk_transition(queued, Q, RunStatus.CANCELED, "again") == []


def test_bulk_transition_refuses_an_illegal_move(storage: Storage) -> None:
    run_ids = create_runs(storage, 2)
    with pytest.raises(InvalidTransition, match="SUCCESS to QUEUED"):
        storage.runs.bulk_transition(run_ids, RunStatus.SUCCESS, Q, "nope")


# -- runs: listing --------------------------------------------------------------------------------


def test_list_is_newest_first_and_filters(storage: Storage) -> None:
    a1 = storage.runs.create(new_run("job_a", tags={"team": "x", "env": "prod"})).run_id
    b1 = storage.runs.create(new_run("job_b", tags={"team": "x", "env": "dev"})).run_id
    a2 = storage.runs.create(new_run("job_a", tags={"team": "y", "env": "prod"})).run_id
    b2 = storage.runs.create(new_run("job_b", tags={"team": "x"})).run_id
    a3 = storage.runs.create(new_run("job_a")).run_id
    storage.runs.transition(b1, RunStatus.STARTING)
    storage.runs.transition(a2, RunStatus.CANCELED)

    def ids(**filter_args: Any) -> list[str]:
        return [r.run_id for r in storage.runs.list(RunFilter(**filter_args))]

    assert ids() == [a3, b2, a2, b1, a1]
    assert ids(statuses=[Q]) == [a3, b2, a1]
    assert ids(statuses=[RunStatus.STARTING, RunStatus.CANCELED]) == [a2, b1]
    assert ids(job_name="job_a") == [a3, a2, a1]
    assert ids(tags={"team": "x"}) == [b2, b1, a1]
    assert ids(tags={"team": "x", "env": "prod"}) == [a1]
    assert ids(tags={"team": "y", "env": "dev"}) == []
    assert ids(job_name="job_b", statuses=[Q], tags={"team": "x"}) == [b2]
    assert ids(limit=2) == [a3, b2]


def test_list_pagination_with_before_seq_visits_every_run_once(storage: Storage) -> None:
    run_ids = create_runs(storage, 23)
    pages: list[list[str]] = []
    cursor: int | None = None
    while True:
        page = storage.runs.list(RunFilter(limit=5, before_seq=cursor))
        if not page:
            break
        assert len(pages) < 10, "pagination does not terminate"
        pages.append([r.run_id for r in page])
        cursor = page[-1].seq

    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [r for p in pages for r in p] == list(reversed(run_ids))


def test_with_status_is_oldest_first(storage: Storage) -> None:
    r1, r2, r3, r4, r5 = create_runs(storage, 5)
    storage.runs.transition(r2, RunStatus.NOT_STARTED)
    storage.runs.transition(r3, RunStatus.STARTING)
    storage.runs.transition(r5, RunStatus.NOT_STARTED)

    assert [r.run_id for r in storage.runs.with_status([Q])] == [r1, r4]
    assert [r.run_id for r in storage.runs.with_status([Q, RunStatus.NOT_STARTED])] == [r1, r2, r4, r5]
    newest = storage.runs.with_status([Q, RunStatus.NOT_STARTED], oldest_first=False)
    assert [r.run_id for r in newest] == [r5, r4, r2, r1]
    assert storage.runs.with_status([RunStatus.SUCCESS]) == []


def test_queue_view_gives_each_run_its_own_tags_pass_after_pass(storage: Storage) -> None:
    """queue_view shares parsed tag dicts between runs and passes: each run must still get its own
    tags, and only tag texts of the current view are kept from one pass to the next."""
    shared = {"team": "a", "owner": "ann"}
    a1, a2 = (storage.runs.create(new_run(tags=shared)).run_id for _ in range(2))
    b = storage.runs.create(new_run(tags={"team": "b"})).run_id
    started = storage.runs.create(new_run(tags={"team": "c"}, status=RunStatus.STARTING)).run_id

    for _ in range(2):
        queued, in_progress = storage.runs.queue_view()
        assert [(run_id, tags) for run_id, _seq, _prio, tags in queued] == [
            (a1, shared),
            (a2, shared),
            (b, {"team": "b"}),
        ]
        assert in_progress == [(started, {"team": "c"})]

    storage.runs.transition(b, RunStatus.CANCELED, expected=(Q,))
    queued, _ = storage.runs.queue_view()
    assert [run_id for run_id, *_ in queued] == [a1, a2]
    assert sorted(storage.runs._parsed_tags.values(), key=len) == [{"team": "c"}, shared]


# -- logs -----------------------------------------------------------------------------------------


def test_logs_paginate_in_order_without_gaps(storage: Storage) -> None:
    run_id, other = create_runs(storage, 2)
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    expected = []
    for batch in range(4):
        lines = [
            (t0 + timedelta(seconds=batch * 100 + i), "stdout", "INFO", f"line {batch}-{i}")
            for i in range(60)
        ]
        storage.runs.append_logs(run_id, lines)
        expected += [line[3] for line in lines]
        storage.runs.append_logs(other, [(t0, "stderr", "ERROR", f"other {batch}")])
    storage.runs.append_logs(run_id, [])

    read: list[Any] = []
    after = 0
    while page := storage.runs.read_logs(run_id, after_seq=after, limit=70):
        assert len(read) < 1000, "log pagination does not terminate"
        read += page
        after = page[-1].seq

    assert [line.message for line in read] == expected
    assert [line.seq for line in read] == sorted({line.seq for line in read})
    assert {(line.run_id, line.stream, line.level) for line in read} == {(run_id, "stdout", "INFO")}
    assert read[0].at == t0 and read[-1].at == t0 + timedelta(seconds=359)
    assert [line.message for line in storage.runs.read_logs(other)] == [f"other {b}" for b in range(4)]


# -- daemon heartbeats ----------------------------------------------------------------------------


def heartbeat(iteration: int, errors: int = 0, *, name: str = "run_queue") -> Heartbeat:
    return Heartbeat(
        daemon_name=name,
        daemon_id=f"{name}-id-{iteration}",
        pid=1000 + iteration,
        incarnation=iteration // 10,
        iteration=iteration,
        phase=f"phase {iteration}",
        errors=[{"at": f"t{i}", "message": f"error {i}"} for i in range(errors)],
        info={"claimed": iteration},
    )


def test_heartbeat_upsert_keeps_one_row_with_latest_values(storage: Storage) -> None:
    storage.daemons.beat(heartbeat(1, errors=1))
    storage.daemons.beat(heartbeat(12, errors=2))
    storage.daemons.beat(heartbeat(3, name="scheduler"))

    beats = storage.daemons.all()
    assert set(beats) == {"run_queue", "scheduler"}
    stored = {name: replace(beat, heartbeat_at=None, age_seconds=None) for name, beat in beats.items()}
    assert stored["run_queue"] == heartbeat(12, errors=2)
    assert stored["scheduler"] == heartbeat(3, name="scheduler")
    # Stamped and aged by the database's clock (on the same host here as this test's clock).
    at = beats["run_queue"].heartbeat_at
    assert at is not None and at.utcoffset() == timedelta(0)
    assert abs((datetime.now(timezone.utc) - at).total_seconds()) < 5
    age = beats["run_queue"].age_seconds
    assert age is not None and 0 <= age < 5


def test_heartbeat_keeps_only_the_newest_errors(storage: Storage) -> None:
    storage.daemons.beat(heartbeat(1, errors=MAX_ERRORS + 3))
    stored = storage.daemons.all()["run_queue"].errors
    assert MAX_ERRORS == 5
    assert stored == [{"at": f"t{i}", "message": f"error {i}"} for i in range(5)]


# -- settings -------------------------------------------------------------------------------------


def test_settings_round_trip_json_and_overwrite(storage: Storage) -> None:
    assert storage.get_setting("paused") is None
    value = {"daemons": ["scheduler", "sensor"], "until": None, "depth": {"n": 2, "ok": True}, "ratio": 0.5}
    storage.set_setting("paused", value)
    storage.set_setting("retention_days", 7)
    assert storage.get_setting("paused") == value
    assert storage.get_setting("retention_days") == 7

    storage.set_setting("paused", ["only", "a", "list"])
    assert storage.get_setting("paused") == ["only", "a", "list"]
    assert storage.get_setting("retention_days") == 7
    with storage.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM settings")).scalar() == 2


# -- outages --------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_open_storage_on_unreachable_postgres_raises_storage_unavailable() -> None:
    """Regression: open_storage let a raw sqlalchemy OperationalError (with SQL and a link) escape."""
    began = time.monotonic()
    with pytest.raises(StorageUnavailable) as refused:
        open_storage("postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test")
    elapsed = time.monotonic() - began

    message = str(refused.value)
    assert elapsed < 10
    assert "\n" not in message
    assert "127.0.0.1:1" in message
    assert "s3cret" not in message
    assert "Connection refused" in message or "connection failed" in message
