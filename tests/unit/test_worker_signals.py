"""The run worker's own signal dispositions (the watcher process of an attempt)."""

from __future__ import annotations

import subprocess
import sys


def test_watcher_survives_writing_to_the_pipe_of_a_job_that_has_exited() -> None:
    """Regression: in fork-server children SIGPIPE has its default action (the fork server resets
    it), so the watcher's renewal write to a finished job's pipe killed the watcher silently and
    the run failed as WORKER_DIED. The watcher ignores SIGPIPE: the write fails with EPIPE."""
    code = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as in a fork-server child\n"
        "from dagd.runs import worker\n"
        "worker.ignore_sigpipe()\n"
        "r, w = os.pipe(); os.close(r)\n"
        "try:\n"
        "    os.write(w, b'renewal')\n"
        "except BrokenPipeError:\n"
        "    print('EPIPE')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "EPIPE", (result.returncode, result.stderr)
