"""The multi-host test bed (helpers/netns.py) leaves nothing behind, even when its test process
is SIGKILLed; stale namespaces of dead test processes are swept."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys

import pytest
from helpers import netns
from helpers.procs import wait_for

TESTS = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.timeout(60)
def test_namespaces_of_a_sigkilled_test_process_are_deleted_by_its_guard() -> None:
    code = (
        "import json, sys, time\n"
        "from helpers import netns\n"
        "with netns.multi_host() as bed:\n"
        "    hosts = [bed.host('x'), bed.host('y')]\n"
        "    print(json.dumps([h.netns for h in hosts]), flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=TESTS, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        made = json.loads(child.stdout.readline())
        assert len(made) == 2 and set(made) <= set(netns.namespaces())
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        wait_for(lambda: not set(made) & set(netns.namespaces()), 20, "the guard to delete the namespaces")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for name in netns.ours(child.pid):
            netns.delete_namespace(name)


@pytest.mark.timeout(30)
def test_stale_namespaces_of_dead_test_processes_are_swept() -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    name = f"{netns.PREFIX}{int(dead.stdout)}x0"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        assert name in netns.sweep_stale()
        assert name not in netns.namespaces()
    finally:
        netns.delete_namespace(name)


@pytest.mark.timeout(60)
def test_two_beds_open_at_once_in_one_test_process_get_distinct_hosts() -> None:
    """Regression: hosts were numbered per bed, so a second bed (or one opened while the last one's
    veth pair was still being destroyed) reused the first one's namespace and link names and
    ``ip link add`` failed."""
    with netns.multi_host() as first, netns.multi_host() as second:
        a = first.host("a")
        b = second.host("b")
        assert a.netns != b.netns and a.veth_here != b.veth_here
        assert {a.netns, b.netns} <= set(netns.namespaces())
    assert not {a.netns, b.netns} & set(netns.namespaces())
