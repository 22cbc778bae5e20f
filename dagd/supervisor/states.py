"""Per-daemon process state machine and restart policy: pure, no I/O, no clock.

One :class:`DaemonProcess` record per daemon. The shell (the process table) reports events to it and
asks :func:`decide` what to do; every function takes ``now`` in monotonic seconds::

    STOPPED/BACKOFF/EXITED/FATAL --spawned--> STARTING --tick, up start_seconds--> RUNNING
    STARTING/RUNNING --exited--> BACKOFF, or FATAL when the restart budget is spent
    STARTING/RUNNING --request_stop/request_restart--> STOPPING --exited--> STOPPED
        (stop, shutdown) | EXITED (commanded restart) | BACKOFF/FATAL (hung: stale heartbeat)
    BACKOFF/EXITED/FATAL --request_stop--> STOPPED (nothing to signal)

Any unforced exit is restarted, code 0 included. FATAL is not permanent: it is retried after a
cooldown with a fresh budget window. Commanded restarts respawn at once and never use the budget.
A daemon that reports itself degraded (storage unreachable) is judged like any other, from its
last sign of life: while degraded its loop still pings between retries, and it announces each
retry's bounded wait on storage (``busy``), so only a daemon stuck in a call is hung.

The shell's loop, per daemon: ``proc.tick(now, policy)``, then act on ``decide(proc, policy, now)``
and report back (``spawned``/``spawn_failed``, ``request_stop(STALE_HEARTBEAT)``, ``term_sent``,
``kill_sent``); on reaping a child, ``exited``; on a pipe message, ``progress``/``set_degraded``.
An illegal move raises :class:`IllegalTransition` before changing anything.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field
from enum import Enum

from dagd.errors import InvalidTransition


class IllegalTransition(InvalidTransition):
    """An event that makes no sense in the daemon's current state (e.g. spawned while RUNNING).

    Mostly a bug in the shell; for user commands (start a running daemon, restart during shutdown)
    it maps to FAILED_PRECONDITION through the :class:`InvalidTransition` branch of the error tree.
    """


class ProcessState(str, Enum):
    STOPPED = "STOPPED"  # no process; none wanted unless next_start_at is set (request_start)
    STARTING = "STARTING"  # spawned, not yet up for start_seconds
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"  # exited unforced; respawn at next_start_at
    STOPPING = "STOPPING"  # SIGTERM, then SIGKILL after the grace
    EXITED = "EXITED"  # exited for a commanded restart; respawn at once, outside the budget
    FATAL = "FATAL"  # restart budget spent; retried at next_start_at, after the cooldown


class ExitReason(str, Enum):
    EXIT_CODE = "EXIT_CODE"
    SIGNAL = "SIGNAL"
    STALE_HEARTBEAT = "STALE_HEARTBEAT"
    START_FAILURE = "START_FAILURE"  # exited within start_seconds, or could not be spawned at all
    COMMANDED = "COMMANDED"
    SHUTDOWN = "SHUTDOWN"


_S = ProcessState
ALIVE = frozenset({_S.STARTING, _S.RUNNING, _S.STOPPING})  # exactly the states that have a pid
NO_PROCESS = frozenset({_S.STOPPED, _S.BACKOFF, _S.EXITED, _S.FATAL})
STOP_REASONS = frozenset({ExitReason.COMMANDED, ExitReason.SHUTDOWN, ExitReason.STALE_HEARTBEAT})


@dataclass(frozen=True)
class RestartPolicy:
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    budget: int = 5  # unforced restarts allowed within the window; one more means FATAL
    budget_window_seconds: float = 60.0
    cooldown_seconds: float = 60.0
    start_seconds: float = 1.0  # up this long counts as started (supervisord's startsecs)
    heartbeat_timeout_seconds: float = 20.0
    stop_grace_seconds: float = 5.0

    def backoff(self, attempt: int) -> float:
        """Delay before restart number ``attempt`` (1-based) in the window: 0.5, 1, 2, 4... capped."""
        exponent = min(max(attempt, 1) - 1, 64)  # past 64 doublings it is capped anyway
        return min(self.initial_backoff_seconds * 2.0**exponent, self.max_backoff_seconds)


@dataclass(frozen=True)
class ExitRecord:
    reason: ExitReason
    exit_code: int | None
    signal: int | None
    detail: str  # one line for status output: "exit code 1", "no heartbeat for 25s; signal 9 (SIGKILL)"
    at: float


@dataclass
class DaemonProcess:
    name: str
    state: ProcessState = ProcessState.STOPPED
    pid: int | None = None
    incarnation: int = 0  # bumped by every spawn
    started_at: float | None = None
    last_progress_at: float | None = None  # last heartbeat or pipe ping of this incarnation
    # The loop announced a blocking call bounded by its own timeout (user code): silence until
    # then is not a hang. Cleared by the next ping; None: no such call under way.
    quiet_until: float | None = None
    degraded: bool = False
    degraded_reason: str | None = None
    next_start_at: float | None = None  # when decide() will ask for a spawn; None: not wanted
    stop_deadline: float | None = None  # STOPPING: SIGKILL from then on
    term_sent_at: float | None = None
    kill_sent_at: float | None = None
    pending_stop_reason: ExitReason | None = None
    pending_stop_detail: str | None = None
    restart_after_stop: bool = False  # STOPPING for a commanded restart rather than a stop
    restart_times: list[float] = field(default_factory=list)  # unforced restarts in the window
    restarts_by_reason: dict[str, int] = field(default_factory=dict)
    last_exit: ExitRecord | None = None
    consecutive_start_failures: int = 0

    @property
    def total_restarts(self) -> int:
        return sum(self.restarts_by_reason.values())

    # -- commands ------------------------------------------------------------------------------

    def request_start(self, now: float) -> None:
        """STOPPED/BACKOFF/EXITED/FATAL -> (same): a spawn is due now."""
        self._require("start", NO_PROCESS)
        self.next_start_at = now

    def request_restart(self, now: float, policy: RestartPolicy) -> None:
        """Commanded restart: respawn as soon as the process is gone, never counted in the budget."""
        if self.state in NO_PROCESS:
            # STOPPED/BACKOFF/EXITED/FATAL -> (same): nothing to stop, spawn now
            self.next_start_at = now
            return
        if self.state is _S.STOPPING:
            if self.pending_stop_reason is ExitReason.SHUTDOWN:
                raise IllegalTransition(f"daemon {self.name}: cannot restart while shutting down")
            # STOPPING -> STOPPING: the command outranks a plain stop or a hung-kill
            self.pending_stop_reason, self.pending_stop_detail = ExitReason.COMMANDED, "restart requested"
        else:
            # STARTING/RUNNING -> STOPPING
            self._begin_stop(ExitReason.COMMANDED, "restart requested", now, policy)
        self.restart_after_stop = True

    def request_stop(self, reason: ExitReason, now: float, policy: RestartPolicy) -> None:
        """Stop for COMMANDED (stay down), SHUTDOWN (stay down) or STALE_HEARTBEAT (then restart)."""
        if reason not in STOP_REASONS:
            raise ValueError(f"not a stop reason: {reason.value}")
        hung = reason is ExitReason.STALE_HEARTBEAT
        if hung and self.state not in (_S.STARTING, _S.RUNNING):
            raise IllegalTransition(f"daemon {self.name}: cannot be hung while {self.state.value}")
        if self.state in NO_PROCESS:
            # STOPPED/BACKOFF/EXITED/FATAL -> STOPPED: nothing to signal, cancel any pending start
            self._leave_fatal()
            self.state, self.next_start_at = _S.STOPPED, None
        elif self.state is _S.STOPPING:
            # STOPPING -> STOPPING: now ends in STOPPED; a shutdown is never downgraded
            if self.pending_stop_reason is not ExitReason.SHUTDOWN:
                self.pending_stop_reason, self.pending_stop_detail = reason, _stop_detail(reason)
            self.restart_after_stop = False
        else:
            # STARTING/RUNNING -> STOPPING
            age = heartbeat_age(self, now) or 0.0
            detail = f"no heartbeat for {_secs(age)}" if hung else _stop_detail(reason)
            self._begin_stop(reason, detail, now, policy)

    # -- reports from the shell ----------------------------------------------------------------

    def spawned(self, pid: int, now: float) -> None:
        """STOPPED/BACKOFF/EXITED/FATAL -> STARTING."""
        self._require("spawn", NO_PROCESS)
        self._leave_fatal()
        self.state, self.pid, self.started_at = _S.STARTING, pid, now
        self.incarnation += 1
        self.next_start_at = None

    def spawn_failed(self, detail: str, now: float, policy: RestartPolicy) -> None:
        """STOPPED/BACKOFF/EXITED/FATAL -> BACKOFF/FATAL: the launcher could not start a process."""
        self._require("fail to spawn", NO_PROCESS)
        self._leave_fatal()
        self.consecutive_start_failures += 1
        record = ExitRecord(ExitReason.START_FAILURE, None, None, f"spawn failed: {detail}", now)
        self._schedule_restart(record, now, policy)

    def tick(self, now: float, policy: RestartPolicy) -> None:
        """The clock moved; legal in every state, only STARTING can change."""
        started = self.started_at
        if self.state is _S.STARTING and started is not None and now - started >= policy.start_seconds:
            # STARTING -> RUNNING: stayed up for start_seconds, so the start worked
            self.state, self.consecutive_start_failures = _S.RUNNING, 0

    def ready(self, now: float) -> None:
        """The child says it is up (its first status message, like systemd's READY=1).

        STARTING -> RUNNING; ignored in every other state (a late or repeated message).
        """
        if self.state is _S.STARTING:
            self.state, self.consecutive_start_failures = _S.RUNNING, 0

    def progress(self, now: float, degraded_reason: str | None = None) -> None:
        """A heartbeat or pipe ping; sets degraded when it carries a reason, clears it otherwise.

        Ignored without a live process: a late message from an incarnation already reaped.
        """
        if self.state in ALIVE:
            self.last_progress_at, self.quiet_until = now, None
            self.set_degraded(degraded_reason, now)

    def busy(self, now: float, seconds: float, degraded_reason: str | None = None) -> None:
        """The loop is about to block for at most ``seconds`` (a call with its own timeout): progress
        now, and no hang before ``now + seconds``. A loop that overruns its own bound is hung."""
        if self.state in ALIVE:
            self.progress(now, degraded_reason)
            self.quiet_until = now + max(0.0, seconds)

    def set_degraded(self, reason: str | None, now: float) -> None:
        """The child says it is degraded (``reason``) or well again (None). Ignored when dead."""
        if self.state in ALIVE:
            self.degraded, self.degraded_reason = reason is not None, reason

    def term_sent(self, now: float) -> None:
        """STOPPING -> STOPPING: SIGTERM delivered."""
        self._require("send SIGTERM", frozenset({_S.STOPPING}))
        if self.term_sent_at is None:
            self.term_sent_at = now

    def kill_sent(self, now: float) -> None:
        """STOPPING -> STOPPING: SIGKILL delivered."""
        self._require("send SIGKILL", frozenset({_S.STOPPING}))
        if self.kill_sent_at is None:
            self.kill_sent_at = now

    def exited(self, exit_code: int | None, signal: int | None, now: float, policy: RestartPolicy) -> None:
        """STARTING/RUNNING/STOPPING -> BACKOFF/FATAL/EXITED/STOPPED: the child was reaped."""
        self._require("exit", ALIVE)
        was, reason, detail = self.state, self.pending_stop_reason, self.pending_stop_detail
        restart_after_stop = self.restart_after_stop
        how = _describe_exit(exit_code, signal)
        self._forget_process()
        if was is _S.STOPPING and reason is not ExitReason.STALE_HEARTBEAT:
            assert reason is not None
            self.last_exit = ExitRecord(reason, exit_code, signal, f"{detail}; {how}", now)
            if restart_after_stop:
                # STOPPING -> EXITED: commanded restart, respawn at once, outside the budget
                self.state, self.next_start_at = _S.EXITED, now
                self._count(reason)
            else:
                # STOPPING -> STOPPED: stop or shutdown
                self.state = _S.STOPPED
            return
        if was is _S.STOPPING:  # we killed it for a stale heartbeat: a failure like any crash
            record = ExitRecord(ExitReason.STALE_HEARTBEAT, exit_code, signal, f"{detail}; {how}", now)
        elif was is _S.STARTING:
            self.consecutive_start_failures += 1
            record = ExitRecord(ExitReason.START_FAILURE, exit_code, signal, f"{how} while starting", now)
        else:
            kind = ExitReason.SIGNAL if signal is not None else ExitReason.EXIT_CODE
            record = ExitRecord(kind, exit_code, signal, how, now)
        self._schedule_restart(record, now, policy)

    # -- internals -----------------------------------------------------------------------------

    def _require(self, event: str, allowed: frozenset[ProcessState]) -> None:
        if self.state not in allowed:
            raise IllegalTransition(f"daemon {self.name}: cannot {event} while {self.state.value}")

    def _leave_fatal(self) -> None:
        if self.state is _S.FATAL:
            self.restart_times.clear()  # leaving FATAL, by cooldown or by command: a fresh window

    def _begin_stop(self, reason: ExitReason, detail: str, now: float, policy: RestartPolicy) -> None:
        self.state = _S.STOPPING
        self.pending_stop_reason, self.pending_stop_detail = reason, detail
        self.stop_deadline = now + policy.stop_grace_seconds
        self.term_sent_at = self.kill_sent_at = None
        self.restart_after_stop = False

    def _forget_process(self) -> None:
        self.pid = self.started_at = self.last_progress_at = self.quiet_until = None
        self.degraded, self.degraded_reason = False, None
        self.stop_deadline = self.term_sent_at = self.kill_sent_at = None
        self.pending_stop_reason, self.pending_stop_detail = None, None
        self.restart_after_stop = False

    def _count(self, reason: ExitReason) -> None:
        self.restarts_by_reason[reason.value] = self.restarts_by_reason.get(reason.value, 0) + 1

    def _schedule_restart(self, record: ExitRecord, now: float, policy: RestartPolicy) -> None:
        """An unforced end: back off, or go FATAL once the window holds more than the budget."""
        self.last_exit = record
        self._count(record.reason)
        window = policy.budget_window_seconds
        self.restart_times = [t for t in self.restart_times if now - t < window] + [now]
        attempt = len(self.restart_times)
        if attempt > policy.budget:
            # -> FATAL: flapping; try again after the cooldown, never give up for good
            self.state, self.next_start_at = _S.FATAL, now + policy.cooldown_seconds
        else:
            # -> BACKOFF
            self.state, self.next_start_at = _S.BACKOFF, now + policy.backoff(attempt)


def _stop_detail(reason: ExitReason) -> str:
    return {ExitReason.SHUTDOWN: "supervisor shutting down"}.get(reason, "stop requested")


def _describe_exit(exit_code: int | None, signal: int | None) -> str:
    if signal is not None:
        try:
            return f"signal {signal} ({_signal.Signals(signal).name})"
        except ValueError:
            return f"signal {signal}"
    return f"exit code {exit_code}" if exit_code is not None else "exit status unknown"


def _secs(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


# -- decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nothing:
    wake_at: float | None = None  # the answer may change by then even without events; None: no timer


@dataclass(frozen=True)
class Spawn:
    """Start a process; report ``spawned(pid, now)`` or ``spawn_failed(detail, now, policy)``."""

    name: str
    incarnation: int  # the number the new process will carry


@dataclass(frozen=True)
class SendTerm:
    """SIGTERM the process, then report ``term_sent(now)``."""

    pid: int
    reason: ExitReason


@dataclass(frozen=True)
class SendKill:
    """SIGKILL the process (its whole group), then report ``kill_sent(now)``."""

    pid: int
    reason: ExitReason


@dataclass(frozen=True)
class MarkHung:
    """Heartbeat stale: report ``request_stop(ExitReason.STALE_HEARTBEAT, now, policy)``."""

    pid: int
    heartbeat_age: float


Action = Nothing | Spawn | SendTerm | SendKill | MarkHung


def _last_sign(proc: DaemonProcess) -> float | None:
    """The last sign of progress (the spawn if none yet); None without a process."""
    return proc.last_progress_at if proc.last_progress_at is not None else proc.started_at


def heartbeat_age(proc: DaemonProcess, now: float) -> float | None:
    """Seconds since the last sign of progress (since the spawn if none yet); None without a process."""
    since = _last_sign(proc)
    return None if since is None else now - since


def _is_stale(proc: DaemonProcess, policy: RestartPolicy, now: float) -> bool:
    stale_at = _stale_at(proc, policy)
    return stale_at is not None and now > stale_at


def _stale_at(proc: DaemonProcess, policy: RestartPolicy) -> float | None:
    """When the silence becomes a hang: heartbeat timeout after the last sign of progress, or the
    end of an announced bounded wait if that is later. None without a process."""
    since = _last_sign(proc)
    if since is None:
        return None
    return max(since + policy.heartbeat_timeout_seconds, proc.quiet_until or 0.0)


def decide(proc: DaemonProcess, policy: RestartPolicy, now: float) -> Action:
    """The one thing the shell should do for this daemon now. Call ``tick`` first."""
    if proc.state in NO_PROCESS:
        if proc.next_start_at is not None and now >= proc.next_start_at:
            return Spawn(proc.name, proc.incarnation + 1)
        return Nothing(proc.next_start_at)
    assert proc.pid is not None, f"{proc.state.value} without a pid"
    if proc.state is _S.STOPPING:
        assert proc.pending_stop_reason is not None and proc.stop_deadline is not None
        if proc.term_sent_at is None:
            return SendTerm(proc.pid, proc.pending_stop_reason)
        if proc.kill_sent_at is not None:
            return Nothing()
        if now >= proc.stop_deadline:
            return SendKill(proc.pid, proc.pending_stop_reason)
        return Nothing(proc.stop_deadline)
    # STARTING/RUNNING. Degraded or not: the pipe pings come from the loop's own thread, so silence
    # past the timeout (or past an announced bounded wait) means the loop is stuck.
    age = heartbeat_age(proc, now)
    stale_at = _stale_at(proc, policy)
    assert age is not None and stale_at is not None
    if now > stale_at:
        return MarkHung(proc.pid, age)
    wakes = [stale_at]
    if proc.state is _S.STARTING and proc.started_at is not None:
        wakes.append(proc.started_at + policy.start_seconds)
    return Nothing(min(wakes) if wakes else None)


def is_healthy(proc: DaemonProcess, policy: RestartPolicy, now: float) -> bool:
    """RUNNING and showing signs of life (a degraded daemon waiting on storage is healthy)."""
    return proc.state is _S.RUNNING and not _is_stale(proc, policy, now)


def health_detail(proc: DaemonProcess, policy: RestartPolicy, now: float) -> str:
    """One line for ``dagctl daemons status``."""
    state = proc.state
    retry_in = _secs(max(0.0, (proc.next_start_at or now) - now))
    if state in (_S.STARTING, _S.RUNNING):
        if _is_stale(proc, policy, now):
            stale = f"stale heartbeat {_secs(heartbeat_age(proc, now) or 0.0)}"
            return f"{stale} (degraded: {proc.degraded_reason})" if proc.degraded else stale
        if proc.degraded:
            return f"degraded: {proc.degraded_reason}"
        return "running" if state is _S.RUNNING else "starting"
    if state is _S.STOPPING:
        return f"stopping: {proc.pending_stop_detail}"
    if state is _S.BACKOFF:
        after = proc.last_exit.detail if proc.last_exit else "exit"
        return f"backoff: retry in {retry_in} after {after}"
    if state is _S.FATAL:
        window = _secs(policy.budget_window_seconds)
        return f"fatal: {len(proc.restart_times)} restarts in {window}; retry in {retry_in}"
    if state is _S.EXITED:
        return "restarting"
    return "stopped" if proc.next_start_at is None else "stopped; start pending"
