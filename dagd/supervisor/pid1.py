"""PID 1 in a container: a minimal init in front of dagd's long-running commands.

A container started without ``--init`` (Kubernetes never adds one) runs its entrypoint as PID 1
of its own PID namespace. That process inherits two jobs no ordinary program does: every orphan
in the namespace becomes its child, and must be reaped or it stays a zombie (a run's
double-forked helper, a code server's subprocess whose parent died); and the kernel delivers it
no signal it has not installed a handler for.

The supervisor cannot reap "every child" itself: ``waitpid(-1)`` would also take the exit status
of its own daemons and code servers from under :mod:`subprocess`, and a daemon's exit code is how
the process table tells a crash from a clean exit. So, as tini and dumb-init do, when
``dagctl daemon run`` / ``dev`` / ``webserver`` / ``worker run`` finds itself PID 1 it
forks first (:func:`become_init_if_pid1`): the parent stays PID 1, forwards the stop signals to
the child and reaps every process that ends; the child goes on to be the supervisor, unchanged.
When the child exits, PID 1 exits with the child's code (128 + N for a signal N), and the kernel
ends whatever is left in the namespace.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

# What `docker stop`, Kubernetes, Ctrl-C in `docker run -it` and operators send.
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def become_init_if_pid1() -> None:
    """Return at once unless this process is PID 1. As PID 1: fork; the child returns (and runs
    the command), this process becomes the init and never returns."""
    if os.getpid() != 1:
        return
    # Blocked across the fork: a signal that arrives now is forwarded once the init's handlers
    # are in place, and never kills the child with the default action before its own are.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        return
    os._exit(_init(child))


def _init(child: int) -> int:
    """Forward signals to ``child`` and reap every process until ``child`` exits; its exit code."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    while True:
        try:
            pid, status = os.wait()  # any child: our own, or an orphan the kernel gave us
        except ChildProcessError:
            return 1  # cannot happen while the child lives; never spin
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


__all__ = ["FORWARDED", "become_init_if_pid1"]
