"""dagd.processes: titles, and telling dagd's processes apart by title or command line."""

from __future__ import annotations

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
