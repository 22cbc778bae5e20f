"""The supervisor's process state machine, driven with explicit ``now`` values (no sleeping)."""

from __future__ import annotations

import copy
import signal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagd.supervisor.states import (
    ALIVE,
    NO_PROCESS,
    DaemonProcess,
    ExitReason,
    IllegalTransition,
    MarkHung,
    Nothing,
    ProcessState,
    RestartPolicy,
    SendKill,
    SendTerm,
    Spawn,
    decide,
    health_detail,
    is_healthy,
)

POLICY = RestartPolicy()
S = ProcessState


def running(now: float = 0.0, pid: int = 100, policy: RestartPolicy = POLICY) -> DaemonProcess:
    """A scheduler that was spawned at ``now`` and has been up for start_seconds."""
    proc = DaemonProcess("scheduler")
    proc.spawned(pid, now)
    proc.tick(now + policy.start_seconds, policy)
    assert proc.state is S.RUNNING
    return proc


def crash_and_respawn(proc: DaemonProcess, now: float, policy: RestartPolicy = POLICY) -> float:
    """Exit while RUNNING, then spawn when decide() says so; returns the backoff that was applied."""
    proc.exited(1, None, now, policy)
    assert proc.state is S.BACKOFF and proc.next_start_at is not None
    start_at = proc.next_start_at
    assert isinstance(decide(proc, policy, start_at), Spawn)
    proc.spawned(200 + proc.incarnation, start_at)
    proc.tick(start_at + policy.start_seconds, policy)
    assert proc.state is S.RUNNING
    return start_at - now


def test_new_daemon_is_stopped_until_a_start_is_requested():
    proc = DaemonProcess("sensor")
    assert decide(proc, POLICY, 0.0) == Nothing()
    proc.request_start(5.0)
    assert decide(proc, POLICY, 5.0) == Spawn("sensor", 1)
    proc.spawned(42, 5.0)
    assert (proc.state, proc.pid, proc.incarnation) == (S.STARTING, 42, 1)


def test_exit_code_zero_is_restarted():
    proc = running()
    proc.exited(0, None, 10.0, POLICY)
    assert proc.state is S.BACKOFF
    assert proc.last_exit is not None
    assert (proc.last_exit.reason, proc.last_exit.exit_code) == (ExitReason.EXIT_CODE, 0)
    assert decide(proc, POLICY, 10.4) == Nothing(10.5)
    assert decide(proc, POLICY, 10.5) == Spawn("scheduler", 2)


def test_backoff_doubles_and_is_capped():
    assert [POLICY.backoff(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert POLICY.backoff(10_000) == 30.0


def test_backoff_grows_with_restarts_in_the_window():
    policy = RestartPolicy(budget=100, budget_window_seconds=1000.0)
    proc = running(policy=policy)
    delays = [crash_and_respawn(proc, 40.0 * i, policy) for i in range(1, 9)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_restarts_outside_the_window_do_not_grow_the_backoff():
    proc = running()
    delays = [crash_and_respawn(proc, 100.0 * i) for i in range(1, 5)]
    assert delays == [0.5, 0.5, 0.5, 0.5]
    assert proc.state is S.RUNNING


def test_budget_exhaustion_goes_fatal_then_retries_after_cooldown():
    proc = running()
    for i in range(1, 6):  # 5 restarts allowed in 60s, backing off 0.5 .. 8s
        crash_and_respawn(proc, 10.0 * i)
    proc.exited(1, None, 60.0, POLICY)
    assert proc.state is S.FATAL
    assert proc.next_start_at == 60.0 + POLICY.cooldown_seconds
    assert health_detail(proc, POLICY, 79.0) == "fatal: 6 restarts in 60s; retry in 41s"
    assert decide(proc, POLICY, 119.9) == Nothing(120.0)
    assert decide(proc, POLICY, 120.0) == Spawn("scheduler", proc.incarnation + 1)
    proc.spawned(300, 120.0)
    assert proc.restart_times == []  # a fresh window after the cooldown
    proc.tick(121.0, POLICY)
    proc.exited(1, None, 124.0, POLICY)
    assert (proc.state, proc.next_start_at) == (S.BACKOFF, 124.5)


def test_commanded_restart_respawns_at_once_and_does_not_use_the_budget():
    proc = running()
    for i in range(1, 6):  # budget used up: one more crash would go FATAL
        crash_and_respawn(proc, 10.0 * i)
    for i in range(3):
        now = 60.0 + 3 * i
        proc.request_restart(now, POLICY)
        assert proc.state is S.STOPPING
        assert decide(proc, POLICY, now) == SendTerm(proc.pid or 0, ExitReason.COMMANDED)
        proc.term_sent(now)
        proc.exited(None, signal.SIGTERM, now + 0.1, POLICY)
        assert proc.state is S.EXITED
        assert decide(proc, POLICY, now + 0.1) == Spawn("scheduler", proc.incarnation + 1)
        proc.spawned(500 + i, now + 0.1)
        proc.tick(now + 2, POLICY)
    assert len(proc.restart_times) == 5
    assert proc.restarts_by_reason[ExitReason.COMMANDED.value] == 3
    assert proc.last_exit is not None and proc.last_exit.reason is ExitReason.COMMANDED


@pytest.mark.parametrize("stuck", [S.BACKOFF, S.FATAL])
def test_commanded_restart_from_backoff_or_fatal_spawns_immediately(stuck):
    proc = running()
    for i in range(1, 6):
        crash_and_respawn(proc, 10.0 * i)
    proc.exited(1, None, 60.0 if stuck is S.FATAL else 200.0, POLICY)
    assert proc.state is stuck
    proc.request_restart(201.0, POLICY)
    assert decide(proc, POLICY, 201.0) == Spawn("scheduler", proc.incarnation + 1)


def test_stale_heartbeat_is_hung_then_term_then_kill_after_grace():
    proc = running(pid=7)
    proc.progress(3.0)
    assert decide(proc, POLICY, 23.0) == Nothing(23.0)  # exactly the timeout is still fine
    action = decide(proc, POLICY, 28.0)
    assert action == MarkHung(7, 25.0)
    assert health_detail(proc, POLICY, 28.0) == "stale heartbeat 25s"
    assert not is_healthy(proc, POLICY, 28.0)
    proc.request_stop(ExitReason.STALE_HEARTBEAT, 28.0, POLICY)
    assert decide(proc, POLICY, 28.0) == SendTerm(7, ExitReason.STALE_HEARTBEAT)
    proc.term_sent(28.0)
    assert decide(proc, POLICY, 32.9) == Nothing(33.0)
    assert decide(proc, POLICY, 33.0) == SendKill(7, ExitReason.STALE_HEARTBEAT)
    proc.kill_sent(33.0)
    assert decide(proc, POLICY, 40.0) == Nothing()
    proc.exited(None, signal.SIGKILL, 33.1, POLICY)
    assert proc.state is S.BACKOFF and proc.pid is None
    assert proc.last_exit is not None
    assert proc.last_exit.reason is ExitReason.STALE_HEARTBEAT
    assert proc.last_exit.detail == "no heartbeat for 25s; signal 9 (SIGKILL)"
    assert proc.restart_times == [33.1]  # a hung daemon uses the budget like a crash


def test_starting_daemon_heartbeat_counts_from_spawn():
    proc = DaemonProcess("run_queue")
    proc.spawned(9, 100.0)  # never ticked: still STARTING
    assert decide(proc, POLICY, 100.5) == Nothing(101.0)  # start_seconds comes first
    assert decide(proc, POLICY, 121.0) == MarkHung(9, 21.0)


def test_announced_bounded_wait_is_not_a_hang_until_its_bound():
    """A scheduler evaluating a slow schedule says how long it may block (its evaluation timeout):
    silence until then is not a hang, an overrun is, and the next ping ends the grace."""
    timeout = POLICY.heartbeat_timeout_seconds
    proc = running()
    proc.busy(10.0, 3 * timeout)
    assert decide(proc, POLICY, 10.0 + 2 * timeout) == Nothing(10.0 + 3 * timeout)
    assert is_healthy(proc, POLICY, 10.0 + 2 * timeout)
    hung = decide(proc, POLICY, 10.0 + 3 * timeout + 0.1)
    assert isinstance(hung, MarkHung) and hung.pid == 100
    assert hung.heartbeat_age == pytest.approx(3 * timeout + 0.1)

    proc = running()
    proc.busy(10.0, 3 * timeout)
    proc.progress(11.0)  # the wait ended early: the usual timeout counts from this ping
    assert decide(proc, POLICY, 11.0 + timeout) == Nothing(11.0 + timeout)
    assert isinstance(decide(proc, POLICY, 11.1 + timeout), MarkHung)

    proc = running()
    proc.busy(10.0, 1.0)  # a bound shorter than the heartbeat timeout changes nothing
    assert decide(proc, POLICY, 10.0 + timeout) == Nothing(10.0 + timeout)


def test_degraded_daemon_that_keeps_pinging_is_healthy_and_not_hung():
    """Storage down: the loop retries with a backoff and pings from its own thread meanwhile."""
    timeout = POLICY.heartbeat_timeout_seconds
    proc = running()
    for now in range(5, 500, 2):
        proc.progress(float(now), degraded_reason="storage unreachable")
        assert decide(proc, POLICY, now + 1.0) == Nothing(now + timeout)
    assert is_healthy(proc, POLICY, 500.0)
    assert health_detail(proc, POLICY, 500.0) == "degraded: storage unreachable"
    proc.progress(501.0)  # a ping without the flag: well again
    assert not proc.degraded
    assert decide(proc, POLICY, 501.0 + timeout) == Nothing(501.0 + timeout)
    assert isinstance(decide(proc, POLICY, 501.1 + timeout), MarkHung)


def test_degraded_daemon_hung_in_a_storage_call_is_restarted():
    """Regression: a degraded daemon was exempt from the hang check, so one stuck in a storage
    call while degraded (a connection that never answers) was never restarted. Before each retry
    it announces how long a storage call may block; silence past that bound is a hang."""
    timeout = POLICY.heartbeat_timeout_seconds
    proc = running()
    proc.progress(5.0, degraded_reason="storage unreachable")
    proc.busy(6.0, 3 * timeout, "storage unreachable")  # the retry: may block up to 3 timeouts
    assert decide(proc, POLICY, 6.0 + 2 * timeout) == Nothing(6.0 + 3 * timeout)
    assert is_healthy(proc, POLICY, 6.0 + 2 * timeout) and proc.degraded
    hung = decide(proc, POLICY, 6.1 + 3 * timeout)
    assert isinstance(hung, MarkHung) and hung.heartbeat_age == pytest.approx(3 * timeout + 0.1)
    assert not is_healthy(proc, POLICY, 6.1 + 3 * timeout)


def test_the_degraded_flag_alone_does_not_protect_a_silent_daemon():
    proc = running()
    proc.set_degraded("storage unreachable", 2.0)
    assert isinstance(decide(proc, POLICY, 100.0), MarkHung)


def test_late_ping_after_exit_is_ignored():
    proc = running()
    proc.exited(1, None, 10.0, POLICY)
    before = copy.deepcopy(proc)
    proc.progress(10.1, degraded_reason="storage unreachable")
    proc.set_degraded("storage unreachable", 10.1)
    assert proc == before


def test_exit_while_starting_is_a_start_failure():
    proc = DaemonProcess("sensor")
    proc.spawned(1, 0.0)
    proc.exited(3, None, 0.2, POLICY)
    assert proc.last_exit is not None
    assert proc.last_exit.reason is ExitReason.START_FAILURE
    assert proc.last_exit.detail == "exit code 3 while starting"
    assert proc.consecutive_start_failures == 1
    assert health_detail(proc, POLICY, 0.4) == "backoff: retry in 0.3s after exit code 3 while starting"
    proc.spawned(2, 0.7)
    proc.exited(3, None, 0.8, POLICY)
    assert proc.consecutive_start_failures == 2
    proc.spawned(3, 2.0)
    proc.tick(3.0, POLICY)
    assert proc.state is S.RUNNING and proc.consecutive_start_failures == 0


def test_spawn_failure_is_recorded_and_backs_off():
    proc = DaemonProcess("sensor")
    proc.request_start(0.0)
    proc.spawn_failed("No such file or directory: 'python'", 0.0, POLICY)
    assert (proc.state, proc.next_start_at, proc.pid) == (S.BACKOFF, 0.5, None)
    assert proc.last_exit is not None
    assert proc.last_exit.reason is ExitReason.START_FAILURE
    assert proc.last_exit.detail.startswith("spawn failed: No such file")
    assert proc.consecutive_start_failures == 1
    assert proc.incarnation == 0


def test_signal_exit_is_classified():
    proc = running()
    proc.exited(None, signal.SIGSEGV, 5.0, POLICY)
    assert proc.last_exit is not None
    assert (proc.last_exit.reason, proc.last_exit.detail) == (ExitReason.SIGNAL, "signal 11 (SIGSEGV)")
    assert health_detail(proc, POLICY, 5.0) == "backoff: retry in 0.5s after signal 11 (SIGSEGV)"


def test_restarts_by_reason_counts_every_restart():
    proc = running()
    proc.exited(0, None, 10.0, POLICY)
    proc.spawned(2, 11.0)
    proc.exited(None, signal.SIGKILL, 11.5, POLICY)  # within start_seconds
    proc.spawned(3, 13.0)
    proc.tick(14.0, POLICY)
    proc.exited(None, signal.SIGKILL, 20.0, POLICY)
    proc.spawned(4, 30.0)
    proc.tick(31.0, POLICY)
    proc.request_restart(32.0, POLICY)
    proc.exited(None, signal.SIGTERM, 32.1, POLICY)
    assert proc.restarts_by_reason == {"EXIT_CODE": 1, "START_FAILURE": 1, "SIGNAL": 1, "COMMANDED": 1}
    assert proc.total_restarts == 4


def test_shutdown_stops_for_good_and_is_not_a_restart():
    proc = running(pid=5)
    proc.request_stop(ExitReason.SHUTDOWN, 10.0, POLICY)
    assert health_detail(proc, POLICY, 10.0) == "stopping: supervisor shutting down"
    with pytest.raises(IllegalTransition, match="shutting down"):
        proc.request_restart(10.5, POLICY)
    proc.exited(0, None, 11.0, POLICY)
    assert proc.state is S.STOPPED and proc.next_start_at is None
    assert decide(proc, POLICY, 1e9) == Nothing()
    assert proc.restarts_by_reason == {} and proc.restart_times == []
    assert proc.last_exit is not None and proc.last_exit.reason is ExitReason.SHUTDOWN


def test_stop_cancels_a_pending_restart():
    proc = running()
    proc.exited(1, None, 10.0, POLICY)
    proc.request_stop(ExitReason.SHUTDOWN, 10.1, POLICY)
    assert proc.state is S.STOPPED
    assert decide(proc, POLICY, 100.0) == Nothing()


def test_shutdown_during_a_hung_kill_ends_stopped():
    proc = running()
    proc.request_stop(ExitReason.STALE_HEARTBEAT, 30.0, POLICY)
    proc.request_stop(ExitReason.SHUTDOWN, 31.0, POLICY)
    proc.exited(None, signal.SIGTERM, 32.0, POLICY)
    assert proc.state is S.STOPPED and proc.restart_times == []


def test_commanded_restart_during_a_hung_kill_respawns_at_once():
    proc = running()
    proc.request_stop(ExitReason.STALE_HEARTBEAT, 30.0, POLICY)
    proc.request_restart(31.0, POLICY)
    proc.exited(None, signal.SIGTERM, 32.0, POLICY)
    assert (proc.state, proc.next_start_at, proc.restart_times) == (S.EXITED, 32.0, [])


def test_health_detail_strings():
    proc = running()
    assert health_detail(proc, POLICY, 2.0) == "running"
    assert is_healthy(proc, POLICY, 2.0)
    proc.exited(1, None, 10.0, POLICY)
    proc.next_start_at = 13.2  # as if further into the window
    assert health_detail(proc, POLICY, 10.0) == "backoff: retry in 3.2s after exit code 1"
    assert not is_healthy(proc, POLICY, 10.0)
    assert health_detail(DaemonProcess("sensor"), POLICY, 0.0) == "stopped"


@pytest.mark.parametrize(
    ("setup", "event"),
    [
        ("running", lambda p: p.spawned(2, 5.0)),
        ("running", lambda p: p.request_start(5.0)),
        ("running", lambda p: p.term_sent(5.0)),
        ("running", lambda p: p.kill_sent(5.0)),
        ("stopped", lambda p: p.exited(0, None, 5.0, POLICY)),
        ("stopped", lambda p: p.request_stop(ExitReason.STALE_HEARTBEAT, 5.0, POLICY)),
        ("stopping", lambda p: p.spawned(2, 5.0)),
        ("stopping", lambda p: p.request_stop(ExitReason.STALE_HEARTBEAT, 5.0, POLICY)),
        ("backoff", lambda p: p.exited(1, None, 5.0, POLICY)),
        ("backoff", lambda p: p.term_sent(5.0)),
    ],
)
def test_illegal_transition_raises_and_changes_nothing(setup, event):
    proc = DaemonProcess("scheduler")
    if setup != "stopped":
        proc = running()
    if setup == "stopping":
        proc.request_stop(ExitReason.COMMANDED, 2.0, POLICY)
    if setup == "backoff":
        proc.exited(1, None, 2.0, POLICY)
    before = copy.deepcopy(proc)
    with pytest.raises(IllegalTransition, match="daemon scheduler"):
        event(proc)
    assert proc == before


def test_request_stop_rejects_a_reason_that_is_not_a_stop():
    with pytest.raises(ValueError):
        running().request_stop(ExitReason.EXIT_CODE, 1.0, POLICY)


# -- random event sequences ----------------------------------------------------------------------

FAST = RestartPolicy(
    budget=2, budget_window_seconds=30.0, cooldown_seconds=7.0, heartbeat_timeout_seconds=4.0
)

EVENTS = st.one_of(
    st.tuples(st.just("obey"), st.booleans()),  # act on decide(); the bool: does a spawn fail
    st.tuples(st.just("exit"), st.sampled_from([(0, None), (1, None), (None, 9), (None, 15)])),
    st.tuples(st.just("progress"), st.sampled_from([None, "storage unreachable"])),
    st.tuples(st.just("degraded"), st.sampled_from([None, "storage unreachable"])),
    st.tuples(
        st.just("stop"),
        st.sampled_from([ExitReason.COMMANDED, ExitReason.SHUTDOWN, ExitReason.STALE_HEARTBEAT]),
    ),
    st.tuples(st.just("restart"), st.none()),
    st.tuples(st.just("start"), st.none()),
    st.tuples(st.just("spawn"), st.none()),  # a spawn decide() did not ask for
)


def check_invariants(proc: DaemonProcess) -> None:
    alive = proc.state in ALIVE
    assert (proc.pid is not None) == alive
    assert (proc.started_at is not None) == alive
    assert (proc.state is S.STOPPING) == (proc.pending_stop_reason is not None)
    assert (proc.state is S.STOPPING) == (proc.stop_deadline is not None)
    assert not proc.degraded or alive
    assert proc.degraded == (proc.degraded_reason is not None)
    if proc.state in (S.BACKOFF, S.EXITED, S.FATAL):
        assert proc.next_start_at is not None  # giving up is never permanent
    if alive:
        assert proc.next_start_at is None
    assert len(proc.restart_times) <= FAST.budget + 1
    assert proc.total_restarts >= len(proc.restart_times)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0, 6.0]), EVENTS), max_size=60))
def test_random_event_sequences_keep_the_record_consistent(steps):
    proc, now, next_pid = DaemonProcess("sensor"), 0.0, 1000
    for dt, (kind, arg) in steps:
        now += dt
        proc.tick(now, FAST)
        action = decide(proc, FAST, now)
        if proc.pid is not None:
            assert not isinstance(action, Spawn)
        if isinstance(action, (SendTerm, SendKill, MarkHung)):
            assert action.pid == proc.pid
        before = copy.deepcopy(proc)
        try:
            if kind == "obey":  # the shell following decide() never makes an illegal move
                if isinstance(action, Spawn):
                    if arg:
                        proc.spawn_failed("boom", now, FAST)
                    else:
                        next_pid += 1
                        proc.spawned(next_pid, now)
                        assert proc.incarnation == action.incarnation
                elif isinstance(action, MarkHung):
                    proc.request_stop(ExitReason.STALE_HEARTBEAT, now, FAST)
                elif isinstance(action, SendTerm):
                    proc.term_sent(now)
                elif isinstance(action, SendKill):
                    proc.kill_sent(now)
            elif kind == "exit":
                proc.exited(*arg, now, FAST)
            elif kind == "progress":
                proc.progress(now, arg)
            elif kind == "degraded":
                proc.set_degraded(arg, now)
            elif kind == "stop":
                proc.request_stop(arg, now, FAST)
            elif kind == "restart":
                proc.request_restart(now, FAST)
            elif kind == "start":
                proc.request_start(now)
            elif kind == "spawn":
                next_pid += 1
                proc.spawned(next_pid, now)
        except IllegalTransition:
            assert kind != "obey"
            assert proc == before
        else:
            if kind == "exit":
                assert before.state in ALIVE
            if kind == "spawn":
                assert before.state in NO_PROCESS
        check_invariants(proc)
        assert is_healthy(proc, FAST, now) in (True, False)
        assert health_detail(proc, FAST, now)


def test_ready_message_moves_starting_to_running_and_an_exit_before_it_is_a_start_failure() -> None:
    policy = RestartPolicy(start_seconds=float("inf"))
    proc = DaemonProcess("run_queue")
    proc.request_start(0.0)
    proc.spawned(100, 0.0)
    proc.tick(50.0, policy)
    assert proc.state is ProcessState.STARTING  # no timer promotes it
    proc.exited(3, None, 50.0, policy)
    assert proc.last_exit is not None and proc.last_exit.reason is ExitReason.START_FAILURE
    proc.spawned(101, 60.0)
    proc.ready(60.5)
    assert proc.state is ProcessState.RUNNING
    proc.ready(61.0)  # repeated readiness is harmless
    assert proc.state is ProcessState.RUNNING
