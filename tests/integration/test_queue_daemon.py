"""The ``run_queue`` daemon in-process against real storage, SQLite and PostgreSQL alike.

The seam is the launcher: :class:`helpers.launchers.RecordingLauncher` records launches and starts
nothing, so these tests see exactly which runs the daemon launched and how often, while claims,
fencing and races go through the real database. Each test builds ``Instance.load(home)`` from a
``dagd.yaml`` naming that launcher and calls ``RunQueueDaemon.run_iteration()`` directly.

What must hold: after every pass no limit is exceeded and no queued run that fits is left behind
(priority first, then submission order); every run is launched at most once, even with two
dequeuers on one database or a terminate racing the dequeue; a dequeuer whose lease epoch is
stale launches nothing.
"""

from __future__ import annotations

import itertools
import pathlib
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from helpers.launchers import RecordingLauncher
from helpers.procs import wait_for
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from dagd.daemons.run_queue import RunQueueDaemon
from dagd.instance.instance import Instance
from dagd.run_coordinator import Submission
from dagd.runs.model import IN_PROGRESS_STATUSES, PRIORITY_TAG, RunStatus
from dagd.runs.queue import QueueView, explain
from dagd.storage import Storage
from dagd.storage.leases import SUPERVISOR_LEASE
from dagd.storage.schema import leases, run_attempts, run_events, run_logs, run_tags, runs
from dagd.storage.schema import settings as settings_table

RECORDING_LAUNCHER = {"module": "helpers.launchers", "class": "RecordingLauncher"}


# -- instances on the test's database ------------------------------------------------------------


def storage_section(url: str) -> dict[str, Any]:
    """The ``storage:`` section that points an instance at ``url`` (a fixture's database)."""
    if url.startswith("sqlite:///"):
        db_file = pathlib.Path(url.removeprefix("sqlite:///"))
        assert db_file.name == "dagd.db", url  # the instance names its SQLite file dagd.db
        return {"sqlite": {"base_dir": str(db_file.parent)}}
    return {"postgres": {"url": url}}


def write_home(home: pathlib.Path, url: str, queue: Mapping[str, Any]) -> pathlib.Path:
    home.mkdir(parents=True, exist_ok=True)
    config = {
        "storage": storage_section(url),
        "run_coordinator": {"config": dict(queue)},
        "run_launcher": RECORDING_LAUNCHER,
    }
    (home / "dagd.yaml").write_text(yaml.safe_dump(config))
    return home


def load_daemon(home: pathlib.Path, fence_epoch: int | None = None) -> RunQueueDaemon:
    instance = Instance.load(home)
    instance.fence_epoch = fence_epoch
    return RunQueueDaemon(instance)


def launcher_of(daemon: RunQueueDaemon) -> RecordingLauncher:
    launcher = daemon.instance.launcher
    assert isinstance(launcher, RecordingLauncher)
    return launcher


def submit(daemon: RunQueueDaemon, tags: Mapping[str, str] | None = None, priority: int = 0) -> str:
    """Submit through the instance's QueuedRunCoordinator, as the supervisor does."""
    all_tags = {**(tags or {}), PRIORITY_TAG: str(priority)}
    run = daemon.instance.coordinator.submit_run(Submission("job", all_tags, priority=priority), {})
    assert run.status == RunStatus.QUEUED
    return run.run_id


def statuses(storage: Storage) -> dict[str, RunStatus]:
    with storage.read() as conn:
        return {r: RunStatus(s) for r, s in conn.execute(sa.select(runs.c.run_id, runs.c.status))}


def wipe(storage: Storage) -> None:
    with storage.write() as conn:
        for table in (run_attempts, run_events, run_logs, run_tags, runs, leases, settings_table):
            conn.execute(table.delete())


@pytest.fixture
def daemons() -> Iterator[list[RunQueueDaemon]]:
    """Daemons a test creates; closed (thread pool, engine) whatever happens."""
    made: list[RunQueueDaemon] = []
    yield made
    for daemon in made:
        daemon.close()


# -- a model of the limits, written the obvious way ------------------------------------------------


KEYS = ("a", "b", "c")
VALUES = ("x", "y")

limit_st = st.one_of(
    st.fixed_dictionaries({"key": st.sampled_from(KEYS), "limit": st.integers(0, 3)}),
    st.fixed_dictionaries(
        {"key": st.sampled_from(KEYS), "value": st.sampled_from(VALUES), "limit": st.integers(0, 3)}
    ),
    st.fixed_dictionaries(
        {
            "key": st.sampled_from(KEYS),
            "value": st.just({"applyLimitPerUniqueValue": True}),
            "limit": st.integers(0, 3),
        }
    ),
)
tags_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)


def buckets(tags: Mapping[str, str], limits: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """The counters a run with ``tags`` falls in: (limit index, value for per-value limits)."""
    found = []
    for index, limit in enumerate(limits):
        value = tags.get(limit["key"])
        if value is None:
            continue
        wanted = limit.get("value")
        if isinstance(wanted, dict):
            found.append((index, value))
        elif wanted is None or wanted == value:
            found.append((index, ""))
    return found


def full_buckets(
    tags: Mapping[str, str], in_progress: Sequence[Mapping[str, str]], limits: Sequence[Mapping[str, Any]]
) -> list[tuple[int, str]]:
    """The counters that have no room for one more run with ``tags``."""
    counts = Counter(b for t in in_progress for b in buckets(t, limits))
    return [b for b in buckets(tags, limits) if counts[b] + 1 > limits[b[0]]["limit"]]


# -- the property test -----------------------------------------------------------------------------


@pytest.mark.timeout(300)  # passes in well under a minute; the margin is for shrinking a failure
def test_random_operations_keep_every_limit_and_leave_nothing_launchable(
    storage_url: str, storage: Storage, tmp_path: pathlib.Path
) -> None:
    """Random limits and operations; after each pass: safety, maximality, order, launched once."""
    homes = itertools.count()

    class QueueMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.daemon: RunQueueDaemon | None = None
            self.tags: dict[str, dict[str, str]] = {}
            self.order: dict[str, tuple[int, int]] = {}  # run id -> (-priority, submission index)
            self.queued: set[str] = set()
            self.in_progress: set[str] = set()
            self.ever_launched: set[str] = set()

        def in_line(self, run_ids: set[str]) -> list[str]:
            # By submission, not by id: ids are random, and a draw must pick the same run on replay.
            return sorted(run_ids, key=lambda r: self.order[r][1])

        @initialize(max_runs=st.sampled_from([-1, 0, 1, 2, 3, 4]), limits=st.lists(limit_st, max_size=3))
        def configure(self, max_runs: int, limits: list[dict[str, Any]]) -> None:
            wipe(storage)
            self.max_runs, self.limits = max_runs, limits
            home = write_home(
                tmp_path / f"home{next(homes)}",
                storage_url,
                {"max_concurrent_runs": max_runs, "tag_concurrency_limits": limits},
            )
            self.daemon = load_daemon(home)

        @rule(tags=tags_st, priority=st.integers(-1, 2))
        def submit_run(self, tags: dict[str, str], priority: int) -> None:
            assert self.daemon is not None
            run_id = submit(self.daemon, tags, priority)
            self.tags[run_id] = tags
            self.order[run_id] = (-priority, len(self.order))
            self.queued.add(run_id)

        @precondition(lambda self: self.in_progress)
        @rule(data=st.data())
        def complete(self, data: st.DataObject) -> None:
            run_id = data.draw(st.sampled_from(self.in_line(self.in_progress)))
            assert storage.runs.transition(run_id, RunStatus.SUCCESS, expected=(RunStatus.STARTING,))
            self.in_progress.discard(run_id)

        @precondition(lambda self: self.queued)
        @rule(data=st.data())
        def cancel(self, data: st.DataObject) -> None:
            run_id = data.draw(st.sampled_from(self.in_line(self.queued)))
            assert storage.runs.transition(run_id, RunStatus.CANCELED, expected=(RunStatus.QUEUED,))
            self.queued.discard(run_id)

        @rule()
        def iterate(self) -> None:
            assert self.daemon is not None
            self.daemon.run_iteration()
            now = statuses(storage)
            launched_now = {r for r in self.queued if now[r] != RunStatus.QUEUED}
            assert all(now[r] == RunStatus.STARTING for r in launched_now), (
                "only the daemon moves queued runs"
            )
            self.queued -= launched_now
            self.in_progress |= launched_now
            assert {r for r, s in now.items() if s == RunStatus.QUEUED} == self.queued
            assert {r for r, s in now.items() if s in IN_PROGRESS_STATUSES} == self.in_progress

            # Launched exactly once, and only the runs that left the queue.
            launched = launcher_of(self.daemon).launched
            assert len(launched) == len(set(launched)), Counter(launched).most_common(3)
            assert not self.ever_launched & launched_now, "a run left the queue twice"
            self.ever_launched |= launched_now
            assert set(launched) == self.ever_launched

            # Safety: no limit exceeded among the runs in progress.
            running = [self.tags[r] for r in self.in_progress]
            if self.max_runs != -1:
                assert len(running) <= self.max_runs
            counts = Counter(b for t in running for b in buckets(t, self.limits))
            for bucket, count in counts.items():
                assert count <= self.limits[bucket[0]]["limit"], (bucket, count, self.limits)

            # Maximality: every run left queued would break a limit if it launched too. And order:
            # a run left behind while a later one (lower priority, or submitted after it) launched
            # in this pass must be held by a tag limit, not by the global cap.
            global_full = self.max_runs != -1 and len(running) >= self.max_runs
            for run_id in self.queued:
                held_by_tags = full_buckets(self.tags[run_id], running, self.limits)
                assert global_full or held_by_tags, f"{run_id} {self.tags[run_id]} could launch"
                if any(self.order[other] > self.order[run_id] for other in launched_now):
                    assert held_by_tags, f"{run_id} was passed over without a tag limit holding it"

        def teardown(self) -> None:
            if self.daemon is not None:
                self.daemon.close()

    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            max_examples=50,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# -- concurrency and fencing ---------------------------------------------------------------------


def current_epoch(storage: Storage) -> int:
    lease, held_by = storage.leases.acquire(SUPERVISOR_LEASE, "test-supervisor", 60)
    assert lease is not None, held_by
    return lease.epoch


@pytest.mark.timeout(120)
def test_two_dequeuers_on_one_database_launch_each_run_exactly_once(
    storage_url: str, storage: Storage, tmp_path: pathlib.Path, daemons: list[RunQueueDaemon]
) -> None:
    """Both backends; on PostgreSQL this is the multi-host case (two dequeuers, one database)."""
    epoch = current_epoch(storage)
    queue = {"max_concurrent_runs": -1}
    for name in ("a", "b"):
        daemons.append(load_daemon(write_home(tmp_path / name, storage_url, queue), fence_epoch=epoch))
    run_ids = [submit(daemons[0], {"n": str(i % 7)}) for i in range(200)]

    start = threading.Barrier(2)
    errors: list[BaseException] = []

    reported = Counter[str]()  # launches each daemon reported in its heartbeat info

    def dequeue(name: str, daemon: RunQueueDaemon) -> None:
        try:
            start.wait()
            for _ in range(50):
                daemon.run_iteration()
                reported[name] += daemon.info.get("launched", 0)
                if not daemon.info.get("queued"):
                    return
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=dequeue, args=(n, d)) for n, d in zip("ab", daemons, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a dequeuer hung"

    launched = Counter(launcher_of(daemons[0]).launched + launcher_of(daemons[1]).launched)
    assert set(launched) == set(run_ids)
    assert [r for r, n in launched.items() if n != 1] == [], "some runs were launched twice"
    assert set(statuses(storage).values()) == {RunStatus.STARTING}
    # A claim lost to the other dequeuer is not reported as a launch either.
    assert reported == {
        "a": len(launcher_of(daemons[0]).launched),
        "b": len(launcher_of(daemons[1]).launched),
    }
    print(f"launched by each dequeuer: {dict(reported)}")


@pytest.mark.timeout(60)
def test_dequeuer_with_a_stale_lease_epoch_launches_nothing(
    storage_url: str, storage: Storage, tmp_path: pathlib.Path, daemons: list[RunQueueDaemon]
) -> None:
    first, _ = storage.leases.acquire(SUPERVISOR_LEASE, "a", 30)
    assert first is not None and first.epoch == 1
    storage.leases.release(first)
    second, _ = storage.leases.acquire(SUPERVISOR_LEASE, "b", 30)
    assert second is not None and second.epoch == 2

    home = write_home(tmp_path / "home", storage_url, {"max_concurrent_runs": -1})
    stale = load_daemon(home, fence_epoch=1)
    daemons.append(stale)
    run_ids = [submit(stale) for _ in range(5)]
    stale.run_iteration()
    assert launcher_of(stale).launched == []
    assert set(statuses(storage).values()) == {RunStatus.QUEUED}
    assert all(e.status != RunStatus.STARTING for r in run_ids for e in storage.runs.events(r))

    # The same runs launch under the current epoch: the fence, not the queue, held them.
    current = load_daemon(home, fence_epoch=2)
    daemons.append(current)
    current.run_iteration()
    assert sorted(launcher_of(current).launched) == sorted(run_ids)
    assert set(statuses(storage).values()) == {RunStatus.STARTING}


@pytest.mark.timeout(120)
def test_terminate_racing_the_dequeue_either_launches_or_cancels_never_both(
    storage_url: str, storage: Storage, tmp_path: pathlib.Path, daemons: list[RunQueueDaemon]
) -> None:
    epoch = current_epoch(storage)
    home = write_home(tmp_path / "home", storage_url, {"max_concurrent_runs": -1})
    daemon = load_daemon(home, fence_epoch=epoch)
    daemons.append(daemon)
    launcher = launcher_of(daemon)
    outcomes: Counter[RunStatus] = Counter()

    for i in range(60):
        run_id = submit(daemon)
        # Sweep the cancel's head start so both orders happen: a pass takes a few ms to its claim.
        delay = (i % 12) * 0.001
        go = threading.Barrier(2)
        canceled: list[object] = []

        def terminate(
            run_id: str = run_id, go: threading.Barrier = go, canceled: list = canceled, delay: float = delay
        ) -> None:
            go.wait()
            time.sleep(delay)
            canceled.append(storage.runs.transition(run_id, RunStatus.CANCELED, expected=(RunStatus.QUEUED,)))

        def dequeue(go: threading.Barrier = go) -> None:
            go.wait()
            daemon.run_iteration()

        threads = [threading.Thread(target=terminate), threading.Thread(target=dequeue)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(t.is_alive() for t in threads)

        run = storage.runs.require(run_id)
        timeline = [e.status for e in storage.runs.events(run_id) if e.status]
        times_launched = launcher.launched.count(run_id)
        if run.status == RunStatus.CANCELED:
            assert canceled[0] is not None
            assert times_launched == 0 and RunStatus.STARTING not in timeline, timeline
            assert run.worker_pid is None
        else:
            assert run.status == RunStatus.STARTING, run.status
            assert canceled[0] is None, "the cancel reported success on a launched run"
            assert times_launched == 1 and RunStatus.CANCELED not in timeline, timeline
        # The pass reports what it launched (heartbeat info), not what it merely chose.
        assert daemon.info.get("launched", 0) == times_launched, (run.status, daemon.info)
        outcomes[run.status] += 1

    print(f"outcomes: {dict(outcomes)}")
    assert sum(outcomes.values()) == 60


@pytest.mark.timeout(60)
@pytest.mark.parametrize("moved_to", [RunStatus.CANCELED, RunStatus.STARTING], ids=["canceled", "claimed"])
def test_run_moved_after_the_pass_chose_it_is_neither_launched_nor_reported_launched(
    storage_url: str,
    storage: Storage,
    tmp_path: pathlib.Path,
    daemons: list[RunQueueDaemon],
    monkeypatch: pytest.MonkeyPatch,
    moved_to: RunStatus,
) -> None:
    """Regression: a run canceled (or claimed by another dequeuer) between the pass's read of the
    queue and its claim was logged "dequeued: CANCELED" and counted in the heartbeat's
    ``launched``, though this daemon launched nothing."""
    home = write_home(tmp_path / "home", storage_url, {"max_concurrent_runs": -1})
    daemon = load_daemon(home)
    daemons.append(daemon)
    moved, kept = submit(daemon), submit(daemon)
    read = QueueView.read.__func__  # type: ignore[attr-defined]

    def read_then_move(cls: type[QueueView], storage_: Storage) -> QueueView:
        view = read(cls, storage_)
        assert storage.runs.transition(moved, moved_to, expected=(RunStatus.QUEUED,))
        return view

    monkeypatch.setattr(QueueView, "read", classmethod(read_then_move))
    daemon.run_iteration()
    assert launcher_of(daemon).launched == [kept]
    assert daemon.info["launched"] == 1, daemon.info
    assert storage.runs.require(moved).status == moved_to


# -- launch retries (issue #19, item 3) -----------------------------------------------------------


def flaky_daemon(home: pathlib.Path, url: str, failures: int, queue: Mapping[str, Any]) -> RunQueueDaemon:
    home.mkdir(parents=True, exist_ok=True)
    config = {
        "storage": storage_section(url),
        "run_coordinator": {"config": dict(queue)},
        "run_launcher": {
            "module": "helpers.launchers",
            "class": "FlakyLauncher",
            "config": {"failures": failures},
        },
    }
    (home / "dagd.yaml").write_text(yaml.safe_dump(config))
    return load_daemon(home)


@pytest.mark.timeout(60)
def test_failed_launch_is_retried_after_a_growing_backoff_counted_in_a_field(
    storage_url: str, tmp_path: pathlib.Path, daemons: list[RunQueueDaemon]
) -> None:
    queue = {
        "max_launch_retries": 2,
        "launch_retry_backoff_seconds": 0.4,
        "max_launch_retry_backoff_seconds": 5,
    }
    daemon = flaky_daemon(tmp_path / "home", storage_url, 2, queue)
    daemons.append(daemon)
    run_id = submit(daemon)
    runs_store = daemon.instance.storage.runs

    daemon.run_iteration()  # launch 1 fails: back in the queue, held 0.2-0.4 s
    held = runs_store.require(run_id)
    assert held.status == RunStatus.QUEUED and held.launch_failures == 1
    daemon.run_iteration()  # at once: held, so not launched again
    assert runs_store.require(run_id).launch_failures == 1
    assert "waits until" in explain(daemon.instance, run_id, daemon_healthy=True).summary

    began = time.monotonic()
    wait_for(
        lambda: (daemon.run_iteration(), runs_store.require(run_id).launch_failures)[1] == 2, 10, "retry 1"
    )
    first_gap = time.monotonic() - began
    wait_for(
        lambda: (daemon.run_iteration(), runs_store.require(run_id).status)[1] == RunStatus.STARTING,
        10,
        "retry 2",
    )

    assert first_gap >= 0.15, f"retried {first_gap:.2f}s after the first failure (backoff 0.2-0.4 s)"
    run = runs_store.require(run_id)
    assert run.launch_failures == 2 and run.attempt == 3
    states = [a.state.value for a in daemon.instance.storage.attempts.of_run(run_id)]
    assert states == ["ABANDONED", "ABANDONED", "DISPATCHED"], states
    messages = [e.message for e in runs_store.events(run_id)]
    assert any("retry 1 of 2 in 0." in m for m in messages) and any(
        "retry 2 of 2 in 0." in m for m in messages
    ), messages
    assert launcher_of(daemon).launched == [run_id]


@pytest.mark.timeout(60)
def test_launch_failures_past_the_retries_fail_the_run(
    storage_url: str, tmp_path: pathlib.Path, daemons: list[RunQueueDaemon]
) -> None:
    daemon = flaky_daemon(tmp_path / "home", storage_url, 5, {"max_launch_retries": 0})
    daemons.append(daemon)
    run_id = submit(daemon)

    daemon.run_iteration()

    run = daemon.instance.storage.runs.require(run_id)
    assert run.status == RunStatus.FAILURE and run.error == "launch failed: injected launch failure"
    assert run.launch_failures == 1
