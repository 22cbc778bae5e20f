"""The local launcher: one worker process per run on this host, via the fork server when it can.

Each worker leads a session of its own (its job and the job's children are in it), so the launcher
can reach all of it by the worker's pid and start time, which the worker records when it claims
its attempt (``run_attempts.pid`` / ``pid_started_at``).

Fast path: a pre-warmed fork server (see :mod:`forkserver`) forks the worker in milliseconds.
Fallback: a plain ``python -m dagd.runs.worker`` spawn, used when the fork server is disabled
(``run_launcher: {config: {fork_server: false}}``) or fails to answer; the fork server is then
restarted on the next launch.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import IO, TYPE_CHECKING, Any

from dagd.home import run_log_file
from dagd.instance.instance import BuiltinConfigModel
from dagd.process_protocol import (
    Forked,
    ForkFailed,
    ForkRequest,
    ForkServerReady,
    WorkerExited,
    decode_fork_reply,
    encode_fork,
)
from dagd.processes import create_time, kill_session, process_matches, session_members, signal_group
from dagd.runs.attempts import Attempt, WorkerHealth
from dagd.runs.model import Run
from dagd.runs.plugins import RunLauncher, WorkerHandle

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.launcher")

# Test hook, inert unless set: start two workers for every attempt (a duplicate delivery).
FAULT_DUPLICATE_WORKER = "DAGD_FAULT_DUPLICATE_WORKER"

FORK_REPLY_TIMEOUT = 10.0


class ForkServer:
    """The launcher's end of one fork server process."""

    def __init__(self, home: str, on_exit: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dagd.runs.local.forkserver", "--home", home],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            close_fds=True,
            # Its workers inherit this environment, and their titles (dagd.processes) replace the
            # command line that named the home: DAGD_HOME still says whose they are.
            env={**os.environ, "DAGD_HOME": home},
        )
        self._pending: dict[str, Future[int]] = {}
        self._keys = itertools.count()
        self._lock = threading.Lock()
        self._on_exit = on_exit
        self.ready: Future[int] = Future()
        assert self.proc.stdout is not None
        threading.Thread(
            target=self._read, args=(self.proc.stdout,), name="forkserver-reader", daemon=True
        ).start()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            message = decode_fork_reply(raw)
            if isinstance(message, ForkServerReady):
                self.ready.set_result(message.pid)
            elif isinstance(message, Forked):
                with self._lock:
                    future = self._pending.pop(message.key, None)
                if future is not None:
                    future.set_result(message.pid)
            elif isinstance(message, ForkFailed):
                with self._lock:
                    future = self._pending.pop(message.key, None)
                if future is not None:
                    future.set_exception(OSError(message.message))
            elif isinstance(message, WorkerExited) and self._on_exit is not None:
                self._on_exit()
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(OSError("fork server exited"))
        if not self.ready.done():
            self.ready.set_exception(OSError("fork server exited before it was ready"))

    def fork(self, run_id: str, attempt: int, token: str) -> int:
        future: Future[int] = Future()
        key = f"{run_id}/{attempt}/{next(self._keys)}"
        with self._lock:
            self._pending[key] = future
            assert self.proc.stdin is not None
            request = ForkRequest(run_id, attempt, token, key)
            self.proc.stdin.write(encode_fork(request).encode() + b"\n")
            self.proc.stdin.flush()
        return future.result(timeout=FORK_REPLY_TIMEOUT)

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


class LocalProcessRunLauncher(RunLauncher):
    # dagd.instance.config.LocalProcessRunLauncherConfig, imported only when read.
    config_model = BuiltinConfigModel()

    def __init__(self, instance: Instance, config: Any) -> None:
        if config is None:
            from dagd.instance.config import LocalProcessRunLauncherConfig

            config = LocalProcessRunLauncherConfig()
        super().__init__(instance, config)
        self._fork_server: ForkServer | None = None
        self._fork_lock = threading.Lock()

    def worker_command(self, run: Run, attempt: Attempt) -> Sequence[str]:
        return [
            sys.executable, "-m", "dagd.runs.worker", "--home", str(self.instance.home),
            "--attempt", str(attempt.attempt), "--token", attempt.dispatch_token, run.run_id,
        ]  # fmt: skip

    def _notify_exit(self) -> None:
        if self.on_worker_exit is not None:
            self.on_worker_exit()

    def _server(self) -> ForkServer:
        with self._fork_lock:
            if self._fork_server is None or not self._fork_server.alive:
                server = ForkServer(str(self.instance.home), self._notify_exit)
                server.ready.result(timeout=30)
                self._fork_server = server
            return self._fork_server

    def launch(self, run: Run, attempt: Attempt) -> WorkerHandle:
        copies = 2 if os.environ.get(FAULT_DUPLICATE_WORKER) else 1
        handles = [self._launch_one(run, attempt) for _ in range(copies)]
        return handles[0]

    def _launch_one(self, run: Run, attempt: Attempt) -> WorkerHandle:
        if getattr(self.config, "fork_server", True):
            try:
                pid = self._server().fork(run.run_id, attempt.attempt, attempt.dispatch_token)
                return WorkerHandle(pid=pid, started_at=create_time(pid), host=socket.gethostname())
            except (OSError, FutureTimeout) as exc:
                log.warning("fork server failed (%s); spawning the worker instead", exc)
                with self._fork_lock:
                    if self._fork_server is not None:
                        self._fork_server.proc.kill()
                        self._fork_server = None
        return self._spawn(run, attempt)

    def _spawn(self, run: Run, attempt: Attempt) -> WorkerHandle:
        log_file = run_log_file(self.instance.home, run.run_id)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        # The worker's own output (claims, fencing, crashes before it can write to storage).
        with open(log_file, "ab") as crash_log:
            proc = subprocess.Popen(
                self.worker_command(run, attempt),
                stdin=subprocess.DEVNULL,
                stdout=crash_log,
                stderr=crash_log,
                start_new_session=True,
                close_fds=True,
                env={**os.environ, "DAGD_HOME": str(self.instance.home)},  # as for the fork server's
            )

        def reap() -> None:
            proc.wait()  # never leave a zombie in a long-lived parent
            self._notify_exit()

        threading.Thread(target=reap, name=f"reap-{proc.pid}", daemon=True).start()
        return WorkerHandle(pid=proc.pid, started_at=create_time(proc.pid), host=socket.gethostname())

    def check_health(self, run: Run, attempt: Attempt) -> WorkerHealth:
        if attempt.pid is None:
            return WorkerHealth.UNKNOWN  # not claimed yet: its worker has not said who it is
        if attempt.host and attempt.host != socket.gethostname():
            return WorkerHealth.UNKNOWN
        return (
            WorkerHealth.ALIVE if process_matches(attempt.pid, attempt.pid_started_at) else WorkerHealth.DEAD
        )

    def terminate(self, run: Run, attempt: Attempt, *, force: bool = False) -> bool:
        if attempt.pid is None or (attempt.host and attempt.host != socket.gethostname()):
            return False
        if force:
            # The worker, its job and whatever the job started: the whole session.
            kill_session(attempt.pid, attempt.pid_started_at)
            return True
        if not process_matches(attempt.pid, attempt.pid_started_at):
            if session_members(attempt.pid):
                kill_session(attempt.pid, None)  # the worker died; its job's leftovers go too
            return False
        signal_group(attempt.pid, signal.SIGTERM)  # the watcher stops its job, then writes CANCELED
        return True

    def close(self) -> None:
        with self._fork_lock:
            if self._fork_server is not None:
                self._fork_server.close()
                self._fork_server = None
