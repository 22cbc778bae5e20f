"""The run queue end to end: a real supervisor and ``run_queue`` daemon, real run workers, and
only the ``dagctl`` command line to drive and observe them (SPEC §4).

Launch order is read from each run's STARTING event, written by the daemon when it claims the run.
Tests that compare the order of runs submitted together pause the queue, submit, and resume, so
the daemon sees them all in one pass instead of as they trickle in.

What a user types goes through ``dagctl`` (submit, ``runs why``, ``queue pause|resume|status``,
``runs terminate``). Polling and bulk setup use the gRPC client in-process instead: the same API
``dagctl`` calls, without a Python start-up (most of a second on a busy machine) per look.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psutil
import pytest
from helpers.procs import DagdProcess, wait_for

from dagd.client.client import Client

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
IN_PROGRESS = {"STARTING", "STARTED", "CANCELING"}
# Most tests poll the queue twice a second so "it stayed queued" is decided quickly; the wake on
# submission is tested on its own with the default interval.
FAST_POLL = 0.5


# -- config ------------------------------------------------------------------------------------------


def queue_config(
    max_concurrent_runs: int = 10,
    limits: Sequence[dict[str, Any]] = (),
    dequeue_interval_seconds: float | None = FAST_POLL,
) -> str:
    config: dict[str, Any] = {"max_concurrent_runs": max_concurrent_runs}
    if limits:
        config["tag_concurrency_limits"] = list(limits)
    if dequeue_interval_seconds is not None:
        config["dequeue_interval_seconds"] = dequeue_interval_seconds
    # JSON is YAML: one line, no quoting surprises.
    return f"run_coordinator:\n  config: {json.dumps(config)}\ndaemons:\n  heartbeat_interval_seconds: 0.5\n"


# -- dagctl helpers ------------------------------------------------------------------------------------


def ok(result: Any, what: str) -> Any:
    assert result.code == 0, f"{what} exited {result.code}: {result.stderr}"
    return result


def submit(dagd: DagdProcess, job: str, *args: str) -> dict[str, Any]:
    return ok(dagd.ctl("submit", job, *args, "--json"), f"submit {job} {args}").json()


def sleeper(dagd: DagdProcess, seconds: float, *tags: str, priority: int | None = None) -> str:
    args = ["--config", json.dumps({"seconds": seconds})]
    for tag in tags:
        args += ["--tag", tag]
    if priority is not None:
        args += ["--priority", str(priority)]
    return str(submit(dagd, "sleeper", *args)["run_id"])


def api(dagd: DagdProcess) -> Client:
    return Client.for_home(dagd.home)


def sleepers(dagd: DagdProcess, count: int, seconds: float, tags: dict[str, str] | None = None) -> list[str]:
    """``count`` sleeper runs submitted over the API (setup, where the CLI is not under test)."""
    with api(dagd) as client:
        return [
            client.submit("sleeper", tags=tags, run_config={"seconds": seconds})["run_id"]
            for _ in range(count)
        ]


def show(dagd: DagdProcess, run_id: str) -> dict[str, Any]:
    """The run with its events, as ``runs show --json`` prints it."""
    with api(dagd) as client:
        run, events = client.get_run(run_id)
    return {**run, "events": events}


def why(dagd: DagdProcess, run_id: str) -> dict[str, Any]:
    return ok(dagd.ctl("runs", "why", run_id, "--json"), f"runs why {run_id}").json()


def queue_status(dagd: DagdProcess) -> dict[str, Any]:
    return ok(dagd.ctl("queue", "status", "--json"), "queue status").json()


def statuses(dagd: DagdProcess, run_ids: Iterable[str]) -> dict[str, str]:
    """Every run's status from one list call."""
    with api(dagd) as client:
        listed, _ = client.list_runs(limit=1000)
    by_id = {r["run_id"]: r["status"] for r in listed}
    return {run_id: by_id[run_id] for run_id in run_ids}


def wait_statuses(
    dagd: DagdProcess, expected: dict[str, set[str]], timeout: float = 30, what: str = ""
) -> dict[str, str]:
    """Wait until each run's status is one of its expected ones; report the last seen on timeout."""
    seen: dict[str, str] = {}

    def reached() -> bool:
        seen.update(statuses(dagd, expected))
        return all(seen[r] in wanted for r, wanted in expected.items())

    try:
        wait_for(reached, timeout, what or f"runs to reach {expected}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {seen}\n{dagd.log()}") from None
    return seen


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def event_time(run: dict[str, Any], status: str) -> datetime:
    times = [parse_time(e["at"]) for e in run["events"] if e["status"] == status]
    assert len(times) == 1, f"expected one {status} event: {run['events']}"
    return times[0]


def run_queue_daemon(dagd: DagdProcess) -> dict[str, Any]:
    """The run_queue entry of ``daemons status --json`` (info, iteration, health)."""
    with api(dagd) as client:
        return next(d for d in client.daemon_status()["daemons"] if d["name"] == "run_queue")


def wait_queue_passes(dagd: DagdProcess, passes: int = 2, timeout: float = 20) -> None:
    """Wait until the run_queue daemon has finished ``passes`` more passes (from its heartbeat)."""
    start = run_queue_daemon(dagd)["iteration"]
    wait_for(
        lambda: run_queue_daemon(dagd)["iteration"] >= start + passes,
        timeout,
        f"{passes} more run_queue passes after iteration {start}",
    )


def pause(dagd: DagdProcess) -> None:
    assert ok(dagd.ctl("queue", "pause", "--json"), "queue pause").json()["paused"] is True


def resume(dagd: DagdProcess) -> None:
    assert ok(dagd.ctl("queue", "resume", "--json"), "queue resume").json()["paused"] is False


def launch_order(dagd: DagdProcess, run_ids: Iterable[str]) -> list[str]:
    starting = {run_id: event_time(show(dagd, run_id), "STARTING") for run_id in run_ids}
    return sorted(starting, key=starting.__getitem__)


# -- queuing semantics -----------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_run_blocked_by_a_tag_limit_does_not_block_later_runs(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    """SPEC §4's example: limit foo: 1; A(foo=bar), B(foo=bar), C(untagged) launch A, C, then B."""
    dagd.write_config(queue_config(100, [{"key": "foo", "limit": 1}]))
    dagd.start("-f", str(defs_file))
    pause(dagd)
    a = sleeper(dagd, 4, "foo=bar")
    b = sleeper(dagd, 0.5, "foo=bar")
    c = sleeper(dagd, 4)
    resume(dagd)

    wait_statuses(dagd, {a: IN_PROGRESS, c: IN_PROGRESS}, what="A and C to launch together")
    assert show(dagd, b)["status"] == "QUEUED", "B launched while A held foo"
    held = why(dagd, b)
    assert held["holders"] == [a] and held["reasons"][0].startswith("tag limit foo"), held

    wait_statuses(dagd, {a: {"SUCCESS"}, b: {"SUCCESS"}, c: {"SUCCESS"}}, timeout=40)
    runs = {run_id: show(dagd, run_id) for run_id in (a, b, c)}
    a_start, b_start, c_start = (event_time(runs[r], "STARTING") for r in (a, b, c))
    assert max(a_start, c_start) < b_start, "B launched before A or C"
    assert b_start >= parse_time(runs[a]["ended_at"]), "B launched before A finished"
    assert abs((c_start - a_start).total_seconds()) < 1.5, "A and C were not launched in one pass"


@pytest.mark.timeout(150)
def test_higher_priority_launches_first_then_submission_order(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    """One slot: the queue drains by priority, FIFO within a priority; --priority overrides code."""
    dagd.write_config(queue_config(1))
    dagd.start("-f", str(defs_file))
    pause(dagd)
    low = sleeper(dagd, 0.5, priority=-1)
    zero_first = sleeper(dagd, 0.5, priority=0)
    overridden = submit(dagd, "prioritized", "--priority", "-1")  # priority 3 in code
    high = sleeper(dagd, 0.5, priority=3)
    zero_second = sleeper(dagd, 0.5)  # no --priority: 0
    from_code = submit(dagd, "prioritized")
    assert overridden["priority"] == -1 and overridden["tags"]["dagd/priority"] == "-1"
    assert from_code["priority"] == 3 and from_code["tags"]["dagd/priority"] == "3"
    resume(dagd)

    order = [high, from_code["run_id"], zero_first, zero_second, low, overridden["run_id"]]
    wait_statuses(dagd, {r: {"SUCCESS"} for r in order}, timeout=60)
    assert launch_order(dagd, order) == order
    # One slot means strictly one at a time: each run launched after the previous one ended.
    runs = [show(dagd, r) for r in order]
    for before, after in zip(runs, runs[1:], strict=False):
        assert event_time(after, "STARTING") >= parse_time(before["ended_at"]), (before, after)


@pytest.mark.timeout(120)
def test_key_value_and_per_unique_value_limits(dagd: DagdProcess, defs_file: pathlib.Path) -> None:
    dagd.write_config(
        queue_config(
            100,
            [
                {"key": "database", "value": "redshift", "limit": 1},
                {"key": "use-case", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
            ],
        )
    )
    dagd.start("-f", str(defs_file))
    pause(dagd)
    redshift = sleepers(dagd, 2, 60, {"database": "redshift"})
    postgres = sleepers(dagd, 2, 60, {"database": "postgres"})  # not limited
    case_a = sleepers(dagd, 2, 60, {"use-case": "a"})
    case_b = sleepers(dagd, 2, 60, {"use-case": "b"})
    resume(dagd)

    launched = [redshift[0], *postgres, case_a[0], case_b[0]]
    held = [redshift[1], case_a[1], case_b[1]]
    wait_statuses(dagd, {r: {"STARTED"} for r in launched})
    wait_queue_passes(dagd)
    assert statuses(dagd, held) == {r: "QUEUED" for r in held}

    assert "database=redshift (limit 1)" in why(dagd, redshift[1])["summary"]
    for run_id, value, holder in ((case_a[1], "a", case_a[0]), (case_b[1], "b", case_b[0])):
        explained = why(dagd, run_id)
        assert any("use-case=<each value>" in r and f"use-case={value}" in r for r in explained["reasons"])
        assert explained["holders"] == [holder], "each value's slot is held by its own run"
    usage = {u["limit"]: (u["in_use"], u["capacity"]) for u in queue_status(dagd)["tag_limits"]}
    assert usage["database=redshift (limit 1)"] == (1, 1)
    assert usage["use-case=a (per value)"] == (1, 1) and usage["use-case=b (per value)"] == (1, 1)


@pytest.mark.timeout(120)
def test_overlapping_limits_the_tightest_wins(dagd: DagdProcess, defs_file: pathlib.Path) -> None:
    dagd.write_config(
        queue_config(
            100,
            [{"key": "team", "limit": 2}, {"key": "team", "value": "ml", "limit": 1}],
        )
    )
    dagd.start("-f", str(defs_file))
    pause(dagd)
    ml = sleepers(dagd, 2, 60, {"team": "ml"})
    bi = sleepers(dagd, 2, 60, {"team": "bi"})
    resume(dagd)

    # ml[0] takes team=ml's only slot and one of team's two; bi[0] the other; the rest wait.
    wait_statuses(dagd, {ml[0]: {"STARTED"}, bi[0]: {"STARTED"}})
    wait_queue_passes(dagd)
    assert statuses(dagd, [ml[1], bi[1]]) == {ml[1]: "QUEUED", bi[1]: "QUEUED"}
    ml_why = why(dagd, ml[1])
    assert any(r.startswith("tag limit team=ml (limit 1)") for r in ml_why["reasons"]), ml_why
    assert any(r.startswith("tag limit team (any value, limit 2)") for r in ml_why["reasons"]), ml_why
    bi_why = why(dagd, bi[1])
    assert [r.split(":")[0] for r in bi_why["reasons"]] == ["tag limit team (any value, limit 2)"]
    assert set(bi_why["holders"]) == {ml[0], bi[0]}


@pytest.mark.timeout(120)
def test_max_concurrent_runs_zero_launches_nothing_and_says_why(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    dagd.write_config(queue_config(0))
    dagd.start("-f", str(defs_file))
    run_ids = [submit(dagd, "hello")["run_id"] for _ in range(2)]
    wait_for(lambda: run_queue_daemon(dagd)["info"].get("queued") == 2, 20, "a queue pass that saw both runs")
    wait_queue_passes(dagd)
    assert statuses(dagd, run_ids) == {r: "QUEUED" for r in run_ids}
    explained = why(dagd, run_ids[1])
    assert explained["status"] == "QUEUED" and explained["position"] == 2
    assert any("max_concurrent_runs is 0" in r for r in explained["reasons"]), explained
    assert "max_concurrent_runs is 0" in ok(dagd.ctl("runs", "why", run_ids[0]), "runs why").stdout


@pytest.mark.timeout(120)
def test_max_concurrent_runs_minus_one_launches_everything_at_once(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    dagd.write_config(queue_config(-1))
    dagd.start("-f", str(defs_file))
    pause(dagd)
    run_ids = sleepers(dagd, 6, 60)
    resume(dagd)
    wait_statuses(dagd, {r: {"STARTED"} for r in run_ids}, what="all six runs STARTED together")
    starts = [event_time(show(dagd, r), "STARTING") for r in run_ids]
    assert (max(starts) - min(starts)).total_seconds() < 1.5, "the six were not launched in one pass"
    assert queue_status(dagd)["in_progress"] == 6


# -- explaining, pausing, terminating -------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_runs_why_names_the_limit_the_holder_and_the_place_in_line(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    dagd.write_config(queue_config(100, [{"key": "foo", "limit": 1}]))
    dagd.start("-f", str(defs_file))
    holder = sleeper(dagd, 60, "foo=bar")
    wait_statuses(dagd, {holder: {"STARTED"}})
    first = sleeper(dagd, 60, "foo=bar")
    second = sleeper(dagd, 60, "foo=baz", priority=-1)  # behind `first` in line
    wait_queue_passes(dagd)

    explained = why(dagd, second)
    assert explained["status"] == "QUEUED" and explained["position"] == 2
    assert explained["reasons"] == ["tag limit foo (any value, limit 1): 1 in progress"]
    assert explained["holders"] == [holder]
    assert explained["queue_paused"] is False and explained["launchable"] is False
    assert why(dagd, first)["position"] == 1
    human = ok(dagd.ctl("runs", "why", first), "runs why").stdout
    assert "number 1 in line" in human and "foo (any value, limit 1)" in human and holder in human

    ok(dagd.ctl("runs", "terminate", holder), "terminate")
    wait_statuses(dagd, {holder: {"CANCELED"}})
    finished = why(dagd, holder)
    assert finished["status"] == "CANCELED" and "not queued" in finished["summary"]
    assert finished["reasons"] == [] and finished["position"] is None

    unknown = dagd.ctl("runs", "why", "no-such-run")
    assert unknown.code == 5, (unknown.code, unknown.stderr)
    assert "no-such-run" in unknown.stderr


@pytest.mark.timeout(150)
def test_pause_holds_runs_survives_a_restart_and_resume_launches(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    dagd.write_config(queue_config())
    dagd.start("-f", str(defs_file))
    pause(dagd)
    status = queue_status(dagd)
    assert status["paused"] is True and status["queue_daemon_healthy"] is True
    run_id = submit(dagd, "hello")["run_id"]
    wait_for(lambda: run_queue_daemon(dagd)["info"].get("paused") is True, 20, "run_queue to report paused")
    wait_queue_passes(dagd)
    assert show(dagd, run_id)["status"] == "QUEUED"
    listed = ok(dagd.ctl("daemons", "status", "--json"), "daemons status").json()["daemons"]
    assert next(d for d in listed if d["name"] == "run_queue")["info"]["paused"] is True
    explained = why(dagd, run_id)
    assert explained["queue_paused"] is True and "paused" in explained["summary"]
    assert explained["launchable"] is False
    assert "PAUSED" in ok(dagd.ctl("queue", "status"), "queue status").stdout
    # Nothing blocks either run, but the later one goes first: its priority is higher.
    # Was: both said position 1.
    urgent = submit(dagd, "hello", "--priority", "5")["run_id"]
    assert why(dagd, urgent)["position"] == 1
    assert why(dagd, run_id)["position"] == 2
    assert "number 2 in launch order" in ok(dagd.ctl("runs", "why", run_id), "runs why").stdout

    dagd.stop()
    dagd.start("-f", str(defs_file))
    assert queue_status(dagd)["paused"] is True, "the pause did not survive a restart"
    wait_for(lambda: run_queue_daemon(dagd)["info"].get("paused") is True, 20, "run_queue to report paused")
    wait_queue_passes(dagd)
    assert show(dagd, run_id)["status"] == "QUEUED"

    resume(dagd)
    wait_statuses(dagd, {run_id: {"SUCCESS"}, urgent: {"SUCCESS"}})
    assert queue_status(dagd)["paused"] is False
    assert run_queue_daemon(dagd)["info"].get("paused") is False


@pytest.mark.timeout(120)
def test_bulk_terminate_cancels_only_the_matching_queued_runs(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    dagd.write_config(queue_config(0))
    dagd.start("-f", str(defs_file))
    with api(dagd) as client:
        batch = [client.submit("hello", tags={"batch": "1"})["run_id"] for _ in range(30)]
        others = [client.submit("hello", tags={"batch": "2"})["run_id"] for _ in range(5)]
        others += [client.submit("hello")["run_id"] for _ in range(5)]

    result = ok(
        dagd.ctl("runs", "terminate", "--status", "QUEUED", "--tag", "batch=1", "--json"), "bulk terminate"
    ).json()
    assert sorted(result["canceled"]) == sorted(batch) and result["canceling"] == []
    after = statuses(dagd, batch + others)
    assert {after[r] for r in batch} == {"CANCELED"}
    assert {after[r] for r in others} == {"QUEUED"}
    assert queue_status(dagd)["queued"] == len(others)
    human = ok(dagd.ctl("runs", "terminate", "--status", "QUEUED", "--tag", "batch=2"), "bulk terminate")
    assert human.stdout.startswith("canceled 5 run(s)")


# -- timing and changes of configuration ----------------------------------------------------------------


@pytest.mark.timeout(120)
def test_submission_wakes_the_queue_instead_of_waiting_for_the_poll(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    """A 60 s poll: runs with free capacity launch within seconds, so the submission woke the queue.

    Three in a row each under 10 s cannot all be luck with a 60 s poll. The margin is wide on
    purpose: how fast a launch is belongs to the benchmarks (submit -> STARTING is ~10 ms there),
    this test only tells a wake-up from a poll, also on a loaded machine.
    """
    dagd.write_config(queue_config(dequeue_interval_seconds=60))
    dagd.start("-f", str(defs_file))
    submit(dagd, "hello")  # warm-up: the first launch also starts the fork server
    delays = []
    for _ in range(3):  # three in a row cannot all be lucky with a 5 s poll
        run_id = submit(dagd, "hello")["run_id"]
        returned = time.time()
        run = wait_statuses(dagd, {run_id: FINISHED})
        assert run[run_id] == "SUCCESS"
        delays.append(event_time(show(dagd, run_id), "STARTING").timestamp() - returned)
    print(f"submit return -> STARTING: {[round(d, 3) for d in delays]} s")
    assert max(delays) < 10, f"submit return -> STARTING took {delays} s"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.timeout(180)
def test_lowering_max_concurrent_runs_below_use_launches_nothing_and_kills_nothing(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    # `daemon run`, unlike `dev`, leaves runs running when the supervisor stops.
    dagd.write_config(queue_config(3))
    dagd.start("-f", str(defs_file), command=("daemon", "run"))
    running = [sleeper(dagd, 120) for _ in range(3)]
    wait_statuses(dagd, {r: {"STARTED"} for r in running})
    workers = {r: show(dagd, r)["worker_pid"] for r in running}
    dagd.stop()
    assert all(alive(pid) for pid in workers.values()), "stopping `daemon run` stopped runs"

    dagd.write_config(queue_config(1))
    dagd.start("-f", str(defs_file), command=("daemon", "run"))
    try:
        extra = sleeper(dagd, 1)
        wait_for(
            lambda: run_queue_daemon(dagd)["info"].get("in_progress") == 3, 20, "a pass that counted 3 runs"
        )
        wait_queue_passes(dagd)
        assert statuses(dagd, [*running, extra]) == {**{r: "STARTED" for r in running}, extra: "QUEUED"}
        assert all(alive(pid) for pid in workers.values()), "lowering the limit killed a run"
        explained = why(dagd, extra)
        assert explained["reasons"] == ["max_concurrent_runs: 3 of 1 in progress"], explained
        assert set(explained["holders"]) == set(running)
        assert queue_status(dagd)["in_progress"] == 3
    finally:
        # These runs outlive supervisors by design: stop them before the fixture looks for leftovers.
        dagd.ctl("runs", "terminate", "--status", "QUEUED", "--status", "STARTED")
        try:
            wait_for(lambda: not any(alive(pid) for pid in workers.values()), 20, "the workers to stop")
        finally:
            for pid in workers.values():
                if alive(pid):
                    os.killpg(pid, signal.SIGKILL)
    # The workers are gone; CANCELED follows (written by each worker, or by the canceller after it).
    wait_for(lambda: set(statuses(dagd, running).values()) == {"CANCELED"}, 20, "the runs to end CANCELED")
