"""The run worker: one OS process per run, started by the launcher.

    python -m dagd.runs.worker --home DAGD_HOME RUN_ID

It claims the run (STARTING -> STARTED, compare-and-set), loads the run's code location, calls the
job with a context, and ends the run SUCCESS, FAILURE (with the exception) or CANCELED (on SIGTERM).
``context.log`` and everything written to file descriptors 1 and 2 (the job's subprocesses too)
become the run's logs. A background thread heartbeats the run while it executes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psutil

from dagd.errors import DagdError, DefinitionError
from dagd.runs.model import Run, RunStatus
from dagd.timefmt import utcnow

if TYPE_CHECKING:
    from dagd.definitions import Definitions
    from dagd.workspace import CodeLocationTarget

HEARTBEAT_SECONDS = 2.0
FLUSH_SECONDS = 0.2


class RunCanceled(BaseException):
    """Raised in the job's thread when the worker receives SIGTERM."""


class LogSink:
    """Buffers log lines and writes them to storage in batches from one thread."""

    def __init__(self, write: Callable[[list[tuple[datetime, str, str, str]]], None]) -> None:
        self._write = write
        self._lines: list[tuple[datetime, str, str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="log-sink", daemon=True)
        self._thread.start()

    def add(self, stream: str, level: str, message: str) -> None:
        with self._lock:
            self._lines.append((utcnow(), stream, level, message))

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        if lines:
            self._write(lines)

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:  # storage hiccup: keep the lines for the next try
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()


def _capture_fd(fd: int, stream: str, sink: LogSink) -> threading.Thread:
    """Point ``fd`` at a pipe and turn what arrives into log lines (subprocesses included)."""
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            buffer = b""
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    sink.add(
                        stream, "INFO" if stream == "stdout" else "ERROR", line.decode("utf-8", "replace")
                    )
            if buffer:
                sink.add(stream, "INFO", buffer.decode("utf-8", "replace"))

    thread = threading.Thread(target=pump, name=f"capture-{stream}", daemon=True)
    thread.start()
    return thread


class _SinkHandler(logging.Handler):
    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.add("log", record.levelname, self.format(record))


@dataclass
class RunContext:
    """What a job function receives: ``context.run_id``, ``.tags``, ``.run_config``, ``.log``."""

    run_id: str
    job_name: str
    tags: dict[str, str]
    run_config: dict[str, Any]
    log: logging.Logger = field(repr=False)


def _make_logger(run: Run, sink: LogSink) -> logging.Logger:
    logger = logging.getLogger(f"dagd.run.{run.run_id}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = _SinkHandler(sink)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger


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


def execute(home: str, run_id: str) -> int:
    from dagd.instance.instance import Instance
    from dagd.workspace import CodeLocationTarget

    instance = Instance.load(home, create=False)
    runs = instance.storage.runs
    me = psutil.Process()
    run = runs.transition(
        run_id,
        RunStatus.STARTED,
        expected=(RunStatus.STARTING,),
        message=f"worker started (pid {me.pid})",
        worker_pid=me.pid,
        worker_started_at=me.create_time(),
    )
    if run is None:
        current = runs.require(run_id)
        if current.status == RunStatus.CANCELING:
            runs.transition(
                run_id, RunStatus.CANCELED, expected=(RunStatus.CANCELING,), message="canceled before start"
            )
        return 0

    canceled = threading.Event()

    def on_sigterm(_signum: int, _frame: Any) -> None:
        canceled.set()
        raise RunCanceled()

    signal.signal(signal.SIGTERM, on_sigterm)
    sink = LogSink(lambda lines: runs.append_logs(run_id, lines))
    sys.stdout.flush()
    sys.stderr.flush()
    pumps = [_capture_fd(1, "stdout", sink), _capture_fd(2, "stderr", sink)]
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    stop_heartbeat = threading.Event()

    def heartbeat() -> None:
        while not stop_heartbeat.wait(HEARTBEAT_SECONDS):
            try:
                runs.worker_heartbeat(run_id)
            except DagdError:
                pass

    threading.Thread(target=heartbeat, name="heartbeat", daemon=True).start()
    status, error = RunStatus.SUCCESS, None
    try:
        if not run.code_location:
            raise DagdError("run has no code location")
        definitions = _load_definitions(home, CodeLocationTarget.from_json(run.code_location), sink)
        job = definitions.job_named(run.job_name)
        if job is None:
            raise DagdError(f"job {run.job_name!r} no longer exists in {run.code_location}")
        context = RunContext(
            run.run_id, run.job_name, dict(run.tags), dict(run.run_config), _make_logger(run, sink)
        )
        job.fn(context)
        if canceled.is_set():
            status = RunStatus.CANCELED
    except RunCanceled:
        status, error = RunStatus.CANCELED, None
    except BaseException as exc:  # the job's failure is the run's result, whatever it raised
        if canceled.is_set():
            status = RunStatus.CANCELED
        else:
            status = RunStatus.FAILURE
            error = f"{type(exc).__name__}: {exc}"
            sink.add("stderr", "ERROR", traceback.format_exc().rstrip())
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop_heartbeat.set()
    sys.stdout.flush()
    sys.stderr.flush()
    # Close our ends of fds 1 and 2 so the pumps see EOF (children may still hold them).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    for pump in pumps:
        pump.join(timeout=1)
    sink.close()
    expected = (RunStatus.STARTED, RunStatus.CANCELING)
    if status == RunStatus.CANCELED:
        runs.transition(
            run_id, RunStatus.CANCELED, expected=(RunStatus.CANCELING, RunStatus.STARTED), message="canceled"
        )
    else:
        runs.transition(
            run_id, status, expected=expected, error=error, message="finished" if error is None else ""
        )
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dagd.runs.worker")
    parser.add_argument("--home", required=True)
    parser.add_argument("run_id")
    args = parser.parse_args(argv)
    # os._exit: the job's non-daemon threads must not keep a finished run's worker alive.
    os._exit(execute(args.home, args.run_id))


if __name__ == "__main__":
    main()
