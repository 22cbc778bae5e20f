"""Schedule and sensor state in storage at scale, SQLite and PostgreSQL alike."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dagd.errors import Conflict
from dagd.storage.instigators import (
    RUNNING,
    STOPPED,
    TICK_SKIPPED,
    TICK_STARTED,
    TICK_SUCCESS,
    CursorMove,
    NewTick,
    PlannedRun,
    TickEnd,
)
from dagd.storage.leases import SUPERVISOR_LEASE
from dagd.storage.schema import instigators
from dagd.timefmt import utcnow

EXISTING = 5_000
CALLS = 20


def _ensure_seconds(storage: Any, prefix: str) -> float:
    store = storage.instigators
    started = time.perf_counter()
    for i in range(CALLS):
        state = store.ensure("schedule", f"{prefix}{i}", RUNNING)
        assert state.name == f"{prefix}{i}" and state.status == RUNNING
    return time.perf_counter() - started


@pytest.mark.timeout(120)
def test_ensure_cost_does_not_grow_with_the_number_of_schedules(storage: Any) -> None:
    """Regression: ``ensure`` re-read every state of the kind to return one, so a scheduler's first
    pass over 1,000 new schedules was quadratic: 15-25 s under load, past the 20 s heartbeat
    timeout, and the supervisor killed the scheduler as hung before it had ticked once."""
    _ensure_seconds(storage, "warm")  # connections, statement caches
    # The best of three rounds each: one slow round (autovacuum, another test's load) is noise,
    # a full read per call is slow every round.
    few = min(_ensure_seconds(storage, f"few{r}_") for r in range(3))
    now = utcnow()
    rows = [
        {"kind": "schedule", "name": f"existing{i:05d}", "status": STOPPED, "status_changed_at": now}
        for i in range(EXISTING)
    ]
    with storage.write() as conn:
        conn.execute(instigators.insert(), rows)
    many = min(_ensure_seconds(storage, f"many{r}_") for r in range(3))
    # The same work with 5,000 more rows in the table: not ~10x slower (a full read per call).
    assert many < 4 * few + 0.05, (
        f"{CALLS} ensures: {few:.3f} s on a small table, {many:.3f} s on a large one"
    )
    # Existing states are left as they are.
    assert storage.instigators.ensure("schedule", "existing00007", RUNNING).status == STOPPED


@pytest.mark.timeout(60)
def test_create_ticks_in_one_batch_skips_existing_schedule_ticks_and_moves_cursors(storage: Any) -> None:
    """The daemons' batched writes: a clash leaves the existing tick alone, cursor moves are atomic."""
    store = storage.instigators
    store.set_status("sensor", "s1", RUNNING)
    store.set_status("sensor", "s2", RUNNING)
    due = datetime(2030, 1, 7, 10, 0, tzinfo=timezone.utc)
    (first,) = store.create_ticks([NewTick("schedule", "hourly", scheduled_time=due)], epoch=None)
    assert first is not None and first.status == TICK_STARTED

    news = [
        NewTick("schedule", "hourly", scheduled_time=due),  # already there
        NewTick("schedule", "hourly", scheduled_time=due + timedelta(hours=1)),
        NewTick("schedule", "other", scheduled_time=due),
        NewTick(
            "sensor",
            "s1",
            status=TICK_SKIPPED,
            skip_reason="idle",
            new_cursor="7",
            cursor_updated=True,
            move_cursor=True,
        ),
        NewTick("sensor", "s2", planned=[PlannedRun("noop")], new_cursor="9", cursor_updated=True),
    ]
    created = store.create_ticks(news, epoch=None)
    assert created[0] is None
    assert [t is not None for t in created[1:]] == [True] * 4
    assert created[1].scheduled_time == due + timedelta(hours=1) and created[1].status == TICK_STARTED
    stored = {t.id: t for t in store.ticks("sensor", "s2")}
    assert (
        stored[created[4].id].planned == [PlannedRun("noop")] and stored[created[4].id].status == TICK_STARTED
    )
    # The SKIPPED tick moved its cursor with it; the STARTED one moves it only when it ends.
    assert store.cursors("sensor", ["s1", "s2", "nope"]) == {"s1": "7", "s2": None}

    store.finish_ticks(
        [
            TickEnd(created[4].id, TICK_SUCCESS, run_ids=["r1"], cursor=CursorMove("sensor", "s2", "9")),
            TickEnd(created[1].id, TICK_SKIPPED, skip_reason="why"),
        ]
    )
    assert store.cursors("sensor", ["s2"]) == {"s2": "9"}
    assert (
        store.get_tick(created[4].id).run_ids == ["r1"] and store.get_tick(created[4].id).ended_at is not None
    )
    assert store.get_tick(created[1].id).skip_reason == "why"
    assert {t.id for t in store.unfinished_ticks("schedule")} == {first.id, created[2].id}


@pytest.mark.timeout(60)
def test_create_ticks_with_a_stale_epoch_creates_nothing(storage: Any) -> None:
    lease, _ = storage.leases.acquire(SUPERVISOR_LEASE, "me", 30)
    assert lease is not None
    storage.instigators.set_status("sensor", "s1", RUNNING)
    news = [
        NewTick("sensor", "s1", status=TICK_SKIPPED, new_cursor="x", cursor_updated=True, move_cursor=True)
    ]
    with pytest.raises(Conflict, match="stale"):
        storage.instigators.create_ticks(news, epoch=lease.epoch + 1)
    assert storage.instigators.ticks("sensor", "s1") == []
    assert storage.instigators.cursors("sensor", ["s1"]) == {"s1": None}
    assert [t is not None for t in storage.instigators.create_ticks(news, epoch=lease.epoch)] == [True]


@pytest.mark.timeout(60)
def test_planned_runs_are_stored_in_the_json_shape_earlier_versions_wrote_and_read(storage: Any) -> None:
    """A tick left STARTED by an older dagd is resumed by a newer one, and the other way round."""
    store = storage.instigators
    plan = PlannedRun(
        "job", idempotency_key="sensor:s:k", run_key="k", tags={"dagd/sensor": "s"}, run_config={"a": [1]}
    )
    (tick,) = store.create_ticks([NewTick("sensor", "s", planned=[plan])], epoch=None)
    assert tick is not None
    with storage.sql_read() as sql:
        raw = sql.scalar("SELECT planned FROM ticks WHERE id = :id", {"id": tick.id})
    assert raw == (
        '[{"job_name": "job", "run_key": "k", "idempotency_key": "sensor:s:k", '
        '"tags": {"dagd/sensor": "s"}, "run_config": {"a": [1]}}]'
    )
    with storage.sql_write() as sql:  # as an older version wrote it
        sql.execute(
            "UPDATE ticks SET planned = :p WHERE id = :id",
            {"id": tick.id, "p": '[{"job_name": "old", "run_key": null, "idempotency_key": "x", '
             '"tags": {}, "run_config": {}}]'},
        )  # fmt: skip
    assert store.get_tick(tick.id).planned == [PlannedRun("old", idempotency_key="x")]
