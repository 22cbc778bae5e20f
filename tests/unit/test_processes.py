"""dagd.processes: titles, and telling dagd's processes apart by title or command line."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from dagd.processes import daemon_name, daemon_title, role_of, run_title


def test_titles() -> None:
    assert daemon_title("run_queue") == "dagd: run_queue"
    assert run_title("abc", "etl") == "dagd run abc etl"
    assert run_title("abc") == "dagd run abc"


def test_role_of_a_titled_process_and_of_one_before_its_title() -> None:
    forkserver = ["/usr/bin/python3", "-m", "dagd.runs.local.forkserver", "--home", "/h"]
    assert role_of(["dagd run abc etl", "", ""]) == "worker"
    assert role_of(["python", "-m", "dagd.runs.worker", "--home", "/h", "abc"]) == "worker"
    assert role_of(forkserver, ["dagd: run_queue"]) == "fork server"
    assert role_of(forkserver, forkserver) == "worker"  # forked, title not set yet
    assert role_of(["dagd: sensor", ""]) == "daemon"
    assert role_of(["python", "-m", "dagd.daemons", "sensor", "--home", "/h"]) == "daemon"
    assert role_of(["python", "-m", "dagd.codeserver", "--home", "/h"]) == "code server"
    assert role_of(["sleep", "10"]) == "process"


def test_daemon_name_from_title_or_command_line() -> None:
    assert daemon_name(["dagd: scheduler", "", ""]) == "scheduler"
    assert daemon_name(["python", "-m", "dagd.daemons", "scheduler", "--home", "/h"]) == "scheduler"
    assert daemon_name(["dagd run abc etl"]) is None
    assert daemon_name(["python", "-m", "dagd.daemons"]) is None


def test_a_title_set_by_celery_in_the_worker_host_leaves_the_environment_readable(
    tmp_path: pathlib.Path,
) -> None:
    """Regression: with setproctitle installed, Celery retitles the worker host at start; without
    SPT_NOENV set before that, /proc/PID/environ reads as empty and DAGD_HOME is gone with it."""
    code = (
        "import dagd.runs.celery.host, celery.platforms, os;"
        "celery.platforms.set_process_title('celeryd', info='-active-' * 20);"
        "print(open(f'/proc/{os.getpid()}/environ', 'rb').read().count(b'DAGD_HOME='))"
    )
    env = {**os.environ, "DAGD_HOME": str(tmp_path)}
    env.pop("SPT_NOENV", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
