"""Runs on a worker fleet (issue #15, SPEC §9.1): the Celery launcher end to end.

A real supervisor (``dagctl daemon run``) and real worker hosts (``dagctl worker run``, each with
its own home) share one PostgreSQL schema and a real broker, RabbitMQ and Redis in turn. Each
fleet uses a queue name of its own (the brokers are shared by tests running in parallel) and
deletes it at the end. The supervisor publishes every message twice (``DAGD_FAULT_PUBLISH_TWICE``),
so every test here also shows that a duplicate delivery runs nothing twice.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import sqlalchemy as sa
from conftest import postgres_base_url
from helpers.procs import DAGCTL, DagdProcess, assert_no_leftovers, dagctl, wait_for
from helpers.tcp_proxy import proxy_to

from dagd.client.client import Client
from dagd.runs.celery.watchdog import FAULT_CONSUMER_STALL as FAULT_STALL

DEFS = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "attempt_defs.py"
TIMEOUT = 4.0  # worker_heartbeat_timeout_seconds
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
BROKERS = {
    "rabbitmq": os.environ.get("DAGD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    "redis": os.environ.get("DAGD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
}


class Fleet:
    """One supervisor and its worker hosts on one broker queue and one PostgreSQL schema."""

    def __init__(self, root: pathlib.Path, broker_url: str, pg_url: str, coordinator: str = "") -> None:
        self.root = root
        self.coordinator = coordinator or "{max_concurrent_runs: 20, dequeue_interval_seconds: 0.5}"
        self.broker_url = broker_url
        self.pg_url = pg_url
        self.queue = f"dagd-test-{uuid.uuid4().hex[:10]}"
        self.supervisor = DagdProcess(self._home("supervisor"))
        self.workers: dict[int, tuple[subprocess.Popen[bytes], pathlib.Path]] = {}
        self._client: Client | None = None

    def config(self, home: pathlib.Path) -> str:
        return f"""
storage:
  postgres: {{url: '{self.pg_url}'}}
run_launcher:
  module: dagd.run_launcher
  class: CeleryRunLauncher
  config: {{broker_url: '{self.broker_url}', queue: {self.queue}, relay_after_seconds: 1}}
run_coordinator:
  module: dagd.run_coordinator
  class: QueuedRunCoordinator
  config: {self.coordinator}
run_monitoring:
  worker_heartbeat_timeout_seconds: {TIMEOUT}
  max_resume_run_attempts: 1
  poll_interval_seconds: 0.5
grpc: {{socket: '{home}/s.sock'}}
"""

    def _home(self, name: str) -> pathlib.Path:
        home = self.root / name
        home.mkdir(parents=True)
        (home / "dagd.yaml").write_text(self.config(home))
        return home

    def start(self, env: dict[str, str] | None = None) -> None:
        self.supervisor.start(
            "-f", str(DEFS), command=("daemon", "run"), env={"DAGD_FAULT_PUBLISH_TWICE": "1", **(env or {})}
        )

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client.for_home(self.supervisor.home)
        return self._client

    def start_worker(
        self,
        concurrency: int = 2,
        queues: list[str] | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> int:
        home = self._home(f"worker-{uuid.uuid4().hex[:6]}")
        log = open(home.parent / f"{home.name}.log", "ab")
        options = [arg for queue in queues or [] for arg in ("--queue", queue)]
        proc = subprocess.Popen(
            [*DAGCTL, "worker", "run", "--concurrency", str(concurrency), *options, *args],
            env={**os.environ, "DAGD_HOME": str(home), "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        self.workers[proc.pid] = (proc, home)
        wait_for(lambda: proc.pid in self.registered(), 30, f"worker host {proc.pid} to register")
        return proc.pid

    def worker_log(self, pid: int) -> str:
        home = self.workers[pid][1]
        return (home.parent / f"{home.name}.log").read_text(errors="replace")

    def registered(self) -> dict[int, dict[str, Any]]:
        """Worker hosts as `dagctl workers status --json` lists them, by pid."""
        result = dagctl(self.supervisor.home, "workers", "status", "--json")
        assert result.code in (0, 3), result.stderr
        return {int(w["name"].rsplit(":", 1)[1]): w for w in result.json()["workers"]}

    def submit(self, job: str, config: dict[str, Any], tags: dict[str, str] | None = None) -> str:
        return str(self.client.submit(job, run_config=config, tags=tags)["run_id"])

    def get(self, run_id: str) -> dict[str, Any]:
        run, events = self.client.get_run(run_id)
        return {**run, "events": events}

    def started(self, run_id: str, attempt: int = 1, timeout: float = 30) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            run = self.get(run_id)
            return run if run["status"] == "STARTED" and run["attempt"] == attempt else None

        return wait_for(check, timeout, f"run {run_id} STARTED as attempt {attempt}")

    def finished(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(
            lambda: (r := self.get(run_id))["status"] in FINISHED and r, timeout, f"run {run_id} to end"
        )

    def stop_worker(self, pid: int) -> None:
        proc, _ = self.workers.pop(pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def close(self) -> None:
        for pid in list(self.workers):
            self.stop_worker(pid)
        if self._client is not None:
            self._client.close()
        self.supervisor.stop()
        for home in [self.supervisor.home, *(p for p in self.root.iterdir() if p.is_dir())]:
            assert_no_leftovers(home)
        _delete_queue(self.broker_url, self.queue)


def _delete_queue(broker_url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(broker_url, connect_timeout=5) as connection:
        connection.default_channel.queue_delete(queue)


@pytest.fixture(scope="module", params=sorted(BROKERS))
def fleet(
    request: pytest.FixtureRequest, pg_engine: sa.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    schema = f"dagd_t_{uuid.uuid4().hex[:12]}"
    with pg_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    base = postgres_base_url()
    pg_url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    fleet = Fleet(tmp_path_factory.mktemp(f"fleet-{request.param}"), BROKERS[request.param], pg_url)
    try:
        fleet.start()
        fleet.start_worker()
        yield fleet
    finally:
        try:
            fleet.close()
        finally:
            with pg_engine.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("broker", sorted(BROKERS))
def test_a_broker_outage_loses_and_doubles_nothing(broker: str, pg_url: str, tmp_path: pathlib.Path) -> None:
    """Through a TCP proxy the test controls (the machine's broker is shared by parallel tests):
    a running run finishes during the outage, a run submitted during it is stored and runs once
    after the broker is back."""
    from urllib.parse import urlsplit

    real = urlsplit(BROKERS[broker])
    with proxy_to(real.hostname or "127.0.0.1", real.port or 0) as proxy:
        url = real._replace(
            netloc=f"{real.netloc.rpartition('@')[0]}@127.0.0.1:{proxy.port}".lstrip("@")
        ).geturl()
        fleet = Fleet(tmp_path / "fleet", url, pg_url)
        down = False
        try:
            fleet.start()
            fleet.start_worker()
            counter = tmp_path / "starts.txt"
            running = fleet.submit("ticker", {"seconds": 3})
            fleet.started(running)

            proxy.outage()
            down = True
            waiting = fleet.submit("ticker", {"seconds": 0.2, "file": str(counter)})
            assert fleet.finished(running)["status"] == "SUCCESS"
            assert fleet.get(waiting)["status"] in ("QUEUED", "STARTING")
            # Publishing gives up quickly and the relay retries: the run queue says it is
            # degraded, and no daemon hangs on the broker or is unhealthy.
            wait_for(lambda: _run_queue(fleet)["detail"] == "degraded: broker unreachable", 20, "degraded")
            daemons = fleet.supervisor.status()["daemons"]
            assert [d["name"] for d in daemons if not d["healthy"]] == [], daemons
            assert dagctl(fleet.supervisor.home, "daemons", "status").code == 0
            proxy.restore()
            down = False
            wait_for(lambda: not _run_queue(fleet)["degraded"], 30, "the run queue to recover")

            run = fleet.finished(waiting, timeout=60)
        finally:
            if down:
                proxy.restore()
            fleet.close()
    assert run["status"] == "SUCCESS", run
    assert [a["state"] for a in run["attempts"]] == ["DONE"], run["attempts"]
    assert len(counter.read_text().splitlines()) == 1, counter.read_text()


def _run_queue(fleet: Fleet) -> dict[str, Any]:
    return next(d for d in fleet.supervisor.status()["daemons"] if d["name"] == "run_queue")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("broker", sorted(BROKERS))
def test_a_run_queue_killed_between_commit_and_publish_dispatches_the_run_once(
    broker: str, pg_url: str, tmp_path: pathlib.Path
) -> None:
    """The inert-unless-set hook SIGKILLs the run queue right after its dispatch transaction
    committed, before anything is published: the orphaned attempt is superseded and published."""
    fleet = Fleet(tmp_path / "fleet", BROKERS[broker], pg_url)
    counter = tmp_path / "starts.txt"
    marker = tmp_path / "killed"
    try:
        fleet.start(env={"DAGD_FAULT_KILL_AFTER_CLAIM": str(marker)})
        fleet.start_worker()
        run_id = fleet.submit("ticker", {"seconds": 0.2, "file": str(counter)})
        run = fleet.finished(run_id, timeout=60)
    finally:
        fleet.close()
    assert marker.exists(), "the fault hook never fired"
    assert run["status"] == "SUCCESS", run
    assert [a["state"] for a in run["attempts"]] == ["ABANDONED", "DONE"], run["attempts"]
    assert len(counter.read_text().splitlines()) == 1, counter.read_text()


def _tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants (a watcher and its job; a host and everything it started)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _all_gone(procs: list[psutil.Process]) -> bool:
    def gone(p: psutil.Process) -> bool:
        try:
            return p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(gone(p) for p in procs)


@pytest.mark.timeout(120)
def test_a_run_runs_once_on_a_worker_host_though_its_message_was_published_twice(
    fleet: Fleet, tmp_path: pathlib.Path
) -> None:
    counter = tmp_path / "starts.txt"
    run_id = fleet.submit("ticker", {"seconds": 0.3, "file": str(counter)})

    run = fleet.finished(run_id)

    assert run["status"] == "SUCCESS", run
    assert [a["state"] for a in run["attempts"]] == ["DONE"], run["attempts"]
    assert run["attempts"][0]["queue"] == fleet.queue
    assert len(counter.read_text().splitlines()) == 1, counter.read_text()
    assert sum(1 for e in run["events"] if e["status"] == "STARTED") == 1, run["events"]
    logs = [line["message"] for line in fleet.client.read_logs(run_id)[0]]
    assert any(m.startswith("attempt 1 job pid") for m in logs), logs

    def duplicate_refused() -> bool:
        text = "".join(fleet.worker_log(pid) for pid in fleet.workers)
        runs_log = next(iter(fleet.workers.values()))[1] / "logs" / "runs" / f"{run_id}.log"
        refused = runs_log.exists() and "not claimed" in runs_log.read_text()
        return refused or f"run {run_id} attempt 1: duplicate or stale message ignored" in text

    wait_for(duplicate_refused, 10, "the second copy of the message to be refused and logged")


@pytest.mark.timeout(120)
def test_workers_status_lists_the_host_with_its_slots(fleet: Fleet) -> None:
    result = dagctl(fleet.supervisor.home, "workers", "status", "--json")

    assert result.code == 0, result.stderr
    (host,) = [w for w in result.json()["workers"] if int(w["name"].rsplit(":", 1)[1]) in fleet.workers]
    assert host["queues"] == [fleet.queue] and host["slots"] == 2 and host["healthy"] is True, host
    assert set(host) >= {"name", "host", "queues", "slots", "in_use", "last_heartbeat_at", "healthy"}


@pytest.mark.timeout(120)
def test_workers_status_reads_from_the_supervisor_not_the_database(
    fleet: Fleet, tmp_path: pathlib.Path
) -> None:
    """A home of nothing but the supervisor's address (no dagd.yaml, no storage) lists the fleet."""
    elsewhere = tmp_path / "client-home"
    elsewhere.mkdir()
    address = f"unix:{fleet.supervisor.home}/s.sock"

    result = dagctl(elsewhere, "workers", "status", "--json", env={"DAGD_ADDRESS": address})

    assert result.code == 0, result.stderr
    names = sorted(w["name"] for w in result.json()["workers"])
    assert names == sorted(w["name"] for w in fleet.registered().values()), names
    assert list(elsewhere.iterdir()) == []  # no database was created or read here


@pytest.mark.timeout(120)
def test_the_queue_tag_routes_a_run_and_runs_why_says_when_it_waits_for_a_worker_slot(fleet: Fleet) -> None:
    other = f"{fleet.queue}-other"
    run_id = fleet.submit("ticker", {"seconds": 0.2}, tags={"dagd/queue": other})
    why = wait_for(
        lambda: "worker slot" in (e := fleet.client.explain_run(run_id))["summary"] and e, 15, "runs why"
    )
    assert other in why["summary"], why
    assert fleet.get(run_id)["status"] == "QUEUED"  # no host consumes that queue: nothing dispatched

    host = fleet.start_worker(concurrency=1, queues=[other])
    try:
        run = fleet.finished(run_id)
        assert run["status"] == "SUCCESS", run
        assert run["attempts"][0]["queue"] == other
        assert f"run {run_id} attempt 1: watcher pid" in fleet.worker_log(host)  # the other-queue host ran it
    finally:
        fleet.stop_worker(host)
        _delete_queue(fleet.broker_url, other)


@pytest.mark.timeout(120)
def test_terminate_reaches_the_remote_worker_through_the_database(fleet: Fleet) -> None:
    run_id = fleet.submit("ticker", {"seconds": 60})
    watcher = fleet.started(run_id)["attempts"][0]["pid"]
    group = wait_for(lambda: [] if len(t := _tree(watcher)) < 2 else t, 10, "the watcher and its job")

    asked = time.monotonic()
    fleet.client.terminate(run_id)
    run = fleet.finished(run_id, timeout=20)
    took = time.monotonic() - asked

    assert run["status"] == "CANCELED", run
    # The watcher sees CANCELING in a heartbeat (every TIMEOUT/4), then SIGTERM (grace 5 s).
    assert took <= TIMEOUT / 4 + 5 + 2, f"canceled {took:.1f}s after the request"
    wait_for(lambda: _all_gone(group), 10, "the run's watcher and job to be gone")


def _host_of(fleet: Fleet, watcher: int) -> int:
    """The worker host whose tree holds ``watcher`` (forked by its fork server, or spawned)."""
    for pid in fleet.workers:
        if watcher in {p.pid for p in _tree(pid)}:
            return pid
    raise AssertionError(f"watcher {watcher} belongs to no worker host of {list(fleet.workers)}")


@pytest.mark.timeout(120)
def test_a_forked_watcher_ignores_sigpipe_so_a_write_to_its_ended_job_cannot_kill_it(fleet: Fleet) -> None:
    """Regression: the fork server's children had SIGPIPE at SIG_DFL; a heartbeat renewing the
    lease pipe of a job that had just exited killed the watcher silently, and its run was LOST."""
    run_id = fleet.submit("ticker", {"seconds": 60})
    watcher = fleet.started(run_id)["attempts"][0]["pid"]
    try:
        status = pathlib.Path(f"/proc/{watcher}/status").read_text()
        ignored = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigIgn:")), 16)
        assert ignored & (1 << (signal.SIGPIPE - 1)), f"SigIgn {ignored:x}: SIGPIPE not ignored"
    finally:
        fleet.client.terminate(run_id)
        fleet.finished(run_id, timeout=20)


@pytest.mark.timeout(150)
def test_a_killed_worker_host_s_run_is_resumed_on_another_host(fleet: Fleet, tmp_path: pathlib.Path) -> None:
    counter = tmp_path / "starts.txt"
    fleet.start_worker()  # a second host, to resume on
    run_id = fleet.submit("resumable_ticker", {"seconds": 4, "file": str(counter)})
    first = fleet.started(run_id)["attempts"][0]
    wait_for(lambda: counter.exists(), 10, "attempt 1's job to start")
    victim = _host_of(fleet, first["pid"])

    # The host is lost with everything it started (a machine gone): its fork server, the
    # watcher, the job.
    tree = _tree(victim)
    for proc in tree:
        proc.kill()
    fleet.workers.pop(victim)[0].wait(timeout=10)
    killed_at = time.monotonic()
    wait_for(lambda: _all_gone(tree), 10, "the killed host's processes to be gone")
    resumed = fleet.started(run_id, 2, timeout=TIMEOUT + 15)
    took = time.monotonic() - killed_at

    assert took <= TIMEOUT + 10, f"resumed {took:.1f}s after the kill"
    assert _host_of(fleet, resumed["attempts"][1]["pid"]) != victim
    run = fleet.finished(run_id)
    assert run["status"] == "SUCCESS", run
    assert [a["state"] for a in run["attempts"]] == ["LOST", "DONE"], run["attempts"]
    assert len(counter.read_text().splitlines()) == 2, counter.read_text()  # once per attempt
    wait_for(lambda: not fleet.registered()[victim]["healthy"], 15, "the killed host to be unhealthy")
    assert dagctl(fleet.supervisor.home, "workers", "status").code == 3


@pytest.mark.timeout(120)
def test_sigterm_drains_a_worker_host_its_run_finishes(fleet: Fleet) -> None:
    host = fleet.start_worker(concurrency=1)
    for pid in [p for p in fleet.workers if p != host]:
        fleet.stop_worker(pid)  # only `host` takes work now
    run_id = fleet.submit("ticker", {"seconds": 2})
    fleet.started(run_id)

    proc = fleet.workers[host][0]
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: not fleet.registered().get(host, {}).get("accepting", False), 10, "host to drain")
    run = fleet.finished(run_id)

    assert run["status"] == "SUCCESS", run
    assert proc.wait(timeout=20) == 0
    fleet.workers.pop(host)
    assert host not in fleet.registered()
    fleet.start_worker()  # later tests need one


@pytest.mark.timeout(90)
def test_worker_host_stopped_while_starting_unregisters(fleet: Fleet) -> None:
    """Regression: SIGTERM between the host's registration and Celery installing its handlers
    killed it without unregistering, so its slots counted as free until its heartbeat went stale
    and the run queue dispatched into them (4 runs in progress on 2 slots)."""
    for _ in range(3):
        pid = fleet.start_worker(concurrency=1)  # returns as soon as it is registered
        fleet.stop_worker(pid)
        assert pid not in fleet.registered(), f"worker host {pid} stopped but still registered"
    fleet.start_worker()  # later tests need one


def _only_worker(fleet: Fleet, **kwargs: Any) -> int:
    """Stop every host, empty the queue (earlier tests' duplicates, which the fault hooks would
    take for their first message), start one with ``kwargs``: it alone takes the runs."""
    from kombu import Connection

    for pid in list(fleet.workers):
        fleet.stop_worker(pid)
    with Connection(fleet.broker_url, connect_timeout=5) as connection:
        connection.default_channel.queue_purge(fleet.queue)
    return fleet.start_worker(**kwargs)


@pytest.mark.timeout(120)
def test_a_consumer_that_stops_consuming_is_restarted_by_the_watchdog(fleet: Fleet) -> None:
    """Celery's consumer sometimes stops consuming after a Redis reconnection (celery/celery#8030,
    #10205). The fault hook cancels the consumer after its first message: without the watchdog
    the second run waits forever; with it, the consumer is restarted and the run runs."""
    host = _only_worker(fleet, concurrency=1, args=("--stall-seconds", "2"), env={FAULT_STALL: "once"})
    try:
        first = fleet.submit("ticker", {"seconds": 0.1})
        assert fleet.finished(first)["status"] == "SUCCESS"
        wait_for(lambda: "the consumer stops consuming" in fleet.worker_log(host), 10, "the fault to fire")
        second = fleet.submit("ticker", {"seconds": 0.1})

        assert fleet.finished(second, timeout=40)["status"] == "SUCCESS"
        assert "restarting the consumer" in fleet.worker_log(host)
        assert fleet.workers[host][0].poll() is None, "the host exited instead of restarting its consumer"
    finally:
        fleet.stop_worker(host)
        fleet.start_worker()  # later tests need one


@pytest.mark.timeout(120)
def test_a_consumer_the_restart_does_not_cure_exits_75_for_its_service_manager(fleet: Fleet) -> None:
    host = _only_worker(fleet, concurrency=1, args=("--stall-seconds", "2"), env={FAULT_STALL: "always"})
    proc = fleet.workers[host][0]
    first = fleet.submit("ticker", {"seconds": 0.1})
    assert fleet.finished(first)["status"] == "SUCCESS"
    second = fleet.submit("ticker", {"seconds": 0.1})

    assert wait_for(lambda: proc.poll() is not None, 40, "the stalled host to exit") and proc.returncode == 75
    assert "restarting the consumer" in fleet.worker_log(host), fleet.worker_log(host)
    fleet.workers.pop(host)
    assert host not in fleet.registered()
    fleet.start_worker()  # what its service manager does: the waiting run runs, once
    run = fleet.finished(second, timeout=40)
    assert run["status"] == "SUCCESS", run
    assert [a["state"] for a in run["attempts"]] == ["DONE"], run["attempts"]


@pytest.mark.timeout(150)
def test_runs_dispatch_only_into_free_slots_in_priority_order(fleet: Fleet) -> None:
    for pid in list(fleet.workers):
        fleet.stop_worker(pid)
    fleet.start_worker(concurrency=2)
    fleet.client.set_queue_paused(True)  # all six wait together, then go in priority order
    low = [fleet.submit("ticker", {"seconds": 1}, tags={"dagd/priority": "-1"}) for _ in range(3)]
    high = [fleet.submit("ticker", {"seconds": 1}, tags={"dagd/priority": "5"}) for _ in range(3)]
    everyone = low + high
    fleet.client.set_queue_paused(False)
    most = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = [fleet.get(r) for r in everyone]
        most = max(most, sum(1 for r in runs if r["status"] in ("STARTING", "STARTED", "CANCELING")))
        if all(r["status"] in FINISHED for r in runs):
            break
        time.sleep(0.1)
    runs = [fleet.get(r) for r in everyone]

    assert all(r["status"] == "SUCCESS" for r in runs), [(r["status"], r["error"]) for r in runs]
    assert most <= 2, f"{most} runs in progress on 2 slots"
    # Two slots: the first two dispatched are high, the last two low (runs dispatched in one
    # transaction have no order among them, so only these ends are certain).
    order = [r["run_id"] for r in sorted(runs, key=lambda r: r["attempts"][0]["dispatched_at"])]
    assert set(order[:2]) <= set(high) and set(order[-2:]) <= set(low), (order, high, low)


def test_the_celery_launcher_refuses_sqlite_at_start(home: pathlib.Path) -> None:
    (home / "dagd.yaml").write_text(
        "run_launcher:\n  module: dagd.run_launcher\n  class: CeleryRunLauncher\n"
        "  config: {broker_url: 'amqp://guest:guest@127.0.0.1:5672//'}\n"
    )
    for args in (("daemon", "run", "-f", str(DEFS)), ("worker", "run")):
        result = dagctl(home, *args)

        assert result.code == 2, (args, result)
        assert result.stderr.strip().splitlines() == [
            f"dagctl: error: {home / 'dagd.yaml'}: run_launcher: CeleryRunLauncher needs storage.postgres:"
            " workers on other hosts cannot share a SQLite file"
        ], result.stderr
    assert_no_leftovers(home)


def _in_progress(engine: sa.Engine) -> tuple[int, int, int]:
    """(runs in progress, of them tagged fleet-limited, attempts claimed at once): one sample."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT count(*), count(t.run_id) FROM runs r LEFT JOIN run_tags t"
                " ON t.run_id = r.run_id AND t.key = 'fleet-limited'"
                " WHERE r.status IN ('STARTING', 'STARTED', 'CANCELING')"
            )
        ).one()
        claimed = conn.execute(sa.text("SELECT count(*) FROM run_attempts WHERE state = 'CLAIMED'")).scalar()
    return int(row[0]), int(row[1]), int(claimed or 0)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("broker", sorted(BROKERS))
def test_fifty_runs_on_two_hosts_run_once_each_within_the_limits_higher_priority_first(
    broker: str, pg_url: str, tmp_path: pathlib.Path
) -> None:
    """50 runs, max_concurrent_runs 6 and a tag limit of 2, on two hosts of 4 slots (8 slots:
    the global limit binds). Sampled from the database all along: never more than 6 in progress,
    never more than 2 tagged, never more attempts claimed than slots."""
    coordinator = (
        "{max_concurrent_runs: 6, dequeue_interval_seconds: 0.5,"
        " tag_concurrency_limits: [{key: fleet-limited, limit: 2}]}"
    )
    fleet = Fleet(tmp_path / "fleet", BROKERS[broker], pg_url, coordinator)
    counter = tmp_path / "starts.txt"
    engine = sa.create_engine(pg_url, connect_args={"connect_timeout": 5})
    try:
        fleet.start()
        fleet.start_worker(concurrency=4)
        fleet.start_worker(concurrency=4)
        fleet.client.set_queue_paused(True)  # all wait together, then go in priority order
        tags_of: dict[str, dict[str, str]] = {}
        for i in range(50):
            tags = {"dagd/priority": "5" if i % 2 else "0"}
            if i % 5 == 0:
                tags["fleet-limited"] = "yes"
            tags_of[fleet.submit("ticker", {"seconds": 0.2, "file": str(counter)}, tags=tags)] = tags
        fleet.client.set_queue_paused(False)
        most = (0, 0, 0)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            sample = _in_progress(engine)
            most = (max(most[0], sample[0]), max(most[1], sample[1]), max(most[2], sample[2]))
            with engine.connect() as conn:
                left = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM runs WHERE status NOT IN ('SUCCESS', 'FAILURE', 'CANCELED')"
                    )
                ).scalar()
            if left == 0:
                break
            time.sleep(0.05)
        runs = [fleet.get(r) for r in tags_of]
    finally:
        engine.dispose()
        fleet.close()

    assert all(r["status"] == "SUCCESS" for r in runs), [(r["status"], r["error"]) for r in runs]
    assert all([a["state"] for a in r["attempts"]] == ["DONE"] for r in runs)
    starts = counter.read_text().splitlines()
    assert sorted(line.split()[0] for line in starts) == sorted(tags_of), "a run did not start exactly once"
    assert most[0] <= 6, f"{most[0]} runs in progress under max_concurrent_runs 6"
    assert most[1] <= 2, f"{most[1]} fleet-limited runs in progress under a limit of 2"
    assert most[2] <= 6, f"{most[2]} attempts claimed at once"
    assert most[0] >= 4, f"never more than {most[0]} in progress: the sampling saw nothing"
    # Untagged runs are held back by the global limit only: every high-priority one is dispatched
    # no later than any low-priority one. dispatched_at is the database's clock per statement, and
    # one pass inserts its attempts in no particular order within a few milliseconds (passes at
    # capacity are 50 ms apart at least): within one pass's spread counts as the same moment.
    from datetime import datetime, timedelta

    def at(run_id: str) -> datetime:
        return datetime.fromisoformat(dispatched[run_id].replace("Z", "+00:00"))

    dispatched = {r["run_id"]: r["attempts"][0]["dispatched_at"] for r in runs}
    free = [r for r in tags_of if "fleet-limited" not in tags_of[r]]
    high = max(at(r) for r in free if tags_of[r]["dagd/priority"] == "5")
    low = min(at(r) for r in free if tags_of[r]["dagd/priority"] == "0")
    assert high <= low + timedelta(milliseconds=25), (high, low, sorted(dispatched.values()))


@pytest.mark.timeout(150)
def test_a_stopped_host_is_fenced_and_its_late_writes_never_land(fleet: Fleet) -> None:
    """SIGSTOP a host and everything it started but the job itself, past the heartbeat timeout:
    the job stops itself (its lease runs out) before attempt 2 begins on the other host; after
    SIGCONT the watcher fences itself, and nothing of attempt 1 reaches the database after
    attempt 2 began. Never two attempts claimed at once."""
    while len(fleet.workers) < 2:
        fleet.start_worker()
    run_id = fleet.submit("resumable_ticker", {"seconds": 3})
    watcher = fleet.started(run_id)["attempts"][0]["pid"]
    host = _host_of(fleet, watcher)
    job = wait_for(lambda: [p.pid for p in _tree(watcher)[1:]], 10, "attempt 1's job")[0]
    frozen = [p for p in _tree(host) if p.pid != job]
    engine = sa.create_engine(fleet.pg_url, connect_args={"connect_timeout": 5})
    for proc in frozen:
        proc.suspend()
    try:
        job_dead_at = attempt_2_at = None
        claimed_most = 0
        deadline = time.monotonic() + TIMEOUT + 20
        while (job_dead_at is None or attempt_2_at is None) and time.monotonic() < deadline:
            if job_dead_at is None and _all_gone(_tree(job) or []):
                job_dead_at = time.monotonic()
            with engine.connect() as conn:
                claimed = conn.execute(
                    sa.text("SELECT count(*) FROM run_attempts WHERE run_id = :r AND state = 'CLAIMED'"),
                    {"r": run_id},
                ).scalar()
                second = conn.execute(
                    sa.text("SELECT count(*) FROM run_attempts WHERE run_id = :r AND attempt = 2"),
                    {"r": run_id},
                ).scalar()
            claimed_most = max(claimed_most, int(claimed or 0))
            if attempt_2_at is None and second:
                attempt_2_at = time.monotonic()
            time.sleep(0.05)
        assert job_dead_at is not None, "attempt 1's job kept running while its host was frozen"
        assert attempt_2_at is not None, "no attempt 2 was started"
        assert job_dead_at < attempt_2_at, "attempt 2 began while attempt 1's job was still running"
    finally:
        for proc in frozen:
            try:
                proc.resume()
            except psutil.NoSuchProcess:
                pass
    try:
        wait_for(lambda: _all_gone([p for p in frozen if p.pid == watcher]), 15, "the fenced watcher to exit")
        run = fleet.finished(run_id, timeout=40)
        assert run["status"] == "SUCCESS", run
        assert [a["state"] for a in run["attempts"]] == ["LOST", "DONE"], run["attempts"]
        assert str(run["attempts"][1]["worker"]).rsplit(":", 1)[-1] != str(host), run["attempts"]
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, message FROM run_logs WHERE run_id = :r ORDER BY id"), {"r": run_id}
            ).all()
            claimed_most = max(
                claimed_most,
                int(
                    conn.execute(
                        sa.text("SELECT count(*) FROM run_attempts WHERE run_id = :r AND state = 'CLAIMED'"),
                        {"r": run_id},
                    ).scalar()
                    or 0
                ),
            )
    finally:
        engine.dispose()
    first_of_2 = min(i for i, m in rows if "attempt 2" in m)
    late = [m for i, m in rows if i > first_of_2 and "attempt 1" in m]
    assert late == [], f"attempt 1 wrote after attempt 2 began: {late[:5]}"
    assert claimed_most <= 1, "two attempts claimed at once"
    statuses = [e["message"] for e in run["events"] if e["kind"] == "status"]
    assert statuses.count("finished") == 1, statuses


@pytest.mark.timeout(120)
def test_as_pid_1_of_its_namespace_a_worker_host_runs_under_the_mini_init_and_stops_cleanly(
    fleet: Fleet, tmp_path: pathlib.Path
) -> None:
    """In a container the host is PID 1: it forks, PID 1 stays an init that reaps orphans and
    forwards SIGTERM; the host below it registers, runs a run, drains and unregisters."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (unshare --pid), as CI has")
    for pid in list(fleet.workers):
        fleet.stop_worker(pid)
    home = fleet._home(f"worker-{uuid.uuid4().hex[:6]}")
    log = tmp_path / "pid1-host.log"
    command = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *DAGCTL, "worker", "run"]
    with open(log, "w") as out:
        unshare = subprocess.Popen(
            [*command, "--concurrency", "1"],
            env={**os.environ, "DAGD_HOME": str(home), "PYTHONUNBUFFERED": "1"},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        init = wait_for(lambda: psutil.Process(unshare.pid).children(), 10, "the namespace's init")[0]
        host = wait_for(lambda: init.children(), 10, "the worker host below PID 1")[0]
        assert "worker" in host.cmdline(), host.cmdline()
        wait_for(
            lambda: 2 in fleet.registered(), 30, f"the host (pid 2 inside) to register:\n{log.read_text()}"
        )
        run = fleet.finished(fleet.submit("ticker", {"seconds": 0.2}), timeout=40)
        assert run["status"] == "SUCCESS", run

        init.send_signal(signal.SIGTERM)  # forwarded to the host: a warm shutdown
        assert unshare.wait(timeout=30) == 0, log.read_text()[-3000:]
        assert 2 not in fleet.registered()
    finally:
        if unshare.poll() is None:
            unshare.kill()  # --kill-child takes the namespace with it
            unshare.wait(timeout=10)
        fleet.start_worker()  # later tests need one
    assert_no_leftovers(home)


@pytest.mark.timeout(120)
def test_a_worker_host_serves_its_own_metrics(fleet: Fleet) -> None:
    import re
    import urllib.request

    host = fleet.start_worker(concurrency=3, args=("--metrics-port", "0"))
    try:
        found = wait_for(
            lambda: re.search(r"metrics on (http://\S+/metrics)", fleet.worker_log(host)),
            10,
            "the metrics line",
        )
        url = found.group(1)

        def scrape() -> dict[str, float]:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            return {
                line.split("{")[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("dagd_worker") and f'worker="{fleet.registered()[host]["name"]}"' in line
            }

        first = scrape()
        assert first["dagd_worker_slots"] == 3 and first["dagd_worker_accepting"] == 1, first
        assert first["dagd_worker_consumer_restarts_total"] == 0, first
        assert "dagd_worker_messages_received_total" in first, first
    finally:
        fleet.stop_worker(host)
