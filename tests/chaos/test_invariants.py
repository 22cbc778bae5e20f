"""The chaos battery's referee, checked on made-up histories: each invariant must catch what it
promises to catch (a referee that cannot fail would make the battery pass for nothing), and must
not cry wolf over histories that are fine.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from helpers.chaos.deployment import LIMITS, RunRow, StatusEvent, TickRow
from helpers.chaos.faults import DownWindows, make_plan
from helpers.chaos.invariants import (
    doubled_run_keys,
    launched_twice,
    launches_after_deposed,
    lost_counter_keys,
    missing_acks,
    over_limits,
    replay_limits,
    schedule_ticks,
)
from helpers.chaos.load import SUBMISSION_TAG, Ack
from helpers.chaos.scenario import unexpected_errors
from helpers.chaos.two_hosts import SUPERVISOR_FAULTS, TTL, make_two_host_plan

from dagd.timefmt import rfc3339

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def events(*items: tuple[float, str, str]) -> list[StatusEvent]:
    """(seconds after T0, run id, status) -> status events in id order."""
    return [
        StatusEvent(i, run_id, T0 + timedelta(seconds=at), status, "")
        for i, (at, run_id, status) in enumerate(items)
    ]


def run(run_id: str, status: str = "SUCCESS", **tags: str) -> RunRow:
    return RunRow(run_id, status, dict(tags), None, None)


def test_over_limits_names_each_kind_of_limit_and_the_runs_holding_it() -> None:
    assert over_limits({"a": {}, "b": {}, "c": {}, "d": {}}, LIMITS) == []
    five: dict[str, dict[str, str]] = {f"r{i}": {} for i in range(5)}
    assert over_limits(five, LIMITS) == [f"5 runs in progress > max_concurrent_runs 4: {sorted(five)}"]
    warehouse = {
        "a": {"db": "warehouse"},
        "b": {"db": "warehouse"},
        "c": {"db": "warehouse"},
        "d": {"db": "lake"},
    }
    assert over_limits(warehouse, LIMITS) == ["3 runs hold db=warehouse <= 2: ['a', 'b', 'c']"]
    tenants = {"a": {"tenant": "x"}, "b": {"tenant": "x"}, "c": {"tenant": "y"}, "d": {"tenant": "y"}}
    assert over_limits(tenants, LIMITS) == []
    tenants["d"] = {"tenant": "x"}
    assert over_limits(tenants, LIMITS) == [
        "3 runs hold tenant=<each value> <= 2 (value 'x'): ['a', 'b', 'd']"
    ]
    lanes = {"a": {"lane": "x"}, "b": {"lane": "y"}}
    assert over_limits(lanes, LIMITS) == ["2 runs hold lane=* <= 1: ['a', 'b']"]


def test_replay_finds_an_overlap_only_where_the_intervals_overlap() -> None:
    tags = {"a": {"lane": "x"}, "b": {"lane": "y"}}
    # b starts after a ended: fine, even at the same instant a ends.
    fine = events((0, "a", "STARTING"), (1, "a", "STARTED"), (2, "a", "SUCCESS"), (2, "b", "STARTING"))
    assert replay_limits(fine, tags, LIMITS) == []
    # b starts while a is CANCELING (still in progress): one report, when the overlap began.
    bad = events(
        (0, "a", "STARTING"),
        (1, "a", "CANCELING"),
        (1.5, "b", "STARTING"),
        (1.7, "b", "STARTED"),
        (2, "a", "CANCELED"),
    )
    found = replay_limits(bad, tags, LIMITS)
    assert len(found) == 1 and "2 runs hold lane=* <= 1" in found[0] and "12:00:01.500" in found[0], found


def test_launched_twice_from_events_or_from_markers() -> None:
    once = events((0, "a", "QUEUED"), (1, "a", "STARTING"), (2, "a", "STARTED"), (3, "a", "SUCCESS"))
    assert launched_twice(once, {"a": [100]}) == []
    # Dispatched again (its first attempt orphaned before any claim): not a double launch.
    redispatched = [*events((0, "a", "QUEUED"), (1, "a", "STARTING"), (1.5, "a", "STARTING")), *once[2:]]
    assert launched_twice(redispatched, {"a": [100]}) == []
    twice = [*once, *events((4, "a", "STARTED"))]
    assert launched_twice(twice, {}) == ["run a has 2 STARTED events"]
    assert launched_twice(once, {"a": [100, 101]}) == ["run a executed in 2 processes [100, 101]"]


def test_missing_acks_and_acks_answered_with_another_submissions_run() -> None:
    acks = [Ack("k1", "r1", {}, 0.0), Ack("k2", "r2", {}, 0.0), Ack("k3", "r3", {}, 0.0)]
    existing = {"r1": {SUBMISSION_TAG: "k1"}, "r3": {SUBMISSION_TAG: "k9"}}
    assert missing_acks(acks, existing) == [
        "submission k2 was acknowledged as run r2, which does not exist",
        "run r3 acknowledged for k3 belongs to k9",
    ]


def test_sensor_run_keys_doubled_and_counter_keys_lost() -> None:
    runs = [
        run("1", **{"dagd/sensor": "counter", "run_key": "n1"}),
        run("2", **{"dagd/sensor": "counter", "run_key": "n3"}),
        run("3", **{"dagd/sensor": "buckets", "run_key": "b1"}),
        run("4", **{"dagd/sensor": "buckets", "run_key": "b1"}),
    ]
    assert doubled_run_keys(runs) == ["sensor buckets run key b1 has 2 runs"]
    assert lost_counter_keys(runs, "counter", "3") == [
        "sensor counter cursor is 3 but run keys ['n2'] have no run"
    ]
    assert lost_counter_keys(runs, "counter", "1") == []


def test_schedule_ticks_lost_failed_doubled_or_off_the_cron() -> None:
    started = {"s": T0 + timedelta(seconds=30)}
    schedules = {"s": ("* * * * *", "UTC")}
    until = T0 + timedelta(minutes=3, seconds=10)  # due: 12:01, 12:02, 12:03
    due = [T0 + timedelta(minutes=m) for m in (1, 2, 3)]

    ticks = [TickRow(i, "s", when, "SUCCESS", [f"r{i}"], None) for i, when in enumerate(due)]
    runs = [
        run(f"r{i}", **{"dagd/schedule": "s", "dagd/scheduled_time": rfc3339(w) or ""})
        for i, w in enumerate(due)
    ]
    assert schedule_ticks(schedules, started, ticks, runs, until) == []

    lost = schedule_ticks(schedules, started, ticks[:2], runs[:2], until)
    assert lost == ["schedule s at 2026-03-01T12:03:00.000Z: 0 ticks (expected 1)"]
    failed = [*ticks[:2], TickRow(2, "s", due[2], "FAILURE", [], "boom")]
    assert (
        "tick FAILURE (boom), its run lost" in schedule_ticks(schedules, started, failed, runs[:2], until)[0]
    )
    doubled = [*runs, run("extra", **{"dagd/schedule": "s", "dagd/scheduled_time": rfc3339(due[0]) or ""})]
    found = schedule_ticks(schedules, started, ticks, doubled, until)
    assert any("2 runs" in f for f in found) and any("storage has" in f for f in found), found
    early = [TickRow(9, "s", T0, "SUCCESS", [], None), *ticks]
    assert schedule_ticks(schedules, started, early, runs, until) == [
        "schedule s: tick at 2026-03-01T12:00:00.000Z, which is not a due time since it started"
    ]


def test_down_windows_excuse_only_what_overlaps_them() -> None:
    windows = DownWindows()
    assert not windows.overlaps(0, 1)
    index = windows.open()
    assert windows.overlaps(0, 10**9)  # open: anything from its start on
    windows.close(index)
    (duration,) = windows.durations()
    assert duration >= 0


def test_the_fault_plan_is_a_function_of_the_seed_and_has_every_kind() -> None:
    plan = make_plan(42, 120, "postgres")
    assert plan == make_plan(42, 120, "postgres")
    assert plan != make_plan(43, 120, "postgres")
    kinds = {f.kind for f in plan}
    assert kinds == {
        "kill_daemon",
        "stop_daemon",
        "kill_worker",
        "freeze_worker",
        "terminate_storm",
        "kill_supervisor",
        "db_outage",
    }
    assert "db_lock" in {f.kind for f in make_plan(42, 45, "sqlite")}
    kills = [f.at for f in plan if f.kind == "kill_supervisor"]
    assert all(b - a >= 20 for a, b in zip(kills, kills[1:], strict=False))
    outages = [f for f in plan if f.kind == "db_outage"]
    assert all(5 <= f.duration <= 30 for f in outages)
    assert all(a.at + a.duration < b.at for a, b in zip(outages, outages[1:], strict=False))


def test_unexpected_errors_in_the_supervisor_log_are_found_with_their_exception() -> None:
    log = """2026-11-21 19:39:53,611 dagd.supervisor INFO daemon run_queue started (pid 1, incarnation 2)
2026-11-21 19:39:53,621 dagd.supervisor.servicer ERROR unexpected error in SubmitRun
Traceback (most recent call last):
  File "/work/main/dagd/supervisor/servicer.py", line 69, in wrapper
    return method(self, request, context)
psycopg.errors.UniqueViolation: duplicate key value violates unique constraint "runs_idempotency_key_key"
DETAIL:  Key (idempotency_key)=(api1-6) already exists.
2026-11-21 19:39:54,000 dagd.supervisor INFO supervisor stopped
"""
    assert unexpected_errors(log) == [
        "unexpected error in SubmitRun: psycopg.errors.UniqueViolation: duplicate key value violates unique "
        'constraint "runs_idempotency_key_key"'
    ]
    assert unexpected_errors("2026-11-21 19:39:54,000 dagd.supervisor INFO supervisor stopped\n") == []


def test_launches_after_deposed_finds_a_launch_under_an_epoch_already_superseded() -> None:
    seen = {1: T0, 2: T0 + timedelta(seconds=10), 3: T0 + timedelta(seconds=30)}

    def at(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    fine = [("run r1 attempt 1", 1, at(9)), ("run r2 attempt 1", 2, at(29)), ("tick t #1", 3, at(40))]
    assert launches_after_deposed(fine, seen) == []
    assert launches_after_deposed([("run r4 attempt 1", None, at(50))], seen) == []  # not fenced
    late = launches_after_deposed([("run r5 attempt 2", 1, at(12)), ("schedule tick s #7", 2, at(31))], seen)
    assert len(late) == 2
    assert "run r5 attempt 2 written under epoch 1" in late[0] and "after epoch 2" in late[0]
    assert "schedule tick s #7 written under epoch 2" in late[1] and "after epoch 3" in late[1]


def test_the_two_host_plan_is_a_function_of_the_seed_with_every_supervisor_fault_one_at_a_time() -> None:
    for seed in range(1, 400):
        plan = make_two_host_plan(seed, 60)
        assert plan == make_two_host_plan(seed, 60)
        assert [f.at for f in plan] == sorted(f.at for f in plan)
        heavy = [f for f in plan if f.kind in SUPERVISOR_FAULTS]
        assert {f.kind for f in heavy} == set(SUPERVISOR_FAULTS), (seed, heavy)
        assert {f.target for f in heavy if f.kind == "kill_leader"} == {"leader"}
        for before, after in zip(
            heavy, heavy[1:], strict=False
        ):  # never two at once, a lease of calm between
            assert after.at >= before.at + before.duration + TTL, (seed, before, after)
    targets = [f.target for s in range(1, 200) for f in make_two_host_plan(s, 60) if f.kind == "partition"]
    assert targets.count("leader") > targets.count("standby") > 0
