"""The watcher of one attempt on a worker host: ``python -m dagd.runs.celery.child --parent PID ...``.

:mod:`dagd.runs.worker` with a parent-death signal first: if the worker host dies (SIGKILL, a
crash), its watchers die with it, their jobs kill themselves when the watcher's lease pipe
closes, and the attempt goes silent, so run monitoring resumes or fails it after the heartbeat
timeout. The watcher runs in a session of its own, so signals meant for the host (Ctrl-C, the
host's SIGTERM) never reach the jobs directly: the host drains instead.
"""

from __future__ import annotations

import os
import signal
import sys


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the host died before the signal was armed
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "--parent":
        print(
            "usage: python -m dagd.runs.celery.child --parent PID <dagd.runs.worker arguments>",
            file=sys.stderr,
        )
        sys.exit(2)
    _die_with_parent(int(args[1]))
    from dagd.runs.worker import main as worker_main

    worker_main(args[2:])


if __name__ == "__main__":
    main()
