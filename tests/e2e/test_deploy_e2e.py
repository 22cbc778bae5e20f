"""The supervisor as deployments run it (SPEC §9.2, §9.3, docs/deploy.md).

- under systemd: a real datagram socket as ``NOTIFY_SOCKET`` around a real ``dagctl daemon run``;
- as PID 1 of its own PID namespace (a container): orphans reaped, a clean stop on SIGTERM;
- the gRPC health a Kubernetes probe asks: overall ``""`` and the leader-only RunService.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import signal
import socket
import subprocess
import time
import uuid

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dagd.client.client import Client
from tests.helpers.procs import DAGCTL, DagdProcess, assert_no_leftovers, wait_for

FAST = """
daemons:
  heartbeat_interval_seconds: 0.5
  heartbeat_timeout_seconds: 10
  stop_grace_seconds: 2
"""
RUN_SERVICE = "dagd.api.v1.RunService"


class NotifyListener:
    """A systemd stand-in: an abstract Unix datagram socket that records what it is sent."""

    def __init__(self) -> None:
        self.name = f"@dagd-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name[1:].encode())  # abstract: nothing on disk to clean up
        self.messages: list[tuple[float, str]] = []  # (monotonic arrival, one KEY=VALUE)

    def receive(self, timeout: float) -> list[str]:
        """The fields of the next datagram, or [] if none came within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return []
        fields = data.decode().split("\n")
        now = time.monotonic()
        self.messages.extend((now, f) for f in fields)
        return fields

    def until(self, field: str, timeout: float) -> float:
        """Receive until ``field`` arrives; its arrival time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if field in self.receive(max(0.01, deadline - time.monotonic())):
                return self.messages[-1][0]
        raise AssertionError(f"no {field} within {timeout}s; got {[m for _, m in self.messages][-10:]}")

    def close(self) -> None:
        self.sock.close()


def health(address: str, service: str = "") -> str:
    with grpc.insecure_channel(address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)


@pytest.mark.timeout(120)
def test_systemd_notify_ready_after_first_heartbeats_watchdog_from_the_main_loop_then_stopping(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    dagd.write_config(FAST)
    listener = NotifyListener()
    # 4 s: pings due every 1.33 s (a third); systemd asks for one at least every 2 s (half).
    env = {"NOTIFY_SOCKET": listener.name, "WATCHDOG_USEC": "4000000"}
    try:
        dagd.start("-f", str(defs_file), command=("daemon", "run"), wait_healthy=False, env=env)
        listener.until("READY=1", 60)
        # READY=1 means every daemon has stored its first heartbeat: the API shows them all.
        daemons = dagd.status()["daemons"]
        assert {d["name"] for d in daemons} == {"scheduler", "run_queue", "sensor", "run_monitoring"}
        assert all(d["last_heartbeat_at"] for d in daemons), daemons
        # systemd's variables are ours alone: no daemon inherits them (and speaks for us).
        for d in daemons:
            assert "NOTIFY_SOCKET" not in psutil.Process(d["pid"]).environ()

        pings = [listener.until("WATCHDOG=1", 5) for _ in range(4)]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) <= 2.0, f"watchdog pings {gaps} apart: systemd wants one every 2 s at most"
        statuses = [m for _, m in listener.messages if m.startswith("STATUS=")]
        assert any("4/4 daemons healthy" in s for s in statuses), statuses

        # A stopped main loop sends nothing: under systemd the watchdog would fire and restart it.
        dagd.signal(signal.SIGSTOP)
        try:
            silent_from = time.monotonic()
            while time.monotonic() - silent_from < 4.5:  # over three ping intervals
                fields = listener.receive(0.5)
                assert "WATCHDOG=1" not in fields, "a watchdog ping while the supervisor was stopped"
        finally:
            dagd.signal(signal.SIGCONT)
        listener.until("WATCHDOG=1", 10)

        dagd.signal(signal.SIGTERM)
        listener.until("STOPPING=1", 20)
        assert dagd.wait_exit(30) == 0
        order = [m for _, m in listener.messages if m in ("READY=1", "WATCHDOG=1", "STOPPING=1")]
        assert order.count("READY=1") == 1 and order.count("STOPPING=1") == 1
        ready = order.index("READY=1")
        assert "WATCHDOG=1" in order[ready:] and order[-1] == "STOPPING=1", order
    finally:
        listener.close()


@pytest.mark.timeout(150)
def test_health_overall_while_the_loop_runs_run_service_only_on_the_leader(
    tmp_path: pathlib.Path, pg_url: str, defs_file: pathlib.Path
) -> None:
    """Kubernetes' probes (docs/deploy.md): liveness asks "" and readiness RunService. A standby is
    alive but not ready; it serves the API as a standby; SIGTERM while standing by is a clean
    stop (exit 0: it used to be an error, "stopped while standing by", exit 1); a standby takes over
    when the leader stops, and turns ready."""
    leader, standby, second = (DagdProcess(tmp_path / name) for name in ("a", "b", "c"))
    for proc in (leader, standby, second):
        proc.home.mkdir()
        proc.write_config(f"storage:\n  postgres:\n    url: '{pg_url}'\n{FAST}")
    standby_socket = f"unix:{standby.home / 'run' / 'dagd.sock'}"
    second_socket = f"unix:{second.home / 'run' / 'dagd.sock'}"
    try:
        leader.start("-f", str(defs_file), command=("daemon", "run"))
        leader_socket = f"unix:{leader.home / 'run' / 'dagd.sock'}"
        assert health(leader_socket) == "SERVING"
        assert health(leader_socket, RUN_SERVICE) == "SERVING"

        standby.start("-f", str(defs_file), command=("daemon", "run", "--standby"), wait_healthy=False)
        wait_for(lambda: "standing by" in standby.log(), 30, "the second supervisor to stand by")
        wait_for(lambda: health(standby_socket) == "SERVING", 10, "the standby's overall health")
        assert health(standby_socket, RUN_SERVICE) == "NOT_SERVING"
        with Client(standby_socket) as client:  # every supervisor serves the API (SPEC 9.2)
            status = client.daemon_status()
        assert status["role"] == "standby" and all(d["state"] == "REMOTE" for d in status["daemons"]), status
        home_env = {**os.environ, "DAGD_HOME": str(standby.home)}
        ready = subprocess.run(
            [*DAGCTL, "health", "--service", RUN_SERVICE],
            env=home_env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (ready.returncode, ready.stdout.strip()) == (1, "NOT_SERVING"), ready
        alive = subprocess.run(
            [*DAGCTL, "health", "--local"], env=home_env, capture_output=True, text=True, timeout=30
        )
        assert (alive.returncode, alive.stdout.strip()) == (0, "SERVING"), alive

        standby.signal(signal.SIGTERM)
        assert standby.wait_exit(30) == 0, standby.log()
        assert "stopped while standing by" in standby.log()

        second.start("-f", str(defs_file), command=("daemon", "run", "--standby"), wait_healthy=False)
        wait_for(lambda: health(second_socket) == "SERVING", 30, "the new standby's overall health")
        leader.stop()
        second.wait_healthy(60)
        assert health(second_socket, RUN_SERVICE) == "SERVING"
    finally:
        for proc in (leader, standby, second):
            proc.stop()
    for proc in (leader, standby, second):
        assert_no_leftovers(proc.home)


ORPHAN_DEFS = """
import subprocess

from dagd import Definitions, job

# At import (in each code server): a shell that starts a sleeper and exits at once. The sleeper is
# orphaned: the kernel hands it to PID 1 of the namespace, which must reap it when it ends.
subprocess.Popen(["sh", "-c", "sleep {marker} &"])


@job
def hello(context):
    context.log.info("hello")


defs = Definitions(jobs=[hello])
"""


def _namespace_init(unshare: psutil.Process) -> psutil.Process:
    children = unshare.children()
    assert len(children) == 1, children
    return children[0]


@pytest.mark.timeout(120)
def test_as_pid_1_of_its_namespace_the_supervisor_reaps_orphans_and_stops_cleanly_on_sigterm(
    tmp_path: pathlib.Path, home: pathlib.Path
) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (unshare --pid), as CI has")
    marker = f"2.{uuid.uuid4().int % 10**8:08d}"  # a sleep of ~2 s that no other process has
    defs = tmp_path / "orphan_defs.py"
    defs.write_text(ORPHAN_DEFS.replace("{marker}", marker))
    (home / "dagd.yaml").write_text(FAST)
    log = tmp_path / "supervisor.log"
    # --kill-child: if unshare dies (the test killed), the namespace's init and so all of it go too.
    command = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *DAGCTL, "daemon", "run"]
    with open(log, "w") as out:
        unshare = subprocess.Popen(
            [*command, "-f", str(defs)],
            env={**os.environ, "DAGD_HOME": str(home), "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        init = wait_for(lambda: _namespace_init(psutil.Process(unshare.pid)), 10, "the namespace's init")
        # The supervisor itself runs as PID 1's child (dagd.supervisor.pid1).
        socket_address = f"unix:{home / 'run' / 'dagd.sock'}"

        def all_healthy() -> bool:
            with Client(socket_address) as client:
                client.timeout = 5
                daemons = client.daemon_status()["daemons"]
            return all(d["healthy"] and d["last_heartbeat_at"] for d in daemons)

        wait_for(all_healthy, 60, f"every daemon healthy:\n{log.read_text()[-3000:]}", interval=0.2)

        def sleepers() -> list[psutil.Process]:
            return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]

        orphans = wait_for(sleepers, 30, "the orphaned sleeper")
        assert all(p.ppid() == init.pid for p in orphans), (
            "the sleeper was not handed to the namespace's PID 1"
        )

        # A zombie is still "running" to psutil: only a reaped process is gone.
        wait_for(lambda: not any(p.is_running() for p in orphans), 20, "PID 1 to reap the orphans")

        init.send_signal(signal.SIGTERM)
        assert unshare.wait(timeout=30) == 0, log.read_text()[-3000:]
        text = log.read_text()
        assert "supervisor stopped" in text, text[-3000:]
    finally:
        if unshare.poll() is None:
            unshare.kill()  # --kill-child takes the namespace with it
            unshare.wait(timeout=10)
    assert_no_leftovers(home)


@pytest.mark.timeout(60)
def test_health_local_probes_the_web_ui_of_a_home_without_a_supervisor(home: pathlib.Path) -> None:
    """The image's HEALTHCHECK (`dagctl health --local`) in a web UI container: its /healthz."""
    env = {**os.environ, "DAGD_HOME": str(home), "DAGD_ADDRESS": "127.0.0.1:9"}  # --local ignores it
    nothing = subprocess.run(
        [*DAGCTL, "health", "--local"], env=env, capture_output=True, text=True, timeout=30
    )
    assert nothing.returncode == 4 and "no answer" in nothing.stderr, nothing
    web = subprocess.Popen(
        [*DAGCTL, "webserver", "--port", "0"], env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: (home / "webserver.json").exists(), 30, "the web UI to publish its URL")
        probe = subprocess.run(
            [*DAGCTL, "health", "--local"], env=env, capture_output=True, text=True, timeout=30
        )
        assert (probe.returncode, probe.stdout.strip()) == (0, "SERVING"), probe
    finally:
        web.terminate()
        web.wait(timeout=20)
    assert_no_leftovers(home)


@pytest.mark.timeout(120)
def test_systemd_notify_from_the_worker_host_ready_watchdog_from_the_consumer_loop_then_stopping(
    pg_url: str, tmp_path: pathlib.Path
) -> None:
    """``dagctl worker run`` under a NOTIFY_SOCKET: READY=1 once consuming, WATCHDOG=1 from
    Celery's consumer event loop (none while the host is SIGSTOPped), STOPPING=1 on SIGTERM."""
    from kombu import Connection

    broker = os.environ.get("DAGD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
    queue = f"dagd-test-{uuid.uuid4().hex[:10]}"
    home = tmp_path / "worker"
    home.mkdir()
    (home / "dagd.yaml").write_text(
        f"storage:\n  postgres: {{url: '{pg_url}'}}\n"
        "run_launcher:\n  module: dagd.run_launcher\n  class: CeleryRunLauncher\n"
        f"  config: {{broker_url: '{broker}', queue: {queue}}}\n"
    )
    listener = NotifyListener()
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ, "DAGD_HOME": str(home), "PYTHONUNBUFFERED": "1",
        "NOTIFY_SOCKET": listener.name, "WATCHDOG_USEC": "4000000",
    }  # fmt: skip
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*DAGCTL, "worker", "run", "--concurrency", "2"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        try:
            listener.until("READY=1", 60)
        except AssertionError:
            raise AssertionError(log_path.read_text(errors="replace")[-3000:]) from None
        pings = [listener.until("WATCHDOG=1", 5) for _ in range(4)]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) <= 2.0, f"watchdog pings {gaps} apart: systemd wants one every 2 s at most"
        statuses = [m for _, m in listener.messages if m.startswith("STATUS=")]
        assert any(queue in s and "0/2 slots in use" in s for s in statuses), statuses

        # A stopped host sends nothing: under systemd the watchdog would fire and restart it.
        proc.send_signal(signal.SIGSTOP)
        try:
            silent_from = time.monotonic()
            while time.monotonic() - silent_from < 4.5:  # over three ping intervals
                fields = listener.receive(0.5)
                assert "WATCHDOG=1" not in fields, "a watchdog ping while the worker host was stopped"
        finally:
            proc.send_signal(signal.SIGCONT)
        listener.until("WATCHDOG=1", 10)

        proc.send_signal(signal.SIGTERM)
        listener.until("STOPPING=1", 20)
        assert proc.wait(timeout=30) == 0, log_path.read_text(errors="replace")[-3000:]
        order = [m for _, m in listener.messages if m in ("READY=1", "WATCHDOG=1", "STOPPING=1")]
        assert order.count("READY=1") == 1 and order.count("STOPPING=1") == 1
        ready = order.index("READY=1")
        assert "WATCHDOG=1" in order[ready:] and order[-1] == "STOPPING=1", order
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        listener.close()
        with Connection(broker, connect_timeout=5) as connection:
            connection.default_channel.queue_delete(queue)
        assert_no_leftovers(home)
