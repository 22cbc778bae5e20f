"""The run worker: claims one attempt of a run, runs the job in a child process, watches it.

    python -m dagd.runs.worker --home DAGD_HOME RUN_ID --attempt N --token TOKEN

The worker process is a watcher (the same one whether the local launcher or a fleet host started
it); the job's own code runs in a child process in a process group of its own:

1. **Claim** (:func:`claim`): one compare-and-set on the attempt's dispatch token. A duplicate or
   stale delivery changes nothing and is logged; a run canceled before it started ends here.
2. **Run** (:func:`start_job`): the job is forked with pipes for stdout, stderr, ``context.log``
   and its result; everything it (and its subprocesses) write becomes the run's logs, written
   fenced by the attempt, so a worker that lost its attempt writes nothing more.
3. **Watch** (:class:`Watch`): heartbeat the attempt on the database's clock; on CANCELING (seen in
   the heartbeat) or SIGTERM, stop the job (SIGTERM, SIGKILL after the grace). Fence itself: when
   heartbeats have failed for ``freeze_after`` it suspends the job (SIGSTOP) and resumes it once a
   heartbeat succeeds again (a database outage fails no run); the job kills its own group when
   it has not heard of a successful heartbeat for ``kill_after`` (the watcher frozen, killed or
   cut off), well before run monitoring may declare the attempt lost and start another.
4. **Finish** (:func:`finish`): the end status, fenced by the attempt, retried through a storage
   outage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dagd.errors import DagdError, DefinitionError, StorageUnavailable
from dagd.processes import run_title, set_title
from dagd.runs.attempts import ClaimOutcome, fence_deadlines, heartbeat_interval
from dagd.runs.model import Run, RunStatus
from dagd.timefmt import utcnow

if TYPE_CHECKING:
    from dagd.definitions import Definitions
    from dagd.instance.instance import Instance
    from dagd.storage.attempts import WorkerId
    from dagd.workspace import CodeLocationTarget

FLUSH_SECONDS = 0.2
TERMINATE_GRACE_SECONDS = 5.0
DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 30.0

log = logging.getLogger("dagd.worker")


class RunCanceled(BaseException):
    """Raised in the job's main thread when the job process receives SIGTERM."""


# -- logs -------------------------------------------------------------------------------------


class LogSink:
    """Buffers log lines and writes them to storage in batches from one thread.

    ``write`` returns False when the attempt is fenced: the lines are dropped and ``fenced`` set.
    """

    def __init__(self, write: Callable[[list[tuple[datetime, str, str, str]]], bool]) -> None:
        self._write = write
        self._lines: list[tuple[datetime, str, str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.fenced = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="log-sink", daemon=True)
        self._thread.start()

    def add(self, stream: str, level: str, message: str, at: datetime | None = None) -> None:
        with self._lock:
            self._lines.append((at or utcnow(), stream, level, message))

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        if lines and not self.fenced.is_set():
            try:
                if not self._write(lines):
                    self.fenced.set()
            except Exception:  # storage hiccup: keep the lines for the next try
                with self._lock:
                    self._lines[:0] = lines
                raise

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:
                pass

    def close(self, deadline: float) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        while True:
            try:
                self.flush()
                return
            except Exception:
                if time.monotonic() >= deadline:
                    return
                time.sleep(0.5)


def _pump(fd: int, on_line: Callable[[str], None], name: str) -> threading.Thread:
    """Read ``fd`` to its end, calling ``on_line`` for every line."""

    def pump() -> None:
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            buffer = b""
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    on_line(line.decode("utf-8", "replace"))
            if buffer:
                on_line(buffer.decode("utf-8", "replace"))

    thread = threading.Thread(target=pump, name=f"pump-{name}", daemon=True)
    thread.start()
    return thread


# -- the job process ----------------------------------------------------------------------------


@dataclass
class RunContext:
    """What a job function receives: ``context.run_id``, ``.tags``, ``.run_config``, ``.log``."""

    run_id: str
    job_name: str
    tags: dict[str, str]
    run_config: dict[str, Any]
    log: logging.Logger = field(repr=False)
    attempt: int = 1


class _PipeHandler(logging.Handler):
    """``context.log`` records as JSON lines on the log pipe (time, level, message)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        line = json.dumps({"t": record.created, "l": record.levelname, "m": self.format(record)})
        try:
            os.write(self.fd, line.encode() + b"\n")
        except OSError:
            pass


@dataclass(frozen=True)
class JobPipes:
    """The job's ends and the watcher's ends of its pipes."""

    stdout: tuple[int, int]
    stderr: tuple[int, int]
    logs: tuple[int, int]
    result: tuple[int, int]
    lease: tuple[int, int]  # watcher -> job: "the attempt is ours until monotonic time T"

    @classmethod
    def open(cls) -> JobPipes:
        return cls(os.pipe(), os.pipe(), os.pipe(), os.pipe(), os.pipe())


def _fence_guard(lease_fd: int, deadline: float) -> None:
    """In the job: kill the job's process group unless the watcher keeps extending ``deadline``
    (monotonic seconds), or at once when the watcher is gone (end of file on the lease pipe)."""

    def kill() -> None:
        os.write(2, b"dagd: self-fencing: the attempt's heartbeat was not renewed in time; killing the job\n")
        os.killpg(0, signal.SIGKILL)

    def read_deadline(current: float) -> float:
        data = os.read(lease_fd, 4096)
        if not data:
            os.write(2, b"dagd: the run's watcher is gone; killing the job\n")
            os.killpg(0, signal.SIGKILL)
        values = data.split()
        return float(values[-1]) if values else current

    def guard() -> None:
        nonlocal deadline
        while True:
            wait = deadline - time.monotonic()
            if wait <= 0:
                # A renewal may have been written just before we were resumed: read it first.
                readable, _, _ = select.select([lease_fd], [], [], 0)
                if not readable:
                    kill()
                deadline = read_deadline(deadline)
                continue
            readable, _, _ = select.select([lease_fd], [], [], wait)
            if readable:
                deadline = read_deadline(deadline)

    threading.Thread(target=guard, name="fence-guard", daemon=True).start()


def _set_parent_death_signal() -> None:
    """Linux: SIGKILL this process when its parent (the watcher) dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _job_main(
    run: Run, attempt: int, fn: Callable[[RunContext], Any], pipes: JobPipes, deadline: float
) -> None:
    """In the forked job process: never returns."""
    code = 0
    try:
        os.setpgid(0, 0)
        _set_parent_death_signal()
        for fd in (pipes.stdout[0], pipes.stderr[0], pipes.logs[0], pipes.result[0], pipes.lease[1]):
            os.close(fd)
        os.dup2(pipes.stdout[1], 1)
        os.dup2(pipes.stderr[1], 2)
        os.close(pipes.stdout[1])
        os.close(pipes.stderr[1])
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        _fence_guard(pipes.lease[0], deadline)

        def on_sigterm(_signum: int, _frame: Any) -> None:
            raise RunCanceled()

        signal.signal(signal.SIGTERM, on_sigterm)
        logger = logging.getLogger(f"dagd.run.{run.run_id}")
        logger.handlers[:] = [_PipeHandler(pipes.logs[1])]
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        context = RunContext(run.run_id, run.job_name, dict(run.tags), dict(run.run_config), logger, attempt)
        result: dict[str, Any] = {"status": RunStatus.SUCCESS.value}
        try:
            fn(context)
        except RunCanceled:
            result = {"status": RunStatus.CANCELED.value}
        except BaseException as exc:  # the job's failure is the run's result, whatever it raised
            traceback.print_exc()
            result = {"status": RunStatus.FAILURE.value, "error": f"{type(exc).__name__}: {exc}"}
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(pipes.result[1], json.dumps(result).encode())
    except BaseException:
        code = 1
    finally:
        os._exit(code)


# -- the watcher --------------------------------------------------------------------------------


def worker_identity() -> WorkerId:
    from dagd.processes import create_time
    from dagd.storage.attempts import WorkerId

    pid = os.getpid()
    host = socket.gethostname()
    return WorkerId(name=f"{host}:{pid}", host=host, pid=pid, started_at=create_time(pid))


def _load_definitions(home: str, target: CodeLocationTarget, sink: LogSink) -> Definitions:
    """The location's definitions from disk, or, while its files do not load, the last good copy."""
    from dagd.codeserver.last_good import load_last_good
    from dagd.workspace import load_target

    try:
        return load_target(target)
    except DefinitionError as exc:
        fallback = load_last_good(home, target)
        if fallback is None:
            raise
        sink.add("stderr", "WARNING", f"{exc}: running the last good definitions of {target.name} instead")
        return fallback


def _job_function(home: str, run: Run, sink: LogSink) -> Callable[[RunContext], Any]:
    from dagd.workspace import CodeLocationTarget

    if not run.code_location:
        raise DagdError("run has no code location")
    definitions = _load_definitions(home, CodeLocationTarget.from_json(run.code_location), sink)
    job = definitions.job_named(run.job_name)
    if job is None:
        raise DagdError(f"job {run.job_name!r} no longer exists in {run.code_location}")
    return job.fn  # type: ignore[no-any-return]


class Watch:
    """The watcher's loop over one running job: heartbeat, cancel, fence; returns its wait status.

    Heartbeats run on their own thread, because a call to an unreachable database can block for
    seconds; the main loop never touches storage, so it suspends the job on time whatever the
    database does.
    """

    def __init__(
        self,
        instance: Instance,
        run: Run,
        attempt: int,
        me: WorkerId,
        pid: int,
        lease_fd: int,
        claimed_at: float,
    ) -> None:
        self.instance = instance
        self.run = run
        self.attempt = attempt
        self.me = me
        self.pid = pid
        self.lease_fd = lease_fd
        timeout = _heartbeat_timeout(instance)
        self.interval = heartbeat_interval(timeout)
        self.freeze_after, self.kill_after = fence_deadlines(timeout)
        self.last_ok = claimed_at  # monotonic start of the last heartbeat that succeeded
        self.frozen = False
        self.fenced = threading.Event()
        self.cancel_seen = threading.Event()
        self.canceling = False
        self.kill_at: float | None = None
        self.terminate_requested = False
        self._fence_killed = False
        self._done = threading.Event()

    def _signal_job(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _tag(self) -> str:
        return f"run {self.run.run_id} attempt {self.attempt}"

    def cancel(self, why: str) -> None:
        if self.canceling:
            return
        self.canceling = True
        log.info("%s: stopping the job (%s)", self._tag(), why)
        self._signal_job(signal.SIGTERM)
        if self.frozen:
            self._signal_job(signal.SIGCONT)
            self.frozen = False
        self.kill_at = time.monotonic() + TERMINATE_GRACE_SECONDS

    def _beats(self) -> None:
        """The heartbeat thread: stamp the attempt every interval; renew the job's deadline."""
        attempts = self.instance.storage.attempts
        while not self._done.wait(self.interval):
            started = time.monotonic()
            try:
                status = attempts.heartbeat(self.run.run_id, self.attempt, self.me.name)
            except StorageUnavailable:
                continue
            except Exception as exc:  # never let the thread die: silence would fence the job
                log.warning("%s: heartbeat failed: %s", self._tag(), exc)
                continue
            if status is None:
                self.fenced.set()
                return
            # Renew the job's own deadline first, then let the main loop see the success.
            try:
                os.write(self.lease_fd, f"{started + self.kill_after:.6f}\n".encode())
            except OSError:
                pass
            self.last_ok = started
            if status == RunStatus.CANCELING:
                self.cancel_seen.set()

    def wait(self, sink: LogSink) -> int:
        """Until the job process exits; its wait status."""
        pidfd = _pidfd(self.pid)
        beats = threading.Thread(target=self._beats, name="heartbeat", daemon=True)
        beats.start()
        try:
            while True:
                if self.terminate_requested:
                    self.terminate_requested = False
                    self.cancel("SIGTERM")
                if self.cancel_seen.is_set():
                    self.cancel("the run is CANCELING")
                if (self.fenced.is_set() or sink.fenced.is_set()) and not self._fence_killed:
                    log.warning("%s: fenced (the attempt is no longer ours): killing the job", self._tag())
                    self.fenced.set()
                    self._signal_job(signal.SIGKILL)
                    self._signal_job(signal.SIGCONT)
                    self._fence_killed = True
                now = time.monotonic()
                silent = now - self.last_ok
                if not self.frozen and not self.canceling and silent > self.freeze_after:
                    log.warning(
                        "%s: no heartbeat for %.1fs: suspending the job until storage answers",
                        self._tag(),
                        silent,
                    )
                    self._signal_job(signal.SIGSTOP)
                    self.frozen = True
                elif self.frozen and silent <= self.freeze_after:
                    log.info("%s: storage answers again: resuming the job", self._tag())
                    self._signal_job(signal.SIGCONT)
                    self.frozen = False
                if self.kill_at is not None and now >= self.kill_at:
                    self._signal_job(signal.SIGKILL)
                    self.kill_at = None
                done, status = os.waitpid(self.pid, os.WNOHANG)
                if done:
                    return status
                wait = 0.1 if self.frozen else max(0.01, min(0.1, self.freeze_after - silent))
                if pidfd is not None:
                    try:
                        select.select([pidfd], [], [], wait)
                    except InterruptedError:
                        pass
                else:
                    time.sleep(wait)
        finally:
            self._done.set()
            if pidfd is not None:
                os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined,no-any-return]
    except (AttributeError, OSError):
        return None


def _heartbeat_timeout(instance: Instance) -> float:
    value = getattr(instance.config.run_monitoring, "worker_heartbeat_timeout_seconds", None)
    return float(value or DEFAULT_HEARTBEAT_TIMEOUT_SECONDS)


def finish(
    instance: Instance,
    run: Run,
    attempt: int,
    me: WorkerId,
    status: RunStatus,
    error: str | None,
    deadline: float,
) -> None:
    """Write the end status, fenced by the attempt; retried while storage is unavailable.

    A job stopped by SIGTERM while its run was not CANCELING (the worker was stopped from outside
    dagd: a host shutting down, an operator's kill) is a FAILURE saying so, not a cancel.
    """
    runs = instance.storage.runs
    fence = (attempt, me.name)
    while True:
        try:
            if status == RunStatus.CANCELED:
                done = runs.transition(
                    run.run_id, RunStatus.CANCELED, expected=(RunStatus.CANCELING,), message="canceled", attempt=fence
                ) or runs.transition(
                    run.run_id, RunStatus.FAILURE, expected=(RunStatus.STARTED,), attempt=fence,
                    error="the job was stopped by SIGTERM from outside dagd (the run was not canceled)",
                )  # fmt: skip
            else:
                done = runs.transition(
                    run.run_id, status, expected=(RunStatus.STARTED, RunStatus.CANCELING), error=error,
                    message="finished" if error is None else "", attempt=fence,
                )  # fmt: skip
            if done is None:
                log.warning(
                    "run %s attempt %d: end status %s not written: the attempt is no longer ours",
                    run.run_id, attempt, status.value,
                )  # fmt: skip
            return
        except StorageUnavailable as exc:
            if time.monotonic() >= deadline:
                log.error(
                    "run %s attempt %d: giving up writing %s: %s", run.run_id, attempt, status.value, exc
                )
                return
            time.sleep(0.5)


def ignore_sigpipe() -> None:
    """The watcher writes deadline renewals into a pipe its job reads; once the job has exited,
    such a write must fail with EPIPE, not kill the watcher. Python ignores SIGPIPE by default,
    but the fork server restores the default action in its children (as a plain ``fork`` would):
    without this, a job ending between two heartbeats killed its watcher silently, and the run
    was failed as WORKER_DIED although the job had succeeded."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def execute(home: str, run_id: str, attempt: int, token: str) -> int:
    """Run one attempt: claim it, load its job, fork it, watch it, write its end status.

    The exit code is 1 only when storage could not be reached to claim the attempt."""
    from dagd.instance.instance import Instance

    set_title(run_title(run_id))
    ignore_sigpipe()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    instance = Instance.load(home, create=False)
    # Storage is opened before the SIGTERM handler below is in place: a SIGTERM meanwhile ends the worker.
    instance.storage  # noqa: B018
    me = worker_identity()
    watch_holder: list[Watch] = []

    def on_sigterm(_signum: int, _frame: Any) -> None:
        if watch_holder:
            watch_holder[0].terminate_requested = True

    signal.signal(signal.SIGTERM, on_sigterm)
    claimed_at = time.monotonic()
    refused = _claim(instance, run_id, attempt, token, me)
    if refused is not None:
        return refused
    claimed = Claimed.of(instance, run_id, attempt, me, claimed_at)
    try:
        fn = _job_function(home, claimed.run, claimed.sink)
    except BaseException as exc:
        claimed.sink.add("stderr", "ERROR", traceback.format_exc().rstrip())
        claimed.sink.close(claimed.outage_deadline())
        claimed.finish(RunStatus.FAILURE, f"{type(exc).__name__}: {exc}")
        return 0
    pid, pipes, pumps = _fork_job(claimed, fn)
    watch = Watch(instance, claimed.run, attempt, me, pid, pipes.lease[1], claimed_at)
    watch_holder.append(watch)
    wait_status = watch.wait(claimed.sink)
    raw = _collect(pipes, pumps)
    if watch.fenced.is_set():
        log.warning("run %s attempt %d: fenced; nothing more is written", run_id, attempt)
        return 0
    claimed.sink.close(claimed.outage_deadline())
    claimed.finish(*_result(raw, wait_status, watch.canceling))
    return 0


def _claim(instance: Instance, run_id: str, attempt: int, token: str, me: WorkerId) -> int | None:
    """Claim the attempt for this worker: None when claimed, else the worker's exit code."""
    try:
        claim = instance.storage.attempts.claim(run_id, attempt, token, me)
    except StorageUnavailable as exc:
        # Nothing was claimed: the attempt stays DISPATCHED, to be dispatched again (its dispatcher
        # died) or failed by the start timeout. A second try would only hold a process longer.
        log.error("run %s attempt %d: not claimed: %s", run_id, attempt, exc)
        return 1
    if claim.outcome != ClaimOutcome.CLAIMED:
        log.warning(
            "run %s attempt %d: not claimed: %s", run_id, attempt, claim.reason or claim.outcome.value
        )
        return 0
    return None


@dataclass
class Claimed:
    """An attempt this worker claimed: its run, its log sink (fenced by the attempt) and the
    bounds on riding out a storage outage at the end."""

    instance: Instance
    run: Run
    attempt: int
    me: WorkerId
    sink: LogSink
    timeout: float  # the worker heartbeat timeout
    kill_at: float  # monotonic: the job kills itself then unless its lease was renewed

    @classmethod
    def of(cls, instance: Instance, run_id: str, attempt: int, me: WorkerId, claimed_at: float) -> Claimed:
        storage = instance.storage
        run = storage.runs.require(run_id)
        # Not the fork server's command line (#18): the job forked below inherits the title.
        set_title(run_title(run.run_id, run.job_name))
        fence = (attempt, me.name)
        sink = LogSink(lambda lines: storage.runs.append_logs(run_id, lines, attempt=fence))
        timeout = _heartbeat_timeout(instance)
        _, kill_after = fence_deadlines(timeout)
        return cls(instance, run, attempt, me, sink, timeout, claimed_at + kill_after)

    def outage_deadline(self) -> float:
        return time.monotonic() + max(60.0, 3 * self.timeout)

    def finish(self, status: RunStatus, error: str | None) -> None:
        finish(self.instance, self.run, self.attempt, self.me, status, error, self.outage_deadline())


def _fork_job(
    claimed: Claimed, fn: Callable[[RunContext], Any]
) -> tuple[int, JobPipes, list[threading.Thread]]:
    """Fork the job process; its output and log records pumped into the sink by threads."""
    pipes = JobPipes.open()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _job_main(claimed.run, claimed.attempt, fn, pipes, claimed.kill_at)
    for fd in (pipes.stdout[1], pipes.stderr[1], pipes.logs[1], pipes.result[1], pipes.lease[0]):
        os.close(fd)
    sink = claimed.sink
    pumps = [
        _pump(pipes.stdout[0], lambda line: sink.add("stdout", "INFO", line), "stdout"),
        _pump(pipes.stderr[0], lambda line: sink.add("stderr", "ERROR", line), "stderr"),
        _pump(pipes.logs[0], lambda line: _log_line(sink, line), "logs"),
    ]
    return pid, pipes, pumps


def _collect(pipes: JobPipes, pumps: list[threading.Thread]) -> bytes:
    """After the job ended: what it wrote on its result pipe; its lease pipe closed, its output drained."""
    with os.fdopen(pipes.result[0], "rb") as result_pipe:
        raw = result_pipe.read()
    os.close(pipes.lease[1])
    for pump in pumps:
        pump.join(timeout=2)
    return raw


def _log_line(sink: LogSink, line: str) -> None:
    try:
        record = json.loads(line)
        at = datetime.fromtimestamp(float(record["t"]), tz=utcnow().tzinfo)
        sink.add("log", str(record["l"]), str(record["m"]), at)
    except (ValueError, KeyError, TypeError):
        sink.add("log", "INFO", line)


def _result(raw: bytes, wait_status: int, canceling: bool) -> tuple[RunStatus, str | None]:
    try:
        result = json.loads(raw)
        return RunStatus(result["status"]), result.get("error")
    except (ValueError, KeyError, TypeError):
        pass
    if canceling:
        return RunStatus.CANCELED, None
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        return RunStatus.FAILURE, f"the job process was killed by {signal.Signals(sig).name}"
    return RunStatus.FAILURE, f"the job process exited with code {os.waitstatus_to_exitcode(wait_status)}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dagd.runs.worker")
    parser.add_argument("--home", required=True)
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("run_id")
    args = parser.parse_args(argv)
    # os._exit: the job's non-daemon threads must not keep a finished run's worker alive.
    os._exit(execute(args.home, args.run_id, args.attempt, args.token))


if __name__ == "__main__":
    main()
