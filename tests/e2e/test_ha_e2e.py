"""Several supervisors on one PostgreSQL (SPEC 9.2, docs/high-availability.md): the lease on the database's clock.

Two supervisors, each with its own home, as two hosts would run them. One leads; the other stands
by and serves the API: submissions through it are launched by the leader, and its ``daemons
status`` judges the leader's daemons by their heartbeat rows' age on the database's clock. One
supervisor runs with its wall clock 120 s behind (tests/helpers/skewed_clock): the lease and every age are
still right, and the skew is measured and warned about. A leader frozen past its lease (SIGSTOP)
is replaced once the lease expires by the database's clock, not before; woken, it steps down and
rejoins as a standby in the same process. A leader cut off from the database (a stalled proxy, or
its test host's link cut) steps down on its own renew deadline before the other takes over, and
rejoins as a standby once the link heals, with no service manager to restart it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import time
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import netns
from helpers.procs import DagdProcess, assert_no_leftovers, wait_for
from helpers.tcp_proxy import proxy_to

from dagd.client.client import Client

TTL = 6.0  # a short lease keeps the takeover tests quick; the production default is 15 s
CONFIG = f"""
daemons:
  heartbeat_interval_seconds: 0.5
  heartbeat_timeout_seconds: 10
  stop_grace_seconds: 2
  lease_ttl_seconds: {TTL:g}
"""
SKEW = -120  # seconds: the skewed host's wall clock runs this far from the database's


def skewed_clock() -> dict[str, str]:
    """The environment that moves a process's wall clock (and its children's) by SKEW seconds,
    monotonic clocks untouched (tests/helpers/skewed_clock: why not libfaketime)."""
    shim = pathlib.Path(__file__).parent.parent / "helpers" / "skewed_clock"
    path = os.pathsep.join(p for p in (str(shim), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "DAGD_TEST_CLOCK_OFFSET": str(SKEW)}


def host(tmp_path: pathlib.Path, name: str, pg_url: str, extra_config: str = "") -> DagdProcess:
    """A supervisor with its own home and log, as on its own host."""
    proc = DagdProcess(tmp_path / name / "home")
    proc.home.mkdir(parents=True)
    proc.write_config(f"storage:\n  postgres:\n    url: '{pg_url}'\n{CONFIG}{extra_config}")
    return proc


def on_test_hosts(
    stack: contextlib.ExitStack, tmp_path: pathlib.Path, pg_url: str, extra_config: str = ""
) -> tuple[list[netns.NetHost], list[DagdProcess]]:
    """Two test hosts (network namespaces, own hostnames), each reaching PostgreSQL only through a
    proxy on its link, and a supervisor home for each; stopped and removed when ``stack`` closes."""
    parsed = urllib.parse.urlparse(pg_url.replace("postgresql+psycopg", "postgresql"))
    pg_host, pg_port = parsed.hostname or "127.0.0.1", parsed.port or 5432
    bed = stack.enter_context(netns.multi_host())
    hosts, procs = [], []
    for name in ("hosta", "hostb"):
        test_host = bed.host(name)
        proxy = stack.enter_context(proxy_to(pg_host, pg_port, listen_host=test_host.local_address))
        url = pg_url.replace(f"{pg_host}:{pg_port}", f"{test_host.local_address}:{proxy.port}")
        hosts.append(test_host)
        procs.append(host(tmp_path, name, url, extra_config))
    stack.callback(lambda: [p.stop() for p in procs])
    return hosts, procs


def start_on(test_host: netns.NetHost, proc: DagdProcess, defs_file: pathlib.Path, *, standby: bool) -> None:
    command = ("daemon", "run", "--standby") if standby else ("daemon", "run")
    proc.start("-f", str(defs_file), command=command, wait_healthy=not standby, wrap=test_host.command())


def client(proc: DagdProcess) -> Client:
    return Client(f"unix:{proc.home / 'run' / 'dagd.sock'}")


def info(proc: DagdProcess) -> dict[str, Any]:
    with client(proc) as c:
        return c.instance_info()


def role(proc: DagdProcess) -> str | None:
    try:
        return info(proc)["role"]
    except Exception:
        return None


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def overall_health(proc: DagdProcess) -> str:
    """The overall gRPC health (liveness) of ``proc``, through its unix socket."""
    with grpc.insecure_channel(f"unix:{proc.home / 'run' / 'dagd.sock'}") as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def run_to_success(proc: DagdProcess) -> str:
    """Submit ``hello`` through ``proc``; its id once it succeeded."""
    with client(proc) as c:
        run_id = c.submit("hello")["run_id"]
        wait_for(lambda: c.get_run(run_id)[0]["status"] == "SUCCESS", 60, f"run {run_id} to succeed")
    return run_id


@pytest.fixture
def pair(tmp_path: pathlib.Path, pg_url: str) -> Iterator[tuple[DagdProcess, DagdProcess]]:
    a, b = host(tmp_path, "a", pg_url), host(tmp_path, "b", pg_url)
    try:
        yield a, b
    finally:
        for proc in (a, b):
            if proc.proc is not None and proc.proc.poll() is None:
                os.kill(proc.proc.pid, signal.SIGCONT)  # a test that failed while it was frozen
            proc.stop()
    for proc in (a, b):
        assert_no_leftovers(proc.home)


def start_pair(
    a: DagdProcess, b: DagdProcess, defs_file: pathlib.Path, leader_env: dict[str, str] | None = None
) -> None:
    a.start("-f", str(defs_file), command=("daemon", "run"), env=leader_env)
    b.start("-f", str(defs_file), command=("daemon", "run", "--standby"), wait_healthy=False)
    wait_for(lambda: role(b) == "standby", 60, "the second supervisor to serve as a standby")
    leader_sees_standby(a)


def full_log(proc: DagdProcess) -> str:
    """The whole log (``DagdProcess.log()`` keeps only its tail, where offsets mean nothing)."""
    try:
        return proc.log_path.read_text(errors="replace")
    except OSError:
        return ""


def leader_sees_standby(leader: DagdProcess, after: int = 0) -> None:
    """Until the leader's renewals count the standby (in its log from offset ``after`` on): only
    then would it step down for it."""
    wait_for(
        lambda: "1 supervisor(s) standing by" in full_log(leader)[after:], 30, "the leader to see the standby"
    )


def rejoined_as_standby(old: DagdProcess, leader: DagdProcess, within: float, mark: int) -> None:
    """``old`` stepped down and stands by again in the same process: it serves, calls itself a
    standby, reads ``leader``'s lease, and ``leader``'s renewals count it again (in its log after
    offset ``mark``, taken before ``old`` could reach the database again)."""
    assert old.proc is not None and old.proc.poll() is None, "the old leader exited instead of standing by"

    def standing_by() -> bool:
        seen = info(old) if role(old) == "standby" else None
        return (
            seen is not None
            and seen["lease"] is not None
            and seen["lease"]["holder"] == info(leader)["lease"]["holder"]
            and "stepped down: serving the API as a standby" in full_log(old)
        )

    wait_for(standing_by, within, "the old leader to stand by, reading the new leader's lease")
    leader_sees_standby(leader, after=mark)
    assert old.proc.poll() is None


@pytest.mark.timeout(150)
def test_a_standby_serves_the_api_and_its_submissions_are_launched_by_the_leader(
    pair: tuple[DagdProcess, DagdProcess], defs_file: pathlib.Path
) -> None:
    a, b = pair
    start_pair(a, b, defs_file)
    leader, standby = info(a), info(b)
    assert leader["role"] == "leader" and standby["role"] == "standby"
    # Both read the same lease, timed by the database: held by a, expiring within the TTL.
    for seen in (leader, standby):
        lease = seen["lease"]
        assert lease["holder"].split(":")[1] == str(a.pid), lease
        assert 0 < lease["expires_in_seconds"] <= TTL
        assert seen["clock_skew_seconds"] is not None and abs(seen["clock_skew_seconds"]) < 1

    # `daemons status` through the standby: the leader's daemons, judged by heartbeat age.
    status = b.ctl("daemons", "status", "--json")
    assert status.code == 0, status.stderr
    assert status.json()["role"] == "standby"
    daemons = status.json()["daemons"]
    assert {d["name"] for d in daemons} == {"scheduler", "run_queue", "sensor", "run_monitoring"}
    assert all(d["healthy"] and 0 <= d["heartbeat_age_seconds"] < 5 for d in daemons), daemons
    assert a.ctl("daemons", "status", "--json").json()["role"] == "leader"
    queue = b.ctl("queue", "status", "--json")
    assert queue.code == 0 and queue.json()["queue_daemon_healthy"] is True, queue.stdout + queue.stderr
    text = b.ctl("instance", "info").stdout
    assert "standby" in text and f"epoch {leader['lease']['epoch']}" in text

    # A submission through the standby is stored there and launched by the leader.
    first = run_to_success(b)

    # SIGKILL the leader (its daemons follow: their stdin closes): the standby leads within the
    # lease plus its retry, and runs keep launching, each exactly once.
    a.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: role(b) == "leader", TTL + 10, "the standby to take over")
    assert time.monotonic() - killed_at <= TTL + 5
    second = run_to_success(b)
    with client(b) as c:
        for run_id in (first, second):
            launches = [e for e in c.get_run(run_id)[1] if e["status"] == "STARTING"]
            assert len(launches) == 1, (run_id, launches)


@pytest.mark.timeout(180)
def test_a_host_with_a_skewed_clock_neither_flaps_nor_misjudges_ages_and_a_frozen_leader_steps_down_and_leads_again(
    pair: tuple[DagdProcess, DagdProcess], defs_file: pathlib.Path
) -> None:
    """The leader's wall clock runs 120 s behind. Before #16 the standby compared its own clock
    with the expiry the leader wrote and took over at once (two leaders), and the leader's
    heartbeats looked two minutes old from the other host."""
    a, b = pair
    start_pair(a, b, defs_file, leader_env=skewed_clock())
    skew = info(a)["clock_skew_seconds"]
    assert skew is not None and abs(skew - (-SKEW)) < 2, skew
    assert "behind the database's" in full_log(a)

    # No takeover while the leader renews: watch for longer than the lease.
    deadline = time.monotonic() + TTL * 1.5
    while time.monotonic() < deadline:
        assert role(b) == "standby" and role(a) == "leader"
        time.sleep(0.5)

    # Ages from both hosts, by the database's clock: fresh, whatever either clock says.
    for proc in (a, b):
        daemons = proc.status()["daemons"]
        assert all(d["healthy"] and d["heartbeat_age_seconds"] < 5 for d in daemons), (proc.home, daemons)

    # Freeze the leader: the standby takes over once the lease expires by the database's clock.
    daemon_pids = [d["pid"] for d in a.status()["daemons"]]
    left = info(b)["lease"]["expires_in_seconds"]
    a.signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    wait_for(lambda: role(b) == "leader", TTL + 15, "the standby to take over")
    took = time.monotonic() - frozen_at
    assert took >= left - 0.5, f"took over after {took:.1f}s, before the lease ran out ({left:.1f}s)"
    b.wait_healthy(60)
    new_epoch = info(b)["lease"]["epoch"]

    # Woken, the old leader learns it lost the lease: it kills its daemons and stands by again,
    # in the same process.
    mark = len(full_log(b))
    a.signal(signal.SIGCONT)
    rejoined_as_standby(a, b, 30, mark)
    assert "stepping down" in full_log(a)
    assert not any(alive(pid) for pid in daemon_pids), "the old leader's daemons outlived its term"
    lease = info(b)["lease"]
    assert lease["holder"].split(":")[1] == str(b.pid) and lease["epoch"] == new_epoch

    # Its turn comes again (the new leader dies): it leads with a new epoch and fresh daemons.
    b.signal(signal.SIGKILL)
    wait_for(lambda: role(a) == "leader", TTL + 10, "the old leader to lead again")
    daemons = a.wait_healthy(60)["daemons"]
    assert not {d["pid"] for d in daemons} & set(daemon_pids), daemons
    assert info(a)["lease"]["epoch"] > new_epoch
    run_to_success(a)


@pytest.mark.timeout(180)
def test_a_leader_cut_off_from_the_database_steps_down_before_the_standby_takes_over(
    tmp_path: pathlib.Path, pg_url: str, defs_file: pathlib.Path
) -> None:
    """A network partition between the leader and PostgreSQL (the proxy stalls: connections hang,
    nothing is refused). The leader steps down on its own monotonic renew deadline, while its
    renewal still hangs, before the lease expires and the standby takes over; healed, the same
    process stands by again, and there is one leader."""
    parsed = urllib.parse.urlparse(pg_url.replace("postgresql+psycopg", "postgresql"))
    with proxy_to(parsed.hostname or "127.0.0.1", parsed.port or 5432) as proxy:
        proxied = pg_url.replace(f"{parsed.hostname}:{parsed.port or 5432}", f"127.0.0.1:{proxy.port}")
        a, b = host(tmp_path, "a", proxied), host(tmp_path, "b", pg_url)
        try:
            start_pair(a, b, defs_file)
            before = run_to_success(b)
            daemon_pids = [d["pid"] for d in a.status()["daemons"]]
            proxy.stall()
            cut_at = time.monotonic()
            # Stepping down is its daemons killed: nothing it could launch is left running.
            wait_for(
                lambda: not any(alive(pid) for pid in daemon_pids), TTL + 10, "the leader's daemons to go"
            )
            stepped_down = time.monotonic() - cut_at
            assert role(b) == "standby", "the standby took over before the old leader stepped down"
            assert "stepping down: no lease renewal succeeded within the renew deadline" in full_log(a)
            wait_for(lambda: role(b) == "leader", TTL + 10, "the standby to take over")
            took_over = time.monotonic() - cut_at
            assert stepped_down < took_over <= TTL + 5, (stepped_down, took_over)
            # Standing by, its attempts at the lease hang behind the stalled proxy (the proxy's
            # kernel acknowledges every byte: no TCP timeout fires), yet its main loop passes and
            # its liveness stays SERVING: a probe would restart it for nothing.
            while time.monotonic() - cut_at < stepped_down + 15:
                since = time.monotonic() - cut_at
                assert overall_health(a) == "SERVING", f"a's liveness failed {since:.1f}s after the stall"
                time.sleep(0.1)
            after = run_to_success(b)

            mark = len(full_log(b))
            proxy.resume()
            rejoined_as_standby(a, b, 60, mark)
            assert role(b) == "leader"
            with client(b) as c:
                for run_id in (before, after):
                    launches = [e for e in c.get_run(run_id)[1] if e["status"] == "STARTING"]
                    assert len(launches) == 1, (run_id, launches)
        finally:
            proxy.resume()
            for proc in (a, b):
                proc.stop()
        for proc in (a, b):
            assert_no_leftovers(proc.home)


@pytest.mark.timeout(240)
def test_two_test_hosts_a_cut_link_makes_the_leader_step_down_and_the_other_host_lead(
    tmp_path: pathlib.Path, pg_url: str, defs_file: pathlib.Path
) -> None:
    """Two supervisors, each on its own test host (network namespace, own hostname), reaching
    PostgreSQL only through a proxy on their link. Cutting the leader's link: it steps down before
    the other takes over, within the lease plus the standby's retry; each run launched once; healed,
    the cut-off host's supervisor (the same process: nothing restarts it) rejoins as a standby.
    Before #16 it exited 1 and, started again, did not always rejoin within a minute: its
    connections hung in the kernel's retransmissions (no keepalives, no tcp_user_timeout)."""
    with contextlib.ExitStack() as stack:
        hosts, procs = on_test_hosts(stack, tmp_path, pg_url)
        a, b = procs
        start_on(hosts[0], a, defs_file, standby=False)
        start_on(hosts[1], b, defs_file, standby=True)
        wait_for(lambda: role(b) == "standby", 60, "host b to serve as a standby")
        leader_sees_standby(a)
        assert info(b)["lease"]["holder"].startswith("hosta:"), "the holder names its test host"
        before = run_to_success(b)

        daemon_pids = [d["pid"] for d in a.status()["daemons"]]
        hosts[0].cut()
        cut_at = time.monotonic()
        wait_for(lambda: not any(alive(pid) for pid in daemon_pids), TTL + 10, "host a's daemons to go")
        stepped_down = time.monotonic() - cut_at
        assert role(b) == "standby", "host b took over before host a stepped down"
        # Host a now stands by, cut off: its attempts at the lease hang on the link (up to
        # tcp_user_timeout + connect_timeout, 13 s), yet its main loop passes, so its liveness
        # stays SERVING (a probe would restart it for nothing); meanwhile host b takes over.
        took_over: float | None = None
        while took_over is None or time.monotonic() - cut_at < stepped_down + 15:
            since = time.monotonic() - cut_at
            assert overall_health(a) == "SERVING", f"host a's liveness failed {since:.1f}s after the cut"
            if took_over is None and role(b) == "leader":
                took_over = time.monotonic() - cut_at
            assert took_over is not None or since < TTL + 10, "host b did not take over"
            time.sleep(0.1)
        assert stepped_down < took_over <= TTL + 5, (stepped_down, took_over)
        after = run_to_success(b)

        mark = len(full_log(b))
        hosts[0].heal()
        rejoined_as_standby(a, b, 60, mark)
        assert role(b) == "leader" and info(a)["lease"]["holder"].startswith("hostb:")
        with client(b) as c:
            for run_id in (before, after):
                launches = [e for e in c.get_run(run_id)[1] if e["status"] == "STARTING"]
                assert len(launches) == 1, (run_id, launches)
    for proc in procs:
        assert_no_leftovers(proc.home)
    assert not netns.ours(os.getpid()), "a test host outlived its test"


HA_DEFS = pathlib.Path(__file__).parent.parent / "fixtures" / "ha_defs.py"
# Runs only queue: the instigators' runs are counted, never executed.
NO_LAUNCHES = "run_coordinator:\n  config: {max_concurrent_runs: 0}\n"


def finished_ticks(proc: DagdProcess, kind: str, name: str) -> list[dict[str, Any]]:
    with client(proc) as c:
        return [t for t in c.list_ticks(kind, name, 1000) if t["status"] != "STARTED"]


def runs_tagged(proc: DagdProcess, **tags: str) -> list[dict[str, Any]]:
    with client(proc) as c:
        listed, _ = c.list_runs(tags=tags, limit=5000)
    return listed


def minute_tick(proc: DagdProcess, at: float) -> dict[str, Any] | None:
    """``every_minute``'s finished tick for the minute starting at ``at`` (epoch seconds), if any."""
    for tick in finished_ticks(proc, "schedule", "every_minute"):
        if stamp(tick["scheduled_time"]) == at:
            return tick
    return None


def stamp(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def until_wall_clock(at: float) -> None:
    """Aim a fault at a moment of the schedule (this machine's clock is the database's here)."""
    wait_for(lambda: time.time() >= at, max(0.0, at - time.time()) + 5, "the moment to strike", interval=0.02)


def next_minute() -> float:
    return (int(time.time()) // 60 + 1) * 60.0


@pytest.mark.timeout(330)
def test_across_takeovers_each_schedule_tick_and_each_sensor_run_key_happens_exactly_once(
    tmp_path: pathlib.Path, pg_url: str
) -> None:
    """Two supervisors on two test hosts, an every-minute schedule and a sensor asking for one new
    run key per second (and the previous one again). The leader is SIGKILLed twice: just after a
    minute boundary (the tick may be in flight) and just before one (the tick falls due while nobody
    leads, and the new leader must catch it up). Over the window: one tick and one run per minute,
    none missing; every run key one run, the keys without a gap."""
    with contextlib.ExitStack() as stack:
        hosts, (a, b) = on_test_hosts(stack, tmp_path, pg_url, NO_LAUNCHES)
        start_on(hosts[0], a, HA_DEFS, standby=False)
        start_on(hosts[1], b, HA_DEFS, standby=True)
        wait_for(lambda: role(b) == "standby", 60, "host b to serve as a standby")
        leader_sees_standby(a)

        # In flight: SIGKILL the leader just after a minute boundary.
        first = next_minute()
        until_wall_clock(first + 0.3)
        a.signal(signal.SIGKILL)
        wait_for(lambda: role(b) == "leader", TTL + 10, "host b to take over")
        wait_for(lambda: minute_tick(b, first), 30, "the tick of the minute the leader was killed in")
        a.wait_exit(10)
        mark = len(full_log(b))
        start_on(hosts[0], a, HA_DEFS, standby=True)  # as its service manager would
        wait_for(lambda: role(a) == "standby", 60, "host a to stand by again")
        leader_sees_standby(b, after=mark)

        # Due while nobody leads: SIGKILL the leader just before the next boundary.
        second = next_minute()
        if second - time.time() < 3:
            second += 60
        until_wall_clock(second - 2)
        b.signal(signal.SIGKILL)
        wait_for(lambda: role(a) == "leader", TTL + 10, "host a to take over")
        wait_for(lambda: minute_tick(a, second), 30, "the tick that fell due during the takeover")
        keys_then = keyed_cursor(a)
        wait_for(lambda: keyed_cursor(a) >= keys_then + 3, 30, "the sensor to go on on the new leader")

        ticks = finished_ticks(a, "schedule", "every_minute")
        times = sorted(t["scheduled_time"] for t in ticks)
        assert len(times) == len(set(times)), f"a minute ticked twice: {times}"
        stamps = [stamp(t) for t in times]
        assert stamps == [stamps[0] + 60 * i for i in range(len(stamps))], f"a minute is missing: {times}"
        assert {first, second} <= set(stamps), times
        assert all(t["status"] == "SUCCESS" and len(t["run_ids"]) == 1 for t in ticks), ticks
        scheduled = runs_tagged(a, **{"dagd/schedule": "every_minute"})
        assert sorted(stamp(r["tags"]["dagd/scheduled_time"]) for r in scheduled) == stamps, scheduled

        keyed = runs_tagged(a, **{"dagd/sensor": "keyed"})
        counts: dict[str, int] = {}
        for run in keyed:
            counts[run["tags"]["key"]] = counts.get(run["tags"]["key"], 0) + 1
        assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n > 1}
        numbers = sorted(int(k[1:]) for k in counts)
        assert numbers == list(range(len(numbers))), (
            f"run keys missing: {sorted(set(range(numbers[-1])) - set(numbers))}"
        )
    for proc in (a, b):
        assert_no_leftovers(proc.home)


def keyed_cursor(proc: DagdProcess) -> int:
    with client(proc) as c:
        return int(next(i for i in c.list_instigators("sensor") if i["name"] == "keyed")["cursor"] or 0)


@pytest.mark.timeout(240)
def test_a_standby_started_during_a_lone_leaders_outage_takes_over_and_the_leader_stands_by_once_healed(
    tmp_path: pathlib.Path, pg_url: str, defs_file: pathlib.Path
) -> None:
    """A leader alone keeps its daemons through a database outage (nobody else could lead; its
    launches are fenced). A standby started during the outage cannot be seen by it, yet takes the
    lease once it expires by the database's clock. Healed, the old leader learns it was taken
    over, kills its daemons and stands by in the same process; each run is launched once."""
    with contextlib.ExitStack() as stack:
        hosts, (a, b) = on_test_hosts(stack, tmp_path, pg_url)
        start_on(hosts[0], a, defs_file, standby=False)
        before = run_to_success(a)
        daemon_pids = [d["pid"] for d in a.status()["daemons"]]
        hosts[0].cut()
        wait_for(
            lambda: "no standby was seen" in full_log(a), TTL + 10, "the lone leader to keep its daemons"
        )
        assert all(alive(pid) for pid in daemon_pids), "a lone leader stepped down for nobody"

        start_on(hosts[1], b, defs_file, standby=True)
        wait_for(lambda: role(b) == "leader", TTL + 30, "the standby started during the outage to take over")
        b.wait_healthy(60)
        after = run_to_success(b)
        assert all(alive(pid) for pid in daemon_pids), "the cut-off leader cannot know yet"

        mark = len(full_log(b))
        hosts[0].heal()
        wait_for(lambda: not any(alive(pid) for pid in daemon_pids), 60, "the old leader's daemons to go")
        assert "taken over by another supervisor" in full_log(a)
        rejoined_as_standby(a, b, 60, mark)
        assert role(b) == "leader" and info(a)["lease"]["holder"].startswith("hostb:")
        with client(b) as c:
            for run_id in (before, after):
                launches = [e for e in c.get_run(run_id)[1] if e["status"] == "STARTING"]
                assert len(launches) == 1, (run_id, launches)
    for proc in (a, b):
        assert_no_leftovers(proc.home)
