"""A pre-warmed fork server for run workers: the fast path of :class:`LocalProcessRunLauncher`.

Starting ``python -m dagd.runs.worker`` costs ~0.5 s of imports (SQLAlchemy, pydantic, psycopg)
before the job's first line. The fork server is exec'd once by the launcher, imports all of that,
and then forks one child per run; the child starts its own session (so terminate reaches its whole
group), opens its *own* database engine (nothing pooled crosses the fork) and runs the worker.

The server is single-threaded (forking a threaded process is unsafe) and speaks JSON lines
(:mod:`dagd.process_protocol`):

    launcher -> server   ForkRequest      {"run_id": "...", "attempt": N, "token": "...", "key": "..."}
    server -> launcher   ForkServerReady  {"ready": PID}
                         Forked           {"launched": "<key>", "pid": N}
                         ForkFailed       {"error": "<key>", "message": "..."}
                         WorkerExited     {"exited": N, "code": C}   (the queue can look again)

EOF on stdin means the launcher is gone: the server exits, and the workers keep running.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys

from dagd.process_protocol import (
    Forked,
    ForkFailed,
    ForkServerMessage,
    ForkServerReady,
    WorkerExited,
    decode_fork_request,
    encode_fork,
)


def _preload() -> None:
    """Import what every worker needs, so children start with it in memory."""
    import psutil  # noqa: F401
    import sqlalchemy  # noqa: F401
    import sqlalchemy.dialects.postgresql  # noqa: F401
    import sqlalchemy.dialects.sqlite  # noqa: F401
    import yaml  # noqa: F401

    import dagd.instance.config  # noqa: F401  (pydantic and the config models: a worker validates dagd.yaml)
    import dagd.instance.instance  # noqa: F401
    import dagd.runs.worker  # noqa: F401
    import dagd.storage.attempts  # noqa: F401
    import dagd.storage.engine  # noqa: F401
    import dagd.storage.runs  # noqa: F401
    import dagd.workspace  # noqa: F401

    try:
        import psycopg  # noqa: F401
    except ImportError:
        pass


def _child(home: str, run_id: str, attempt: int, token: str, wakeup_r: int, wakeup_w: int) -> None:
    """In the forked child: detach, reset what the server changed, run the worker."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    # As in any Python process: a write to a closed pipe raises BrokenPipeError. With SIG_DFL the
    # watcher died silently when its heartbeat renewed the lease of a job that had just exited,
    # and its run was lost instead of finished.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    os.close(wakeup_r)
    os.close(wakeup_w)
    from dagd.home import run_log_file

    log_file = run_log_file(home, run_id)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    crash_log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(crash_log, 1)
    os.dup2(crash_log, 2)
    os.close(devnull)
    os.close(crash_log)
    code = 1
    try:
        from dagd.runs.worker import execute

        code = execute(home, run_id, attempt, token)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _warm_storage(home: str) -> None:
    """Open the instance's storage once and close it again before any fork.

    What a worker's first storage call pays for is mostly one-time setup in this process's
    libraries (SQLAlchemy's dialect initialisation on first connect, statement compilation
    caches): ~30 ms per run when every child did it afresh. Done here, children inherit it warm.
    No connection crosses the fork: the engine is disposed (its pool closed) before serving.
    """
    try:
        from dagd.instance.instance import Instance

        instance = Instance.load(home, create=False)
        try:
            instance.storage.runs.get("")
        finally:
            instance.close()
    except Exception:  # a cold start is only slower: the worker reports real storage errors itself
        pass


def serve(home: str) -> None:
    _preload()
    _warm_storage(home)
    out = sys.stdout
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def send(message: ForkServerMessage) -> None:
        out.write(encode_fork(message) + "\n")
        out.flush()

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            send(WorkerExited(pid, os.waitstatus_to_exitcode(status)))

    stdin = sys.stdin.fileno()
    buffer = b""
    send(ForkServerReady(os.getpid()))
    while True:
        try:
            readable, _, _ = select.select([stdin, wakeup_r], [], [])
        except InterruptedError:
            continue
        if wakeup_r in readable:
            os.read(wakeup_r, 4096)
            reap()
        if stdin not in readable:
            continue
        chunk = os.read(stdin, 65536)
        if not chunk:
            return  # the launcher is gone; running workers carry on by themselves
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            request = decode_fork_request(line)
            if request is None:
                continue
            try:
                pid = os.fork()
            except OSError as exc:
                send(ForkFailed(request.key, f"fork failed: {exc}"))
                continue
            if pid == 0:
                _child(home, request.run_id, request.attempt, request.token, wakeup_r, wakeup_w)
            send(Forked(request.key, pid))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m dagd.runs.local.forkserver")
    parser.add_argument("--home", required=True)
    serve(parser.parse_args().home)


if __name__ == "__main__":
    main()
