"""Retention on both databases: deleting finished runs with everything stored about them (never a
run in progress, all or nothing), purging them by age in batches, purging ticks by kind, status and
age without touching an instigator's latest tick, and one automatic purge round as configured."""

from __future__ import annotations

import pathlib
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from dagd.errors import InvalidArgument, NotFound
from dagd.instance.instance import Instance
from dagd.runs.model import FINISHED_STATUSES, RunStatus
from dagd.storage.instigators import TICK_FAILURE, TICK_SKIPPED, TICK_STARTED, TICK_SUCCESS, NewTick, TickEnd
from dagd.storage.retention import RUN_DEPENDENT_TABLES, delete_runs, purge_runs
from dagd.storage.runs import NewRun, insert_event
from dagd.storage.schema import metadata, runs, ticks
from dagd.supervisor.retention import RetentionPurger

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def make_run(storage: Any, status: RunStatus, ended: datetime | None = None, job: str = "j") -> str:
    run = storage.runs.create(
        NewRun(job_name=job, tags={"team": "a"}, run_config={}, priority=0, status=status)
    )
    with storage.sql_write() as sql:
        insert_event(sql, run.run_id, None, "hello", kind="info")
    storage.runs.append_logs(run.run_id, [(NOW, "stdout", "INFO", "a line")] * 3)
    if ended is not None:
        with storage.write() as conn:
            conn.execute(sa.update(runs).where(runs.c.run_id == run.run_id).values(ended_at=ended))
    return str(run.run_id)


def rows_of(storage: Any, run_id: str) -> dict[str, int]:
    """How many rows each per-run table holds for ``run_id`` (runs included)."""
    counts = {}
    with storage.read() as conn:
        for table in ("runs", *RUN_DEPENDENT_TABLES):
            counts[table] = conn.execute(
                sa.text(f"SELECT COUNT(*) FROM {table} WHERE run_id = :r"), {"r": run_id}
            ).scalar_one()
    return counts


def test_every_table_with_a_run_id_is_deleted_with_its_run() -> None:
    # A new per-run table (say run_attempts) must be listed in RUN_DEPENDENT_TABLES, or deleted runs
    # would leave its rows behind.
    per_run = {t.name for t in metadata.sorted_tables if "run_id" in t.c and t.name != "runs"}
    assert per_run == set(RUN_DEPENDENT_TABLES)


def test_delete_removes_finished_runs_with_their_tags_events_and_logs(storage: Any) -> None:
    done = [make_run(storage, status, NOW) for status in FINISHED_STATUSES]
    kept = make_run(storage, RunStatus.SUCCESS, NOW)
    assert all(rows_of(storage, r)["run_logs"] == 3 for r in done)
    assert sorted(delete_runs(storage, [*done, done[0]])) == sorted(done)
    for run_id in done:
        assert rows_of(storage, run_id) == dict.fromkeys(("runs", *RUN_DEPENDENT_TABLES), 0)
        assert storage.runs.get(run_id) is None
    assert rows_of(storage, kept) == {
        "runs": 1,
        "run_tags": 1,
        "run_events": 2,
        "run_logs": 3,
        "run_attempts": 0,
    }


@pytest.mark.parametrize(
    "status", [RunStatus.QUEUED, RunStatus.NOT_STARTED, RunStatus.STARTED, RunStatus.CANCELING]
)
def test_delete_refuses_a_run_in_progress_and_changes_nothing(storage: Any, status: RunStatus) -> None:
    finished = make_run(storage, RunStatus.SUCCESS, NOW)
    busy = make_run(storage, status)
    before = (rows_of(storage, finished), rows_of(storage, busy))
    with pytest.raises(InvalidArgument) as info:
        delete_runs(storage, [finished, busy])
    assert str(info.value) == (
        f"run {busy} is {status.value}: only finished runs can be deleted (SUCCESS, FAILURE, CANCELED); "
        "nothing was deleted"
    )
    assert (rows_of(storage, finished), rows_of(storage, busy)) == before


def test_delete_of_an_unknown_run_changes_nothing(storage: Any) -> None:
    finished = make_run(storage, RunStatus.FAILURE, NOW)
    with pytest.raises(NotFound, match="^no run with id 'nope'; nothing was deleted$"):
        delete_runs(storage, [finished, "nope"])
    assert rows_of(storage, finished)["runs"] == 1


def test_purge_deletes_old_finished_runs_in_batches_and_never_a_run_in_progress(storage: Any) -> None:
    old = [make_run(storage, RunStatus.SUCCESS, NOW - 10 * DAY) for _ in range(5)]
    old_failure = make_run(storage, RunStatus.FAILURE, NOW - 10 * DAY)
    recent = make_run(storage, RunStatus.SUCCESS, NOW - DAY)
    busy = make_run(storage, RunStatus.STARTED)
    with storage.write() as conn:  # a run in progress with an old ended_at still stays
        conn.execute(sa.update(runs).where(runs.c.run_id == busy).values(ended_at=NOW - 30 * DAY))
    # Only SUCCESS, two per batch: 2 + 2 + 1.
    assert list(purge_runs(storage, NOW - 7 * DAY, [RunStatus.SUCCESS], batch_size=2)) == [2, 2, 1]
    assert all(storage.runs.get(r) is None for r in old)
    assert all(rows_of(storage, r)["run_logs"] == 0 for r in old)
    assert sum(purge_runs(storage, NOW - 7 * DAY)) == 1  # every finished status by default
    assert storage.runs.get(old_failure) is None
    assert storage.runs.get(recent) is not None and storage.runs.get(busy) is not None
    with pytest.raises(InvalidArgument, match="^status STARTED: only finished runs can be deleted"):
        list(purge_runs(storage, NOW, [RunStatus.STARTED]))


def add_tick(
    storage: Any, kind: str, name: str, status: str, started: datetime, scheduled: datetime | None
) -> int:
    tick = storage.instigators.create_ticks(
        [NewTick(kind=kind, name=name, scheduled_time=scheduled)], epoch=None
    )[0]
    if status != TICK_STARTED:
        storage.instigators.finish_ticks([TickEnd(tick_id=tick.id, status=status)])
    with storage.write() as conn:
        conn.execute(sa.update(ticks).where(ticks.c.id == tick.id).values(started_at=started))
    return int(tick.id)


def tick_ids(storage: Any) -> set[int]:
    with storage.read() as conn:
        return set(conn.execute(sa.select(ticks.c.id)).scalars())


def test_tick_purge_by_status_and_age_keeps_each_instigators_latest_tick(storage: Any) -> None:
    old = NOW - 10 * DAY
    hourly = [
        add_tick(
            storage, "schedule", "s", TICK_SKIPPED, old + i * timedelta(hours=1), old + i * timedelta(hours=1)
        )
        for i in range(4)
    ]
    success = add_tick(
        storage, "schedule", "s", TICK_SUCCESS, old + timedelta(hours=5), old + timedelta(hours=5)
    )
    # Schedule "d" has only old ticks: its latest one stays (the scheduler resumes from it).
    daily = [add_tick(storage, "schedule", "d", TICK_SKIPPED, old + i * DAY, old + i * DAY) for i in range(3)]
    unfinished = add_tick(storage, "sensor", "x", TICK_STARTED, old, None)
    sensor = [
        add_tick(storage, "sensor", "x", TICK_SKIPPED, old + i * timedelta(minutes=1), None) for i in range(3)
    ]
    recent = add_tick(storage, "sensor", "x", TICK_SKIPPED, NOW, None)

    assert storage.instigators.purge_ticks("schedule", TICK_SKIPPED, NOW - 7 * DAY, limit=2) == 2
    assert storage.instigators.purge_ticks("schedule", TICK_SKIPPED, NOW - 7 * DAY, limit=100) == 4
    left = tick_ids(storage)
    assert not set(hourly) & left and success in left  # success is another status
    assert set(daily) & left == {daily[-1]}
    assert storage.instigators.purge_ticks("schedule", TICK_FAILURE, NOW, limit=100) == 0
    assert storage.instigators.purge_ticks("sensor", TICK_SKIPPED, NOW - 7 * DAY, limit=100) == 3
    assert {unfinished, recent} <= tick_ids(storage) and not set(sensor) & tick_ids(storage)
    with pytest.raises(ValueError):
        storage.instigators.purge_ticks("sensor", TICK_STARTED, NOW, limit=1)


def test_a_purge_round_applies_the_configured_retention(
    storage_url: str, storage: Any, home: pathlib.Path
) -> None:
    retention = {
        "schedule": {"purge_after_days": 3},
        "sensor": {"purge_after_days": {"skipped": 1, "success": -1, "failure": -1}},
        "runs": {"purge_after_days": 5},
        "batch_size": 2,
    }
    storage_section = (
        {"postgres": {"url": storage_url}}
        if storage_url.startswith("postgresql")
        else {"sqlite": {"base_dir": str(pathlib.Path(storage_url.split(":///", 1)[1]).parent)}}
    )
    (home / "dagd.yaml").write_text(yaml.safe_dump({"storage": storage_section, "retention": retention}))
    instance = Instance.load(home)
    old_run, new_run = (
        make_run(storage, RunStatus.CANCELED, NOW - 6 * DAY),
        make_run(storage, RunStatus.SUCCESS, NOW - 4 * DAY),
    )
    s_old = [
        add_tick(storage, "schedule", "s", status, NOW - 4 * DAY, NOW - 4 * DAY + i * DAY / 100)
        for i, status in enumerate((TICK_SUCCESS, TICK_FAILURE, TICK_SKIPPED))
    ]
    s_new = add_tick(storage, "schedule", "s", TICK_SUCCESS, NOW - 2 * DAY, NOW - 2 * DAY)
    x_success = add_tick(storage, "sensor", "x", TICK_SUCCESS, NOW - 9 * DAY, None)
    x_skipped = [add_tick(storage, "sensor", "x", TICK_SKIPPED, NOW - 2 * DAY, None) for _ in range(3)]
    try:
        report = RetentionPurger(instance, threading.Event()).purge_once(NOW)
    finally:
        instance.close()
    assert report.runs == 1 and report.ticks[("schedule", TICK_SUCCESS)] == 1
    assert report.ticks[("sensor", TICK_SKIPPED)] == 2  # the latest sensor tick stays
    left = tick_ids(storage)
    assert not set(s_old) & left and s_new in left and x_success in left
    assert set(x_skipped) & left == {x_skipped[-1]}
    assert storage.runs.get(old_run) is None and storage.runs.get(new_run) is not None
