"""The process table: the I/O shell around the pure state machine in :mod:`states`.

One record per daemon. A control thread ticks every record, asks ``decide`` what to do and does
it (spawn by exec, SIGTERM, SIGKILL of the whole process group), and reaps exits. One reader
thread per child turns the child's status pipe (its stdout, JSON lines) into ``progress`` and
``set_degraded`` events, which is how liveness is known without the database. The write end of
each child's stdin stays here: if this process dies, every daemon sees EOF and exits.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

import psutil

from dagd.instance.instance import Instance
from dagd.process_protocol import UNCHANGED, WAKE, Busy, Progress, WakeRequest, decode
from dagd.processes import signal_group
from dagd.supervisor.states import (
    ALIVE,
    DaemonProcess,
    ExitReason,
    MarkHung,
    RestartPolicy,
    SendKill,
    SendTerm,
    Spawn,
    decide,
    health_detail,
    heartbeat_age,
    is_healthy,
)

ASKED_TO_STOP = frozenset({ExitReason.COMMANDED, ExitReason.SHUTDOWN})
log = logging.getLogger("dagd.supervisor")

# How often exits are reaped and decisions re-taken; a few idle wakeups a second cost little CPU.
TICK_SECONDS = 0.25


def policy_from(instance: Instance) -> RestartPolicy:
    daemons = instance.config.daemons
    restart = daemons.restart
    return RestartPolicy(
        initial_backoff_seconds=restart.initial_backoff_seconds,
        max_backoff_seconds=restart.max_backoff_seconds,
        budget=restart.budget,
        budget_window_seconds=restart.budget_window_seconds,
        cooldown_seconds=restart.cooldown_seconds,
        # Readiness comes from the daemon's first status message (ProcessTable._read_pipe), not
        # from a timer: under load a daemon that dies in its imports can take seconds to do so.
        start_seconds=math.inf,
        heartbeat_timeout_seconds=daemons.heartbeat_timeout_seconds,
        stop_grace_seconds=daemons.stop_grace_seconds,
    )


@dataclass(frozen=True)
class DaemonView:
    """A snapshot of one daemon for status output."""

    name: str
    state: str
    healthy: bool
    detail: str
    pid: int | None
    incarnation: int
    uptime_seconds: float
    restarts: int
    restarts_by_reason: dict[str, int]
    last_exit: str | None
    degraded: bool
    last_progress_age: float | None  # seconds since the last progress; None without a process
    last_exit_reason: str | None = None  # an ExitReason value; COMMANDED and SHUTDOWN are not errors


def child_environment() -> dict[str, str]:
    """The environment of daemons and code servers: ours, with glibc's malloc arenas capped.

    glibc gives each thread that allocates its own 64 MB malloc arena; a daemon whose pool threads
    take turns with large short-lived buffers (a thousand sensors' answers a second) fragments
    several of them, and its RSS creeps up by tens of MB over an hour. Two arenas keep it flat at
    no measurable cost for these mostly single-threaded, I/O-bound processes. A value the user
    set is kept.
    """
    return {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}


class ProcessTable:
    def __init__(
        self,
        instance: Instance,
        names: Sequence[str],
        *,
        policy: RestartPolicy | None = None,
        command: Callable[[str, int], list[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_prefix: str = "",
    ) -> None:
        self.instance = instance
        self.log_prefix = log_prefix
        self.policy = policy or policy_from(instance)
        self.clock = clock
        self.procs = {name: DaemonProcess(name) for name in names}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._create_times: dict[int, float] = {}
        self._command = command or self._default_command
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.shutting_down = False
        # When the control thread last finished a step (monotonic): the supervisor's main loop
        # vouches for it to systemd's watchdog and the health service (dagd.supervisor.app).
        self.last_step_at: float | None = None
        # The incarnation of each daemon that has sent its first progress message, i.e. finished
        # an iteration and stored its first heartbeat (dagd.daemons.base sends one after each).
        self._first_progress: dict[str, int] = {}
        # Called with a daemon name when a child asks for another daemon to be woken.
        self.on_wake_request: Callable[[str], None] | None = None
        # The validated config as one line for each daemon's stdin (Instance.handoff_line), so
        # daemons need not import pydantic to validate dagd.yaml again; None: they read the file.
        self.config_line: bytes | None = None

    def _default_command(self, name: str, incarnation: int) -> list[str]:
        command = [
            sys.executable, "-m", "dagd.daemons", name,
            "--home", str(self.instance.home), "--incarnation", str(incarnation),
        ]  # fmt: skip
        if self.instance.fence_epoch is not None:
            command += ["--epoch", str(self.instance.fence_epoch)]
        if self.config_line is not None:
            command.append("--config-stdin")
        return command

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        now = self.clock()
        with self._lock:
            for proc in self.procs.values():
                proc.request_start(now)
        self._thread = threading.Thread(target=self._run, name="process-table", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stopped = self._stop  # this run's: reset() gives the next one its own
        while not stopped.is_set():
            try:
                self.step()
            except Exception:  # the supervisor must outlive its own bugs; log loudly and go on
                log.exception("process table step failed")
            else:
                self.last_step_at = time.monotonic()
            stopped.wait(TICK_SECONDS)

    def step(self) -> None:
        with self._lock:
            for name, proc in list(self.procs.items()):
                self._reap(name, proc)
                now = self.clock()
                proc.tick(now, self.policy)
                self._act(proc, decide(proc, self.policy, now), now)

    def _reap(self, name: str, proc: DaemonProcess) -> None:
        child = self._children.get(name)
        if child is None or child.poll() is None:
            return
        del self._children[name]
        self._create_times.pop(child.pid, None)
        code = child.returncode
        exit_code, sig = (None, -code) if code < 0 else (code, None)
        # Anything the daemon left in its group goes with it.
        _kill_group(child.pid, signal.SIGKILL)
        if proc.state in ALIVE:
            proc.exited(exit_code, sig, self.clock(), self.policy)
            exit_detail = proc.last_exit.detail if proc.last_exit else ""
            # Asked to stop (Ctrl-C, `daemons restart`) and did: news, not a warning.
            asked = proc.last_exit is not None and proc.last_exit.reason in ASKED_TO_STOP
            log.log(
                logging.INFO if asked else logging.WARNING,
                "daemon %s (pid %d) exited: %s; now %s", name, child.pid, exit_detail, proc.state.value,
            )  # fmt: skip

    def _act(self, proc: DaemonProcess, action: object, now: float) -> None:
        if isinstance(action, Spawn):
            if self.shutting_down:
                return
            try:
                child = self._spawn(action.name, action.incarnation)
            except OSError as exc:
                proc.spawn_failed(str(exc), now, self.policy)
                return
            proc.spawned(child.pid, now)
            log.info("daemon %s started (pid %d, incarnation %d)", proc.name, child.pid, proc.incarnation)
        elif isinstance(action, MarkHung):
            log.warning(
                "daemon %s (pid %d) hung: no progress for %.1fs", proc.name, action.pid, action.heartbeat_age
            )
            proc.request_stop(ExitReason.STALE_HEARTBEAT, now, self.policy)
        elif isinstance(action, SendTerm):
            # A stopped (SIGSTOP) process cannot act on SIGTERM until continued.
            _kill_group(action.pid, signal.SIGTERM)
            _kill_group(action.pid, signal.SIGCONT)
            proc.term_sent(now)
        elif isinstance(action, SendKill):
            _kill_group(action.pid, signal.SIGKILL)
            proc.kill_sent(now)

    def _spawn(self, name: str, incarnation: int) -> subprocess.Popen[bytes]:
        logs = self.instance.logs_dir
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{self.log_prefix}{name}.stderr.log", "ab") as stderr:
            child = subprocess.Popen(
                self._command(name, incarnation),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
                close_fds=True,
                # A daemon's title (dagd.processes) replaces the command line naming its home.
                env={**child_environment(), "DAGD_HOME": str(self.instance.home)},
            )
        if self.config_line is not None and self._command == self._default_command:  # daemons only
            _send_config(child, self.config_line)
        self._children[name] = child  # only now can a wake-up be written: it comes after the config
        try:  # pid + start time identify the child later (leftover check) without asking again
            self._create_times[child.pid] = psutil.Process(child.pid).create_time()
        except psutil.NoSuchProcess:
            pass
        assert child.stdout is not None
        threading.Thread(
            target=self._read_pipe, args=(name, child.pid, child.stdout), name=f"pipe-{name}", daemon=True
        ).start()
        return child

    def _read_pipe(self, name: str, pid: int, stream: IO[bytes]) -> None:
        for raw in stream:
            message = decode(raw)
            if message is None:
                continue
            with self._lock:
                proc = self.procs[name]
                if proc.pid != pid:
                    return  # a message from an incarnation already replaced
                now = self.clock()
                proc.ready(now)
                if isinstance(message, WakeRequest):
                    if self.on_wake_request is not None:
                        self.on_wake_request(message.daemon)
                    continue  # may come from any of the daemon's threads: not a sign the loop moves
                if isinstance(message, Progress):
                    self._first_progress[name] = proc.incarnation
                degraded = proc.degraded_reason if message.degraded is UNCHANGED else message.degraded
                if isinstance(message, Busy):
                    proc.busy(now, message.seconds, degraded)
                else:
                    proc.progress(now, degraded)

    # -- commands ------------------------------------------------------------------------------

    def add(self, name: str) -> None:
        """Supervise one more process (e.g. a code location added to the workspace)."""
        with self._lock:
            if name not in self.procs:
                self.procs[name] = DaemonProcess(name)
                self.procs[name].request_start(self.clock())

    def remove(self, name: str, timeout: float = 10.0) -> None:
        """Stop a process for good and forget it."""
        with self._lock:
            proc = self.procs.get(name)
            if proc is None:
                return
            proc.request_stop(ExitReason.COMMANDED, self.clock(), self.policy)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                self.step()
                if proc.state not in ALIVE and name not in self._children:
                    del self.procs[name]
                    return
            time.sleep(0.05)
        with self._lock:
            child = self._children.pop(name, None)
            if child is not None:
                _kill_group(child.pid, signal.SIGKILL)
            self.procs.pop(name, None)

    def wake(self, name: str) -> None:
        """Nudge a daemon's loop (e.g. the run queue after a submission). Never blocks for long."""
        child = self._children.get(name)
        if child is None or child.stdin is None:
            return
        try:
            os.write(child.stdin.fileno(), WAKE)
        except (OSError, ValueError):
            pass

    def restart(self, name: str) -> None:
        with self._lock:
            self.procs[name].request_restart(self.clock(), self.policy)
            self.step()

    def stop_all(self, timeout: float) -> None:
        """Stop every daemon (SIGTERM, SIGKILL after the grace) and wait for them to be reaped."""
        self.shutting_down = True
        with self._lock:
            now = self.clock()
            for proc in self.procs.values():
                proc.request_stop(ExitReason.SHUTDOWN, now, self.policy)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.step()
            with self._lock:
                if all(p.state not in ALIVE for p in self.procs.values()) and not self._children:
                    break
            time.sleep(0.05)
        self.kill_all()
        self._stop.set()

    def reset(self) -> None:
        """After :meth:`stop_all`: ready to :meth:`start` again, for a supervisor that stepped down
        and leads anew. Each daemon starts from a fresh state (no restarts counted, no backoff)
        but keeps counting incarnations, so no number is handed out twice by this process."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            fresh = {}
            for name, old in self.procs.items():
                fresh[name] = DaemonProcess(name)
                fresh[name].incarnation = old.incarnation
            self.procs = fresh
            self._children.clear()
            self._create_times.clear()
            self._first_progress.clear()
            self._stop = threading.Event()
            self._thread = None
            self.shutting_down = False
            self.last_step_at = None

    def kill_all(self) -> None:
        with self._lock:
            for child in list(self._children.values()):
                _kill_group(child.pid, signal.SIGKILL)
            for name, child in list(self._children.items()):
                try:
                    child.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
                self._children.pop(name, None)

    def pids(self) -> dict[str, tuple[int, float]]:
        out = {}
        with self._lock:
            for name, child in self._children.items():
                started = self._create_times.get(child.pid)
                if started is not None:
                    out[name] = (child.pid, started)
        return out

    # -- status --------------------------------------------------------------------------------

    def snapshot(self) -> list[DaemonView]:
        now = self.clock()
        with self._lock:
            return [
                DaemonView(
                    name=p.name,
                    state=p.state.value,
                    healthy=is_healthy(p, self.policy, now),
                    detail=health_detail(p, self.policy, now),
                    pid=p.pid,
                    incarnation=p.incarnation,
                    uptime_seconds=(now - p.started_at) if p.started_at is not None else 0.0,
                    restarts=p.total_restarts,
                    restarts_by_reason=dict(p.restarts_by_reason),
                    last_exit=p.last_exit.detail if p.last_exit else None,
                    degraded=p.degraded,
                    last_progress_age=heartbeat_age(p, now),
                    last_exit_reason=p.last_exit.reason.value if p.last_exit else None,
                )
                for p in self.procs.values()
            ]

    def all_have_heartbeat(self) -> bool:
        """Every daemon's current incarnation has finished an iteration and sent its heartbeat."""
        with self._lock:
            return all(
                p.state in ALIVE and self._first_progress.get(name) == p.incarnation
                for name, p in self.procs.items()
            )


def _send_config(child: subprocess.Popen[bytes], line: bytes) -> None:
    """Write the config line to a new daemon's stdin (a few KB: the pipe buffer takes it at once).

    A child that died already (EPIPE) is reaped and restarted like any other exit.
    """
    assert child.stdin is not None
    try:
        child.stdin.write(line)
        child.stdin.flush()
    except OSError:
        pass


def _kill_group(pid: int, sig: int) -> None:
    signal_group(pid, sig)
