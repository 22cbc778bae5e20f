"""sd_notify (dagd/supervisor/sdnotify.py) over real datagram sockets, with a fake clock for the
watchdog's pace; the overall health's tie to the main loop (LoopHealth), with a fake clock."""

from __future__ import annotations

import os
import pathlib
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from grpc_health.v1 import health_pb2

from dagd.supervisor.sdnotify import Notifier, socket_address, watchdog_seconds
from dagd.supervisor.server import LOOP_STALL_SECONDS, OVERALL, RUN_SERVICE, LoopHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"@dagd-unit-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name[1:].encode())
    sock.settimeout(2)
    yield name, sock
    sock.close()


def drain(sock: socket.socket) -> list[str]:
    sock.settimeout(0.05)
    out = []
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except TimeoutError:
        return out


def test_abstract_names_and_paths() -> None:
    assert socket_address("@name") == b"\0name"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    notifier.ready("x")
    notifier.watchdog()
    notifier.stopping()
    assert notifier.send("READY=1") is False


def test_ready_once_status_only_when_changed_stopping(abstract_socket: tuple[str, socket.socket]) -> None:
    name, sock = abstract_socket
    notifier = Notifier(name)
    notifier.ready("all\nwell")
    assert sock.recv(4096) == b"READY=1\nSTATUS=all well"
    notifier.ready("all well")  # READY is sent once; the same status is not sent again
    notifier.status("all well")
    notifier.status("one daemon unhealthy")
    notifier.stopping()
    assert drain(sock) == ["STATUS=one daemon unhealthy", "STOPPING=1"]
    notifier.close()


def test_a_path_socket_works_too(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        Notifier(str(path)).ready()
        sock.settimeout(2)
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_watchdog_pings_every_third_of_the_timeout(abstract_socket: tuple[str, socket.socket]) -> None:
    name, sock = abstract_socket
    clock = Clock()
    notifier = Notifier(name, watchdog_timeout=3.0, clock=clock)
    sent = []
    for _ in range(40):  # 4 s of loop passes, 0.1 s apart
        notifier.watchdog()
        sent += drain(sock)
        clock.now += 0.1
    # At 0, 1, 2, 3 s: never more than half the timeout apart.
    assert sent == ["WATCHDOG=1"] * 4


def test_watchdog_variables() -> None:
    pid = os.getpid()
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000"}, pid) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}, pid) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid + 1)}, pid) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "nonsense"}, pid) is None
    assert watchdog_seconds({}, pid) is None


def test_from_environment_takes_the_variables_away_from_children() -> None:
    environ = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000", "PATH": "/bin"}
    notifier = Notifier.from_environment(environ)
    assert notifier.address == "@x" and notifier.watchdog_timeout == 2.0
    assert environ == {"PATH": "/bin"}


def test_a_vanished_systemd_is_not_fatal(tmp_path: pathlib.Path) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert notifier.send("READY=1") is False
    notifier.ready()  # no exception, logged once


class Context:
    def set_code(self, code: object) -> None:
        self.code = code


def check(health: LoopHealth, service: str) -> int:
    return health.Check(health_pb2.HealthCheckRequest(service=service), Context()).status


def test_overall_health_follows_the_main_loop() -> None:
    clock = Clock()
    health = LoopHealth(clock=clock)
    health.set(OVERALL, health_pb2.HealthCheckResponse.SERVING)
    health.set(RUN_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert check(health, OVERALL) == serving  # starting: no pass yet, the set status counts
    health.loop_passed()
    clock.now += LOOP_STALL_SECONDS - 0.1
    assert check(health, OVERALL) == serving
    clock.now += 0.2  # the loop has been silent too long: wedged
    assert check(health, OVERALL) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert check(health, RUN_SERVICE) == serving  # readiness is the role's, set by the supervisor
    health.loop_passed()
    assert check(health, OVERALL) == serving
    health.set(OVERALL, health_pb2.HealthCheckResponse.NOT_SERVING)  # stopping
    assert check(health, OVERALL) == health_pb2.HealthCheckResponse.NOT_SERVING


def test_the_main_loop_stops_vouching_when_the_process_table_stalls(
    abstract_socket: tuple[str, socket.socket], tmp_path: pathlib.Path
) -> None:
    """A pinger that only proves its own thread runs would keep systemd happy while the process
    table (which restarts hung daemons) is wedged: the main loop pings only while it steps."""
    from dagd.instance.instance import Instance
    from dagd.supervisor.app import Supervisor
    from dagd.supervisor.server import Servers

    name, sock = abstract_socket
    clock = Clock()
    instance = Instance.load(tmp_path / "home")
    supervisor = Supervisor(instance, [], notifier=Notifier(name, watchdog_timeout=3.0, clock=clock))
    supervisor.servers = Servers(health=LoopHealth(clock=clock))
    try:
        supervisor.leading_since = time.monotonic()
        supervisor.table.last_step_at = time.monotonic()
        supervisor._pass()
        assert "WATCHDOG=1" in drain(sock)
        assert check(supervisor.servers.health, OVERALL) == health_pb2.HealthCheckResponse.SERVING

        supervisor.table.last_step_at = time.monotonic() - LOOP_STALL_SECONDS - 1
        clock.now += LOOP_STALL_SECONDS + 1  # pings due, the loop passes, the table does not step
        supervisor._pass()
        assert "WATCHDOG=1" not in drain(sock)
        assert check(supervisor.servers.health, OVERALL) == health_pb2.HealthCheckResponse.NOT_SERVING

        supervisor.table.last_step_at = time.monotonic()
        supervisor._pass()
        assert "WATCHDOG=1" in drain(sock)
        assert check(supervisor.servers.health, OVERALL) == health_pb2.HealthCheckResponse.SERVING
    finally:
        instance.close()
