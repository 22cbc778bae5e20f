"""Schedule and sensor ticks survive a daemon crash at any point: no run lost, none doubled.

The scheduler and sensor daemons run in-process against real storage (SQLite and PostgreSQL) and
a real code-server process; only the crash is injected. A crash is a :class:`Crash` raised from
the seam just after (or just before) the step under test. It derives from ``BaseException`` so no
``except Exception`` in the daemon can swallow it: the pass stops dead where it was, as a SIGKILL
would leave it. Then a *fresh* daemon on a *fresh* instance (nothing carried over in memory) runs
one pass, and the tick must end SUCCESS with exactly the runs it asked for.

The scheduler's clock (``dagd.daemons.scheduler.utcnow``) is pinned a few seconds after a due
time, so a due tick exists deterministically; the schedule's ``status_changed_at`` is moved
before that due time with SQL (a schedule never fires for a time before it was started).
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from helpers.codeserver import serving

from dagd.daemons.scheduler import SchedulerDaemon
from dagd.daemons.sensor import SensorDaemon
from dagd.errors import StorageUnavailable
from dagd.instance.instance import Instance
from dagd.run_coordinator import QueuedRunCoordinator
from dagd.runs.model import Run, RunFilter
from dagd.storage.instigators import (
    RUNNING,
    TICK_FAILURE,
    TICK_SKIPPED,
    TICK_STARTED,
    TICK_SUCCESS,
    InstigatorStore,
    NewTick,
    Tick,
)
from dagd.storage.schema import instigators
from dagd.storage.schema import ticks as ticks_table

DEFS = '''
from dagd import Definitions, RunRequest, SkipReason, job, schedule, sensor


@job
def noop(context):
    pass


@schedule(cron_schedule="0 * * * *", job=noop, tags={"team": "data"})
def two_runs(context):
    """Two run requests per tick, so a crash can fall between them."""
    return [RunRequest(run_key="first"), RunRequest(run_key="second", tags={"which": "second"})]


@schedule(cron_schedule="0 * * * *", job=noop)
def hourly(context):
    return None  # one run with the schedule's defaults


@sensor(job=noop, minimum_interval_seconds=1)
def once(context):
    """Two runs (one without a run key) and cursor "1" the first time; nothing afterwards.

    A resumed tick must not re-evaluate: that would submit the un-keyed request again.
    """
    if context.cursor is not None:
        return SkipReason(f"already at cursor {context.cursor}")
    context.update_cursor("1")
    return [RunRequest(run_key="keyed"), RunRequest(tags={"unkeyed": "yes"})]


@sensor(job=noop, minimum_interval_seconds=1)
def broken(context):
    context.update_cursor("moved")
    raise ValueError("broken on purpose")


@sensor(job=noop, minimum_interval_seconds=3600)
def hourly_check(context):
    return SkipReason(f"previous tick at {context.last_tick_at}")


defs = Definitions(jobs=[noop], schedules=[two_runs, hourly], sensors=[once, broken, hourly_check])
'''

# A due time of the hourly schedules, and the scheduler's pinned "now" a few seconds after it.
DUE = datetime(2030, 1, 7, 10, 0, tzinfo=timezone.utc)
NOW = DUE + timedelta(seconds=5)


class Crash(BaseException):
    """The process died here."""


# -- the instance, its code server, and daemons built fresh for every pass -----------------------


def storage_section(url: str) -> dict[str, Any]:
    if url.startswith("sqlite:///"):
        db_file = pathlib.Path(url.removeprefix("sqlite:///"))
        assert db_file.name == "dagd.db", url  # the instance names its SQLite file dagd.db
        return {"sqlite": {"base_dir": str(db_file.parent)}}
    return {"postgres": {"url": url}}


def write_home(home: pathlib.Path, storage_url: str, scheduler: dict[str, Any] | None = None) -> None:
    config: dict[str, Any] = {
        "storage": storage_section(storage_url),
        "run_coordinator": {"class": "QueuedRunCoordinator"},
    }
    if scheduler:
        config["scheduler"] = scheduler
    (home / "dagd.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture
def served(home: pathlib.Path, tmp_path: pathlib.Path, storage_url: str) -> Iterator[pathlib.Path]:
    """A home on the test's database with the DEFS code location served by a real code server."""
    write_home(home, storage_url)
    with serving(home, tmp_path / "tick_defs.py", DEFS):
        yield home


@pytest.fixture
def instances() -> Iterator[Callable[[pathlib.Path], Instance]]:
    """``instances(home)``: a new Instance (own engine, own coordinator), closed at teardown."""
    made: list[Instance] = []

    def make(home: pathlib.Path) -> Instance:
        made.append(Instance.load(home))
        return made[-1]

    yield make
    for instance in made:
        instance.close()


@pytest.fixture
def pinned_now(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    def pin(now: datetime) -> None:
        monkeypatch.setattr("dagd.daemons.scheduler.utcnow", lambda: now)

    pin(NOW)
    return pin


def start_schedule(instance: Instance, name: str, started_at: datetime) -> None:
    """RUNNING since ``started_at`` (set_status stamps the real now; move it into the past)."""
    store = instance.storage.instigators
    store.set_status("schedule", name, RUNNING)
    with instance.storage.write() as conn:
        conn.execute(
            instigators.update()
            .where(instigators.c.kind == "schedule", instigators.c.name == name)
            .values(status_changed_at=started_at)
        )


def runs_of(instance: Instance, **tags: str) -> list[Run]:
    return instance.storage.runs.list(RunFilter(tags=tags, limit=1000))


def ticks_of(instance: Instance, kind: str, name: str) -> list[Tick]:
    return instance.storage.instigators.ticks(kind, name, limit=1000)


def sensor_pass(daemon: SensorDaemon) -> list[BaseException]:
    """One sensor-daemon pass, waiting for the evaluations it started; their exceptions."""
    try:
        daemon.run_iteration()
        errors = []
        for future in list(daemon.in_flight.values()):
            error = future.exception(timeout=30)
            if error is not None:
                errors.append(error)
        return errors
    finally:
        daemon.close()


def crash_after(
    monkeypatch: pytest.MonkeyPatch,
    owner: type,
    method: str,
    when: Callable[..., bool] = lambda *a, **k: True,
) -> None:
    """Make ``owner.method`` do its work, then crash (when ``when(*args)`` says so)."""
    original = getattr(owner, method)

    def crashing(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        if when(*args, **kwargs):
            raise Crash(f"crashed after {method}")
        return result

    monkeypatch.setattr(owner, method, crashing)


def crash_after_runs_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs are stored (one transaction for the whole batch); the process dies before the tick ends."""
    crash_after(monkeypatch, QueuedRunCoordinator, "submit_runs")


# -- scheduler -----------------------------------------------------------------------------------


def _started(news: list[NewTick], *args: Any, **kwargs: Any) -> bool:
    return any(n.status == TICK_STARTED for n in news)


def _crash_after_tick_created(monkeypatch: pytest.MonkeyPatch) -> None:
    crash_after(monkeypatch, InstigatorStore, "create_ticks", _started)


def _crash_after_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    crash_after(monkeypatch, InstigatorStore, "plan_ticks")


SCHEDULER_CRASHES = {
    "after_tick_created": (_crash_after_tick_created, None, 0),
    "after_plan_saved": (_crash_after_plan, 2, 0),
    "after_runs_stored": (crash_after_runs_stored, 2, 2),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("crash_point", list(SCHEDULER_CRASHES))
def test_scheduler_crash_is_resumed_without_lost_or_doubled_runs(
    served: pathlib.Path,
    instances: Callable[[pathlib.Path], Instance],
    pinned_now: Callable[[datetime], None],
    monkeypatch: pytest.MonkeyPatch,
    crash_point: str,
) -> None:
    inject, planned_after_crash, runs_after_crash = SCHEDULER_CRASHES[crash_point]
    first = instances(served)
    start_schedule(first, "two_runs", DUE - timedelta(minutes=30))

    with monkeypatch.context() as patch:
        inject(patch)
        with pytest.raises(Crash):
            SchedulerDaemon(first).run_iteration()

    # The crash left the tick STARTED, with or without its saved requests, and some runs.
    (crashed,) = ticks_of(first, "schedule", "two_runs")
    assert crashed.status == TICK_STARTED and crashed.scheduled_time == DUE
    assert (len(crashed.planned) if crashed.planned is not None else None) == planned_after_crash
    assert len(runs_of(first, **{"dagd/schedule": "two_runs"})) == runs_after_crash

    fresh = instances(served)
    SchedulerDaemon(fresh).run_iteration()
    SchedulerDaemon(instances(served)).run_iteration()  # and again: nothing more happens

    (tick,) = ticks_of(fresh, "schedule", "two_runs")
    assert tick.id == crashed.id and tick.status == TICK_SUCCESS, tick
    runs = runs_of(fresh, **{"dagd/schedule": "two_runs"})
    assert len(runs) == 2, [r.tags for r in runs]
    assert sorted(tick.run_ids) == sorted(r.run_id for r in runs)
    assert {r.tags.get("which") for r in runs} == {None, "second"}
    for run in runs:
        assert run.tags["dagd/scheduled_time"] == "2030-01-07T10:00:00.000Z"
        assert run.tags["team"] == "data"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("max_catchup_runs", "expected_runs"), [(None, 1), (5, 5)])
def test_catch_up_after_two_days_runs_only_the_latest_ticks(
    served: pathlib.Path,
    instances: Callable[[pathlib.Path], Instance],
    pinned_now: Callable[[datetime], None],
    storage_url: str,
    max_catchup_runs: int | None,
    expected_runs: int,
) -> None:
    if max_catchup_runs is not None:
        write_home(served, storage_url, {"max_catchup_runs": max_catchup_runs})
    instance = instances(served)
    assert instance.config.scheduler.max_catchup_runs == (max_catchup_runs or 1)
    start_schedule(instance, "hourly", DUE - timedelta(days=3))
    last = DUE - timedelta(days=2)
    instance.storage.instigators.create_tick(
        "schedule", "hourly", scheduled_time=last, status=TICK_SUCCESS, epoch=None
    )

    SchedulerDaemon(instance).run_iteration()

    # 48 hours were due after the last tick: (last, DUE] holds DUE-47h ... DUE.
    ticks = [t for t in ticks_of(instance, "schedule", "hourly") if t.scheduled_time != last]
    assert len(ticks) == 48
    ran = sorted((t for t in ticks if t.status == TICK_SUCCESS), key=lambda t: t.scheduled_time or DUE)
    skipped = [t for t in ticks if t.status == TICK_SKIPPED]
    assert len(ran) == expected_runs and len(skipped) == 48 - expected_runs
    assert [t.scheduled_time for t in ran] == [
        DUE - timedelta(hours=h) for h in reversed(range(expected_runs))
    ]
    assert all("missed" in (t.skip_reason or "") for t in skipped)
    runs = runs_of(instance, **{"dagd/schedule": "hourly"})
    assert sorted(r.tags["dagd/scheduled_time"] for r in runs) == sorted(
        f"{t.scheduled_time:%Y-%m-%dT%H:%M:%S}.000Z" for t in ran
    )


@pytest.mark.timeout(60)
def test_two_schedulers_on_one_database_make_one_tick_and_one_run_per_due_time(
    served: pathlib.Path,
    instances: Callable[[pathlib.Path], Instance],
    pinned_now: Callable[[datetime], None],
) -> None:
    setup = instances(served)
    start_schedule(setup, "hourly", DUE - timedelta(minutes=30))
    daemons = [SchedulerDaemon(instances(served)), SchedulerDaemon(instances(served))]
    rounds = 4
    errors: list[BaseException] = []

    def iterate(daemon: SchedulerDaemon, barrier: threading.Barrier) -> None:
        try:
            barrier.wait(timeout=10)
            daemon.run_iteration()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    for hour in range(rounds):
        pinned_now(NOW + timedelta(hours=hour))
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=iterate, args=(d, barrier)) for d in daemons]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, errors

    ticks = ticks_of(setup, "schedule", "hourly")
    assert sorted(t.scheduled_time for t in ticks) == [DUE + timedelta(hours=h) for h in range(rounds)]
    assert all(t.status == TICK_SUCCESS and len(t.run_ids) == 1 for t in ticks), ticks
    runs = runs_of(setup, **{"dagd/schedule": "hourly"})
    assert len(runs) == rounds
    assert {r.run_id for r in runs} == {t.run_ids[0] for t in ticks}


# -- sensor --------------------------------------------------------------------------------------


SENSOR_CRASHES = {
    # A sensor's tick is created with its run requests and new cursor in one write.
    "after_plan_saved": (_crash_after_tick_created, 0),
    "after_runs_stored": (crash_after_runs_stored, 2),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("crash_point", list(SENSOR_CRASHES))
def test_sensor_crash_is_resumed_with_runs_once_and_cursor_moved_once(
    served: pathlib.Path,
    instances: Callable[[pathlib.Path], Instance],
    monkeypatch: pytest.MonkeyPatch,
    crash_point: str,
) -> None:
    inject, runs_after_crash = SENSOR_CRASHES[crash_point]
    first = instances(served)
    first.storage.instigators.set_status("sensor", "once", RUNNING)

    with monkeypatch.context() as patch:
        inject(patch)
        errors = sensor_pass(SensorDaemon(first))
    assert [type(e) for e in errors] == [Crash]

    # Requests and the new cursor are saved on the tick; the sensor's cursor has not moved yet.
    (crashed,) = ticks_of(first, "sensor", "once")
    assert crashed.status == TICK_STARTED and crashed.planned is not None and len(crashed.planned) == 2
    assert crashed.new_cursor == "1" and crashed.cursor_updated
    assert first.storage.instigators.states("sensor")["once"].cursor is None
    assert len(runs_of(first, **{"dagd/sensor": "once"})) == runs_after_crash

    # As if the crash was a while ago: `once` is due again at once (its minimum interval holds
    # across restarts, counted from its latest tick).
    age_ticks(first, "once", LONG_AGO)
    assert sensor_pass(SensorDaemon(instances(served))) == []

    fresh = instances(served)
    assert fresh.storage.instigators.states("sensor")["once"].cursor == "1"
    ticks = ticks_of(fresh, "sensor", "once")
    resumed = next(t for t in ticks if t.id == crashed.id)
    assert resumed.status == TICK_SUCCESS
    # The fresh daemon's own evaluation saw the moved cursor and asked for nothing more.
    assert [t.status for t in ticks if t.id != crashed.id] == [TICK_SKIPPED]
    runs = runs_of(fresh, **{"dagd/sensor": "once"})
    assert len(runs) == 2, [r.tags for r in runs]
    assert sorted(resumed.run_ids) == sorted(r.run_id for r in runs)
    assert sorted(r.tags.get("unkeyed", "-") for r in runs) == ["-", "yes"]


@pytest.mark.timeout(60)
def test_failed_sensor_tick_is_stored_with_its_error_even_if_the_daemon_dies_right_after(
    served: pathlib.Path,
    instances: Callable[[pathlib.Path], Instance],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: a failed evaluation was stored as a FAILURE tick first and its error written in a
    second transaction, so readers saw failures without a reason, and a crash in between left one
    for good."""
    instance = instances(served)
    instance.storage.instigators.set_status("sensor", "broken", RUNNING)
    with monkeypatch.context() as patch:
        crash_after(patch, InstigatorStore, "create_ticks")
        assert [type(e) for e in sensor_pass(SensorDaemon(instance))] == [Crash]

    (tick,) = ticks_of(instance, "sensor", "broken")
    assert tick.status == TICK_FAILURE and tick.ended_at is not None
    assert "ValueError: broken on purpose" in (tick.error or ""), tick
    assert instance.storage.instigators.states("sensor")["broken"].cursor is None


LONG_AGO = datetime(2020, 1, 1, tzinfo=timezone.utc)


def age_ticks(instance: Instance, name: str, started_at: datetime) -> None:
    with instance.storage.write() as conn:
        conn.execute(ticks_table.update().where(ticks_table.c.name == name).values(started_at=started_at))


@pytest.mark.timeout(60)
def test_sensor_interval_and_last_tick_at_carry_over_a_restart(
    served: pathlib.Path, instances: Callable[[pathlib.Path], Instance]
) -> None:
    """Regression: the last evaluation time lived only in memory, so every restart (a crash loop)
    evaluated every sensor at once, whatever its minimum_interval_seconds; and context.last_tick_at
    was the current evaluation's own time, not the previous tick's."""
    instance = instances(served)
    instance.storage.instigators.set_status("sensor", "hourly_check", RUNNING)
    assert sensor_pass(SensorDaemon(instance)) == []
    (first,) = ticks_of(instance, "sensor", "hourly_check")
    assert first.skip_reason == "previous tick at None", first

    assert sensor_pass(SensorDaemon(instances(served))) == []  # a restart: not due for an hour
    assert len(ticks_of(instance, "sensor", "hourly_check")) == 1

    age_ticks(instance, "hourly_check", LONG_AGO)  # an hour and more has passed
    assert sensor_pass(SensorDaemon(instances(served))) == []
    later = [t for t in ticks_of(instance, "sensor", "hourly_check") if t.id != first.id]
    assert [t.skip_reason for t in later] == ["previous tick at 2020-01-01T00:00:00.000Z"], later


def _storage_down_at_submit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tick is stored STARTED with its requests; the database goes away before any run is."""

    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise StorageUnavailable("storage unavailable: connection refused (injected)")

    monkeypatch.setattr(QueuedRunCoordinator, "submit_runs", refuse)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", ["before_runs_stored", "after_runs_stored"])
def test_sensor_tick_left_by_a_storage_error_is_resumed_by_the_same_daemon_before_it_evaluates_again(
    served: pathlib.Path,
    instances: Callable[[pathlib.Path], Instance],
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    """Regression: the daemon went on evaluating from the cursor that had not moved, so the un-keyed
    request was submitted again by a second tick; the first tick stayed STARTED until a restart, which
    then submitted its runs as well and moved the cursor back."""
    instance = instances(served)
    instance.storage.instigators.set_status("sensor", "once", RUNNING)
    daemon = SensorDaemon(instance)
    try:
        with monkeypatch.context() as patch:
            if fault == "before_runs_stored":
                _storage_down_at_submit(patch)
            else:
                original = QueuedRunCoordinator.submit_runs

                def stored_then_down(self: Any, *args: Any, **kwargs: Any) -> Any:
                    original(self, *args, **kwargs)
                    raise StorageUnavailable("storage unavailable: connection lost (injected)")

                patch.setattr(QueuedRunCoordinator, "submit_runs", stored_then_down)
            daemon.run_iteration()
            errors = [f.exception(timeout=30) for f in list(daemon.in_flight.values())]
        assert [type(e) for e in errors] == [StorageUnavailable]
        (left,) = ticks_of(instance, "sensor", "once")
        assert left.status == TICK_STARTED

        # The database is back; the same daemon's next passes, once the sensor is due again.
        for _ in range(2):
            daemon.last_started.clear()
            daemon.run_iteration()
            assert [f.exception(timeout=30) for f in list(daemon.in_flight.values())] == [None]
    finally:
        daemon.close()

    ticks = ticks_of(instance, "sensor", "once")
    resumed = next(t for t in ticks if t.id == left.id)
    assert resumed.status == TICK_SUCCESS, resumed
    assert [t.status for t in ticks if t.id != left.id] == [TICK_SKIPPED, TICK_SKIPPED]
    assert instance.storage.instigators.states("sensor")["once"].cursor == "1"
    runs = runs_of(instance, **{"dagd/sensor": "once"})
    assert len(runs) == 2, [r.tags for r in runs]
    assert sorted(resumed.run_ids) == sorted(r.run_id for r in runs)
