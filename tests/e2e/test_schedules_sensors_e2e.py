"""Schedules and sensors end to end: a real supervisor, real daemons and real code servers (SPEC §5).

Definitions are written into the test's own directory so a test can edit them while everything
runs (live reload). What a user types goes through ``dagctl``; polling uses the gRPC client
in-process (the API ``dagctl`` calls, without a Python start-up per look).

Time: the one test that needs a cron tick waits for the next minute boundary (a newly started
schedule never fires for the past), once in this module, and checks the hanging and raising
sensors while it waits; every other check is driven by sensors at a one-second interval.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from helpers.procs import DagdProcess, Result, wait_for

from dagd.client.client import Client

FAST = """
daemons:
  heartbeat_interval_seconds: 0.5
  heartbeat_timeout_seconds: 5
  stop_grace_seconds: 2
  restart:
    initial_backoff_seconds: 0.2
    max_backoff_seconds: 2
"""
# Runs only queue: the sensor test creates many and never needs them executed.
NO_LAUNCHES = "run_coordinator:\n  config: {max_concurrent_runs: 0}\n"
# `dagctl daemon run`, as in production (`dev` also cancels runs when it stops).
DAEMON_RUN = ("daemon", "run")
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

HEADER = """
import pathlib
import time

from dagd import Definitions, RunRequest, SkipReason, job, schedule, sensor

HERE = pathlib.Path(__file__).parent


@job
def noop(context):
    pass
"""


# -- helpers -------------------------------------------------------------------------------------


def write_defs(path: pathlib.Path, body: str) -> pathlib.Path:
    path.write_text(HEADER + body)
    return path


def ok(result: Result, what: str) -> Result:
    assert result.code == 0, f"{what} exited {result.code}: {result.stderr}"
    return result


def api(dagd: DagdProcess) -> Client:
    return Client.for_home(dagd.home)


def ticks(dagd: DagdProcess, kind: str, name: str) -> list[dict[str, Any]]:
    """Every tick, oldest first."""
    with api(dagd) as client:
        return list(reversed(client.list_ticks(kind, name, 1000)))


def finished_ticks(dagd: DagdProcess, kind: str, name: str) -> list[dict[str, Any]]:
    return [t for t in ticks(dagd, kind, name) if t["status"] != "STARTED"]


def runs(dagd: DagdProcess, **tags: str) -> list[dict[str, Any]]:
    with api(dagd) as client:
        listed, _ = client.list_runs(tags=tags, limit=1000)
    return listed


def instigator(dagd: DagdProcess, kind: str, name: str) -> dict[str, Any]:
    with api(dagd) as client:
        return next(i for i in client.list_instigators(kind) if i["name"] == name)


def location(dagd: DagdProcess, name: str) -> dict[str, Any] | None:
    with api(dagd) as client:
        return next((loc for loc in client.instance_info()["code_locations"] if loc["name"] == name), None)


def cursor(dagd: DagdProcess, name: str) -> str | None:
    """What ``dagctl sensors cursor NAME --json`` prints (from the same API call)."""
    value: str | None = instigator(dagd, "sensor", name)["cursor"]
    return value


def daemon(dagd: DagdProcess, name: str) -> dict[str, Any]:
    with api(dagd) as client:
        return next(d for d in client.daemon_status()["daemons"] if d["name"] == name)


def wait_more_ticks(dagd: DagdProcess, kind: str, name: str, more: int, timeout: float = 20) -> int:
    """Wait until ``name`` has finished ``more`` ticks beyond now; the new count."""
    start = len(finished_ticks(dagd, kind, name))
    return wait_for(
        lambda: (n := len(finished_ticks(dagd, kind, name))) >= start + more and n,
        timeout,
        f"{more} more ticks of {kind} {name} (had {start})",
    )


def wait_run_status(dagd: DagdProcess, run_id: str, status: str = "SUCCESS", timeout: float = 30) -> None:
    """Wait for ``status``; a run that finishes otherwise fails at once, with its error."""

    def reached() -> bool:
        with api(dagd) as client:
            run = client.get_run(run_id)[0]
        if run["status"] != status and run["status"] in FINISHED:
            pytest.fail(f"run {run_id} ended {run['status']}, not {status}: {run['error']}")
        return bool(run["status"] == status)

    wait_for(reached, timeout, f"run {run_id} to reach {status}")


def submit(dagd: DagdProcess, job: str) -> str:
    return str(ok(dagd.ctl("submit", job, "--json"), f"submit {job}").json()["run_id"])


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def by_key(found: list[dict[str, Any]]) -> dict[str, int]:
    """How many runs carry each ``key`` tag."""
    counts: dict[str, int] = {}
    for run in found:
        counts[run["tags"]["key"]] = counts.get(run["tags"]["key"], 0) + 1
    return counts


# -- schedules -----------------------------------------------------------------------------------

SCHEDULES = """
@schedule(cron_schedule="* * * * *", job=noop, default_status="RUNNING",
          tags={"dagd/priority": "4", "team": "data"})
def every_minute(context):
    return None  # one run with the schedule's defaults


@schedule(cron_schedule="* * * * *", job=noop, default_status="RUNNING")
def skipping(context):
    return SkipReason(f"nothing to do at {context.scheduled_execution_time:%H:%M}")


@schedule(cron_schedule="* * * * *", job=noop, default_status="RUNNING")
def raising(context):
    raise RuntimeError("schedule exploded on purpose")


@schedule(cron_schedule="* * * * *", job=noop, default_status="RUNNING")
def slow(context):
    time.sleep(8)  # longer than FAST's 5 s heartbeat timeout, well inside the evaluation timeout
    return None


@sensor(job=noop, minimum_interval_seconds=1)
def hangs(context):
    time.sleep(3600)


@sensor(job=noop, minimum_interval_seconds=1, default_status="RUNNING")
def quick(context):
    return SkipReason("nothing new")


@sensor(job=noop, minimum_interval_seconds=1)
def raises(context):
    seen = context.cursor
    context.update_cursor("moved")
    raise ValueError(f"sensor broke at cursor {seen}")


defs = Definitions(
    jobs=[noop], schedules=[every_minute, skipping, raising, slow], sensors=[hangs, quick, raises]
)
"""


def check_failing_sensors(dagd: DagdProcess) -> None:
    """A hanging or raising sensor fails its own ticks; another sensor keeps its cadence."""
    # Raising: FAILURE with the exception's text, and the cursor does not move.
    ok(dagd.ctl("sensors", "cursor", "raises", "--set", "start"), "sensors cursor --set")
    ok(dagd.ctl("sensors", "start", "raises"), "sensors start raises")
    ok(dagd.ctl("sensors", "start", "hangs"), "sensors start hangs")

    hung = wait_for(
        lambda: (t := finished_ticks(dagd, "sensor", "hangs")) and len(t) >= 3 and t,
        40,
        "three timed-out ticks of the hanging sensor",
    )
    # Each timed-out evaluation leaves a thread behind in the code server, which recycles itself
    # after a few: stop the sensor so the schedules below are evaluated by this same server.
    ok(dagd.ctl("sensors", "stop", "hangs"), "sensors stop hangs")
    for tick in hung:
        assert tick["status"] == "FAILURE" and "timed out after 2s" in (tick["error"] or ""), tick
    # Over the ~6 s the hanging sensor spent in three evaluations, the quick one kept its cadence.
    window_start = parse_time(hung[0]["started_at"]) - timedelta(seconds=2)
    window_end = parse_time(hung[2]["started_at"])
    assert (window_end - window_start).total_seconds() >= 5.5
    quick = [
        t
        for t in finished_ticks(dagd, "sensor", "quick")
        if window_start <= parse_time(t["started_at"]) <= window_end
    ]
    assert len(quick) >= 4, (window_start, window_end, quick)
    assert all(t["status"] == "SKIPPED" and t["skip_reason"] == "nothing new" for t in quick)

    failed = wait_for(lambda: finished_ticks(dagd, "sensor", "raises"), 10, "a tick of the raising sensor")
    assert failed[0]["status"] == "FAILURE", failed
    assert "ValueError: sensor broke at cursor start" in (failed[0]["error"] or ""), failed
    assert ok(dagd.ctl("sensors", "cursor", "raises"), "sensors cursor").stdout.strip() == "start"
    with api(dagd) as client:
        assert all(d["healthy"] for d in client.daemon_status()["daemons"])


@pytest.mark.timeout(150)
def test_schedules_tick_once_at_the_next_minute_and_failing_sensors_fail_only_their_own_ticks(
    dagd: DagdProcess, tmp_path: pathlib.Path
) -> None:
    """The one test that waits for a minute boundary; the failing sensors are checked meanwhile."""
    defs = write_defs(tmp_path / "schedules_defs.py", SCHEDULES)
    dagd.write_config(FAST + "sensors:\n  evaluation_timeout_seconds: 2\n")
    started = datetime.now(timezone.utc)
    dagd.start("-f", str(defs))

    # (A bad cron refuses the whole location when it loads: tests/e2e/test_first_hour_e2e.py.)
    listed = {
        s["name"]: s
        for s in ok(dagd.ctl("schedules", "list", "--json"), "schedules list").json()["schedules"]
    }
    listed_at = datetime.now(timezone.utc)
    assert set(listed) == {"every_minute", "skipping", "raising", "slow"}
    for name in ("every_minute", "skipping", "raising", "slow"):
        assert listed[name]["definition_error"] is None and listed[name]["status"] == "RUNNING", listed[name]
    info = ok(dagd.ctl("instance", "info", "--json"), "instance info").json()
    (loc,) = info["code_locations"]
    assert loc["load_error"] is None and loc["definition_errors"] == []
    assert loc["jobs"] == ["noop"] and len(loc["schedules"]) == 4 and len(loc["sensors"]) == 3

    check_failing_sensors(dagd)

    # The first tick is the first minute boundary after the schedule started: none for the past.
    def first_tick(name: str) -> dict[str, Any] | None:
        done = finished_ticks(dagd, "schedule", name)
        return done[0] if done else None

    tick = wait_for(lambda: first_tick("every_minute"), 80, "every_minute's first tick")
    due = parse_time(tick["scheduled_time"])
    assert due.second == 0 and due.microsecond == 0
    assert started < due <= listed_at.replace(second=0, microsecond=0) + timedelta(minutes=1), (started, due)
    stamp = tick["scheduled_time"]
    assert tick["status"] == "SUCCESS" and len(tick["run_ids"]) == 1, tick
    skipped = wait_for(lambda: first_tick("skipping"), 10, "skipping's first tick")
    failed = wait_for(lambda: first_tick("raising"), 10, "raising's first tick")

    # Exactly one tick for that minute, and its one run carries the schedule's tags.
    at_due = [t for t in ticks(dagd, "schedule", "every_minute") if t["scheduled_time"] == stamp]
    assert len(at_due) == 1, at_due
    scheduled = runs(dagd, **{"dagd/schedule": "every_minute", "dagd/scheduled_time": stamp})
    assert [r["run_id"] for r in scheduled] == tick["run_ids"]
    (run,) = scheduled
    assert run["job_name"] == "noop" and run["priority"] == 4
    assert run["tags"]["team"] == "data" and run["tags"]["dagd/priority"] == "4"
    wait_run_status(dagd, run["run_id"])

    # SkipReason: a SKIPPED tick with the reason, no run. An exception: a FAILURE tick with its text.
    assert skipped["scheduled_time"] == stamp and skipped["status"] == "SKIPPED", skipped
    assert skipped["skip_reason"] == f"nothing to do at {due:%H:%M}" and not skipped["run_ids"]
    assert failed["scheduled_time"] == stamp and failed["status"] == "FAILURE", failed
    assert "RuntimeError: schedule exploded on purpose" in (failed["error"] or ""), failed
    assert not runs(dagd, **{"dagd/schedule": "skipping"}) and not runs(dagd, **{"dagd/schedule": "raising"})
    shown = ok(dagd.ctl("schedules", "ticks", "raising", "--json"), "schedules ticks").json()["ticks"]
    assert shown[-1]["id"] == failed["id"] and "exploded" in shown[-1]["error"]

    # A schedule slower than the heartbeat timeout: the scheduler announced the bounded wait, so
    # it was not killed as hung (was: killed, and the tick re-evaluated by the next one, forever).
    slow_tick = wait_for(lambda: first_tick("slow"), 30, "slow's first tick")
    assert slow_tick["scheduled_time"] == stamp and slow_tick["status"] == "SUCCESS", slow_tick
    assert len(slow_tick["run_ids"]) == 1, slow_tick
    scheduler = dagd.daemons()["scheduler"]
    assert scheduler["restarts"] == 0 and scheduler["healthy"], scheduler


# -- sensors -------------------------------------------------------------------------------------

SENSORS = '''
LIMIT = HERE / "limit.txt"


@sensor(job=noop, minimum_interval_seconds=1, default_status="RUNNING")
def counter(context):
    """Counts up to the number in limit.txt, one run per step; then asks for at-<cursor> every tick."""
    n = int(context.cursor or 0)
    if n < int(LIMIT.read_text()):
        context.update_cursor(str(n + 1))
        return RunRequest(run_key=f"n{n + 1}", tags={"key": f"n{n + 1}", "seen": str(n)})
    return RunRequest(run_key=f"at-{n}", tags={"key": f"at-{n}"})


@sensor(job=noop, minimum_interval_seconds=1, default_status="RUNNING")
def same_key(context):
    yield RunRequest(run_key="same", tags={"key": "same"})
    yield RunRequest(run_key="same", tags={"key": "same"})


defs = Definitions(jobs=[noop], sensors=[counter, same_key])
'''


@pytest.mark.timeout(120)
def test_sensor_runs_cursor_and_run_key_dedupe_survive_daemon_and_supervisor_restarts(
    dagd: DagdProcess, tmp_path: pathlib.Path
) -> None:
    defs = write_defs(tmp_path / "sensor_defs.py", SENSORS)
    limit = tmp_path / "limit.txt"
    limit.write_text("3")
    dagd.write_config(FAST + NO_LAUNCHES)
    dagd.start("-f", str(defs), command=DAEMON_RUN)

    # Runs are created and the cursor is persisted.
    wait_for(lambda: cursor(dagd, "counter") == "3", 20, "counter's cursor to reach 3")
    assert ok(dagd.ctl("sensors", "cursor", "counter"), "sensors cursor").stdout.strip() == "3"
    assert ok(dagd.ctl("sensors", "cursor", "counter", "--json"), "cursor --json").json() == {
        "name": "counter",
        "cursor": "3",
    }
    wait_for(lambda: runs(dagd, key="at-3"), 10, "the run for at-3")
    wait_more_ticks(dagd, "sensor", "counter", 2)  # at-3 asked for again, twice
    counted = runs(dagd, **{"dagd/sensor": "counter"})
    assert by_key(counted) == {"n1": 1, "n2": 1, "n3": 1, "at-3": 1}
    assert {r["tags"]["key"]: r["tags"].get("seen") for r in counted if r["tags"]["key"] != "at-3"} == {
        "n1": "0", "n2": "1", "n3": "2",
    }  # fmt: skip

    # One run per run key: across ticks, and within one tick (two identical keys).
    wait_for(lambda: len(finished_ticks(dagd, "sensor", "same_key")) >= 3, 15, "3 ticks of same_key")
    (same,) = runs(dagd, **{"dagd/sensor": "same_key"})
    first, *later = finished_ticks(dagd, "sensor", "same_key")
    assert first["status"] == "SUCCESS" and first["run_ids"] == [same["run_id"]], first
    assert all(t["status"] == "SKIPPED" and "requested before" in t["skip_reason"] for t in later), later

    # ... and across a restart of the sensor daemon.
    old_pid = daemon(dagd, "sensor")["pid"]
    ok(dagd.ctl("daemons", "restart", "sensor"), "daemons restart sensor")
    wait_for(
        lambda: (d := daemon(dagd, "sensor"))["healthy"] and d["pid"] != old_pid, 15, "a new sensor daemon"
    )
    wait_more_ticks(dagd, "sensor", "same_key", 2)
    assert [r["run_id"] for r in runs(dagd, **{"dagd/sensor": "same_key"})] == [same["run_id"]]

    # Stopping a sensor stops its evaluations: once the stop has been seen (the daemon re-reads
    # states every second; one evaluation may be in flight), its tick count stops growing.
    stopped = ok(dagd.ctl("sensors", "stop", "same_key", "--json"), "sensors stop").json()
    assert stopped["status"] == "STOPPED"
    wait_more_ticks(dagd, "sensor", "counter", 3)  # the other sensor is the clock
    after_stop = len(finished_ticks(dagd, "sensor", "same_key"))
    wait_more_ticks(dagd, "sensor", "counter", 3)
    assert len(finished_ticks(dagd, "sensor", "same_key")) == after_stop

    # ... and that survives a supervisor restart, as does the cursor, which continues from 3.
    dagd.stop()
    assert dagd.wait_exit() == 0
    limit.write_text("5")
    dagd.start("-f", str(defs), command=DAEMON_RUN)
    assert instigator(dagd, "sensor", "same_key")["status"] == "STOPPED"
    wait_for(lambda: cursor(dagd, "counter") == "5", 20, "counter's cursor to continue to 5")
    wait_more_ticks(dagd, "sensor", "counter", 3)
    assert len(finished_ticks(dagd, "sensor", "same_key")) == after_stop
    counted = runs(dagd, **{"dagd/sensor": "counter"})
    assert by_key(counted) == {"n1": 1, "n2": 1, "n3": 1, "at-3": 1, "n4": 1, "n5": 1, "at-5": 1}
    assert {r["tags"]["key"]: r["tags"].get("seen") for r in counted if r["tags"]["key"] in ("n4", "n5")} == {
        "n4": "3", "n5": "4",
    }  # fmt: skip

    # A cursor set by hand is what the next evaluation sees (the sensor is at its limit: it no
    # longer writes the cursor, so no evaluation in flight can overwrite the value set).
    ok(dagd.ctl("sensors", "cursor", "counter", "--set", "100"), "sensors cursor --set")
    wait_for(lambda: runs(dagd, key="at-100"), 10, "a run asked for with cursor 100")
    assert ok(dagd.ctl("sensors", "cursor", "counter"), "sensors cursor").stdout.strip() == "100"


# -- live reload ---------------------------------------------------------------------------------

ONLY_A = """
@job
def a(context):
    pass


defs = Definitions(jobs=[a])
"""

A_AND_B = """
@job
def a(context):
    pass


@job
def b(context):
    pass


@sensor(job=b, minimum_interval_seconds=1, default_status="RUNNING")
def ticker(context):
    return SkipReason("tick")


defs = Definitions(jobs=[a, b], sensors=[ticker])
"""


@pytest.mark.timeout(120)
def test_edited_definitions_reload_live_and_a_broken_edit_keeps_the_last_good_ones(
    dagd: DagdProcess, tmp_path: pathlib.Path
) -> None:
    defs = write_defs(tmp_path / "live_defs.py", ONLY_A)
    dagd.write_config(FAST)
    dagd.start("-f", str(defs))
    before = location(dagd, "live_defs")
    assert before is not None and before["jobs"] == ["a"]
    generation = before["server"]["generation"]
    server_pid = before["server"]["pid"]

    # An edit adds a job and a sensor: submittable within a few seconds, nothing restarted.
    write_defs(defs, A_AND_B)
    edited = time.monotonic()
    wait_for(
        lambda: (loc := location(dagd, "live_defs")) and "b" in loc["jobs"],
        10,
        "job b to appear after the edit",
    )
    run_b = submit(dagd, "b")
    assert time.monotonic() - edited < 10
    info = ok(dagd.ctl("instance", "info", "--json"), "instance info").json()
    (loc,) = info["code_locations"]
    assert loc["server"]["generation"] == generation + 1 and loc["server"]["pid"] == server_pid
    assert loc["sensors"] == ["ticker"] and loc["load_error"] is None
    wait_for(lambda: finished_ticks(dagd, "sensor", "ticker"), 10, "the new sensor's first tick")
    wait_run_status(dagd, run_b)

    # A syntax error: reported as load_error; the last good definitions keep working.
    defs.write_text(defs.read_text() + "\ndef broken(:\n    pass\n")
    broken = wait_for(
        lambda: (loc := location(dagd, "live_defs")) and loc["load_error"] and loc, 10, "the load error"
    )
    assert "SyntaxError" in broken["load_error"], broken
    assert broken["server"]["generation"] == generation + 1 and "b" in broken["jobs"]
    info = ok(dagd.ctl("instance", "info", "--json"), "instance info").json()
    assert "SyntaxError" in (info["code_locations"][0]["load_error"] or "")
    submit(dagd, "a")  # accepted: the job is in the last good definitions (how it runs: see below)
    wait_more_ticks(dagd, "sensor", "ticker", 2)

    # Fixed: the error clears and the fixed file is the next generation.
    write_defs(defs, A_AND_B + "\n# fixed\n")
    fixed = wait_for(
        lambda: (loc := location(dagd, "live_defs")) and loc["load_error"] is None and loc,
        10,
        "the load error to clear",
    )
    assert fixed["server"]["generation"] == generation + 2 and fixed["server"]["pid"] == server_pid


@pytest.mark.timeout(60)
def test_run_submitted_while_the_file_is_broken_runs_the_last_good_definitions(
    dagd: DagdProcess, tmp_path: pathlib.Path
) -> None:
    defs = write_defs(tmp_path / "broken_defs.py", ONLY_A)
    dagd.write_config(FAST)
    dagd.start("-f", str(defs))
    defs.write_text(defs.read_text() + "\ndef broken(:\n    pass\n")
    wait_for(lambda: (loc := location(dagd, "broken_defs")) and loc["load_error"], 10, "the load error")
    run_id = submit(dagd, "a")
    wait_run_status(dagd, run_id)
    # The run's log says it ran the last good copy, and why.
    logs = ok(dagd.ctl("runs", "logs", run_id), "runs logs").stdout
    assert "running the last good definitions of broken_defs instead" in logs, logs
    assert "SyntaxError" in logs, logs


@pytest.mark.timeout(120)
def test_workspace_edit_adds_a_location_live_and_a_killed_code_server_is_replaced(
    dagd: DagdProcess, tmp_path: pathlib.Path
) -> None:
    write_defs(tmp_path / "first_loc.py", "defs = Definitions(jobs=[noop])\n")
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from:\n  - python_file: first_loc.py\n")
    dagd.write_config(FAST)
    dagd.start("-w", str(workspace))
    supervisor_pid = dagd.pid
    info = ok(dagd.ctl("instance", "info", "--json"), "instance info").json()
    assert [loc["name"] for loc in info["code_locations"]] == ["first_loc"]
    assert dagd.ctl("submit", "second_job").code == 5

    # A location added to workspace.yaml: its jobs are submittable within seconds, no restart.
    write_defs(
        tmp_path / "second_loc.py",
        "@job\ndef second_job(context):\n    pass\n\n\ndefs = Definitions(jobs=[second_job])\n",
    )
    workspace.write_text("load_from:\n  - python_file: first_loc.py\n  - python_file: second_loc.py\n")
    edited = time.monotonic()
    wait_for(
        lambda: (loc := location(dagd, "second_loc")) and "second_job" in loc["jobs"],
        10,
        "the second location's job",
    )
    run_id = submit(dagd, "second_job")
    assert time.monotonic() - edited < 10
    wait_run_status(dagd, run_id)
    assert dagd.pid == supervisor_pid and dagd.proc is not None and dagd.proc.poll() is None

    # A code server SIGKILLed: the supervisor starts another; submissions work again in seconds.
    first = location(dagd, "first_loc")
    assert first is not None
    old = first["server"]["pid"]
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()

    def replaced() -> dict[str, Any] | None:
        loc = location(dagd, "first_loc")
        server = loc["server"] if loc else {}
        return loc if server.get("healthy") and server.get("pid") not in (None, old) else None

    wait_for(replaced, 15, "a new code server for first_loc")
    run_id = submit(dagd, "noop")
    assert time.monotonic() - killed < 10
    wait_run_status(dagd, run_id)
    # The daemons were not disturbed by it.
    status = json.loads(ok(dagd.ctl("daemons", "status", "--json"), "daemons status").stdout)
    assert all(d["healthy"] and d["restarts"] == 0 for d in status["daemons"]), status
