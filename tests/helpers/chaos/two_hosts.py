"""The two-host mode: a leader and a standby supervisor on two test hosts, partitions among the faults.

Two ``dagctl daemon run`` supervisors (one ``--standby``), each in its own home on its own test host
(helpers/netns.py: a network namespace with its own hostname), share one PostgreSQL that each reaches
only through a proxy on its own link (helpers/ha.py), with the short lease of the HA tests. The load
of the one-host battery runs against them (the same schedules, sensors with run keys, limits), the
API clients split between the two hosts' APIs. On top of the faults that make sense here (SIGKILL a
daemon or a worker, freeze a worker, terminate storms) the plan adds faults on the supervisors:

- ``partition``        cut a host's link (the leader more often than the standby) for 0.5-3 leases,
                       then heal it: the cut-off leader steps down on its renew deadline, the other
                       takes over once the lease expires, the healed one stands by
- ``kill_leader``      SIGKILL the leading supervisor; its service manager starts it again, as a
                       standby, 1-8 s later (retrying while it cannot start)
- ``stop_supervisor``  SIGSTOP a supervisor (the leader more often) for 1 s to 2.5 leases, then SIGCONT:
                       a leader frozen past its lease learns on waking that it lost it and stands by

Supervisor faults never overlap, and each is followed by a lease and some seconds of calm, so the
pair has a leader most of the time. Besides the one-host invariants that apply, one leader acts at a
time: every launch (a run attempt, stamped with the lease epoch it was made under and the database's
time) and every tick must land before a later epoch was seen (``launches_after_deposed``).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psutil

from dagd.processes import daemon_name
from dagd.storage.leases import SUPERVISOR_LEASE
from helpers import netns
from helpers.chaos.deployment import (
    DAEMON_NAMES,
    DEFS_FILE,
    FINISHED,
    RunRow,
    StorageView,
    instance_config,
    markers_by_run,
    same_process,
    send,
)
from helpers.chaos.faults import STORMS, Fault, FaultLoop
from helpers.chaos.invariants import launches_after_deposed
from helpers.chaos.load import ApiClient, Ledger, stop_all
from helpers.chaos.report import FaultLog, Violations
from helpers.chaos.sampler import Sampler
from helpers.chaos.scenario import ChaosSettings, Scenario
from helpers.ha import role, start_on, two_test_hosts
from helpers.procs import assert_no_leftovers, dagctl, wait_for

TTL = 6.0  # the lease, as the HA tests use; the leader steps down 2/3 of it after its last renewal
CALM_SECONDS = (3.0, 8.0)  # after a supervisor fault and a lease, before the next one
MEAN_GAP_SECONDS = 2.5
LIGHT_WEIGHTS = {"kill_daemon": 3, "kill_worker": 3, "freeze_worker": 1, "terminate_storm": 1}
SUPERVISOR_FAULTS = ("partition", "kill_leader", "stop_supervisor")
RESTART_DEADLINE = 120.0


def make_two_host_plan(seed: int, seconds: float) -> list[Fault]:
    """The faults of one two-host run, in time order (pure: the same seed, the same plan).

    Supervisor faults one after the other: each kind once first (the leader killed, then a
    partition and a frozen supervisor in a random order: all three within 60 s), then at random; a target of ``leader`` or ``standby`` is resolved when the fault happens. Light faults
    come on top at exponential gaps."""
    rng = random.Random(seed)

    def target() -> str:
        return rng.choices(("leader", "standby"), (2, 1))[0]

    def supervisor_fault(at: float, kind: str) -> Fault:
        if kind == "partition":
            return Fault(at, kind, rng.uniform(TTL / 2, 3 * TTL), target())
        if kind == "kill_leader":
            return Fault(at, kind, rng.uniform(1, 8), "leader")
        return Fault(at, kind, rng.uniform(1, 2.5 * TTL), target())

    plan: list[Fault] = []
    at = rng.uniform(2, 5)
    # The leader killed first, then the other two in a random order: all three fit in 60 s.
    kinds = ["kill_leader", *rng.sample(("partition", "stop_supervisor"), 2)]
    while at < seconds:
        kind = kinds.pop(0) if kinds else rng.choice(SUPERVISOR_FAULTS)
        fault = supervisor_fault(at, kind)
        plan.append(fault)
        at += fault.duration + TTL + rng.uniform(*CALM_SECONDS)
    light = list(LIGHT_WEIGHTS)
    at = rng.expovariate(1 / MEAN_GAP_SECONDS)
    while at < seconds:
        kind = rng.choices(light, [LIGHT_WEIGHTS[k] for k in light])[0]
        if kind == "kill_daemon":
            plan.append(Fault(at, kind, target=rng.choice(DAEMON_NAMES)))
        elif kind == "freeze_worker":
            plan.append(Fault(at, kind, rng.uniform(1, 12)))
        elif kind == "terminate_storm":
            plan.append(Fault(at, kind, target=rng.choice(("hosta", "hostb")), storm=rng.choice(STORMS)))
        else:
            plan.append(Fault(at, kind))
        at += rng.expovariate(1 / MEAN_GAP_SECONDS)
    return sorted(plan, key=lambda f: f.at)


class Through:
    """What a load client needs of a deployment: the home whose API it submits through."""

    def __init__(self, home: pathlib.Path) -> None:
        self.home = home


class TwoHostDeployment:
    """Two supervisors on two test hosts, one PostgreSQL; the referee reads it directly."""

    backend = "two-hosts"

    def __init__(self, stack: contextlib.ExitStack, tmp_path: pathlib.Path, pg_url: str) -> None:
        self.hosts, self.procs = two_test_hosts(stack, tmp_path, pg_url, instance_config("", lease_ttl=TTL))
        self.names = [h.name for h in self.hosts]
        self.home = self.procs[0].home  # for commands that any supervisor answers (sensors stop)
        self.markers = tmp_path / "markers"
        self.markers.mkdir()
        self.env = {"DAGD_CHAOS_MARKERS": str(self.markers)}
        self.view = StorageView(pg_url)
        stack.callback(self.view.dispose)
        self.cut: set[int] = set()

    def start(self, index: int, *, standby: bool) -> None:
        start_on(
            self.hosts[index], self.procs[index], DEFS_FILE, standby=standby, wait_healthy=False, env=self.env
        )

    def running(self, index: int) -> bool:
        proc = self.procs[index].proc
        return proc is not None and proc.poll() is None

    def roles(self, timeout: float = 1.0) -> list[str | None]:
        return [role(p, timeout) if self.running(i) else None for i, p in enumerate(self.procs)]

    def leader(self) -> int | None:
        leaders = [i for i, r in enumerate(self.roles()) if r == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def status(self, timeout: float = 1.0) -> dict[str, Any]:
        """``daemons status`` from the leader (the one whose daemons run)."""
        index = self.leader()
        if index is None:
            raise RuntimeError("no single leader")
        return self.procs[index].status()

    @property
    def homes(self) -> list[pathlib.Path]:
        return [p.home for p in self.procs]

    @property
    def supervisor_pids(self) -> set[int]:
        return {p.proc.pid for p in self.procs if p.proc is not None and p.proc.poll() is None}

    def daemon_pids(self, index: int) -> dict[str, int]:
        found: dict[str, int] = {}
        proc = self.procs[index].proc
        if proc is None or proc.poll() is not None:
            return found
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    name = daemon_name(child.cmdline())
                    if name in DAEMON_NAMES:
                        found[name] = child.pid
        return found

    def markers_by_run(self) -> dict[str, list[int]]:
        return markers_by_run(self.markers)

    def supervisor_logs(self) -> str:
        return "\n".join(p.log_path.read_text() for p in self.procs)

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {n} ---\n{p.log()[-2000:]}" for n, p in zip(self.names, self.procs, strict=True)
        )

    def stop(self) -> list[int | None]:
        codes: list[int | None] = []
        for proc in self.procs:
            if proc.proc is None or proc.proc.poll() is not None:
                codes.append(None)
                continue
            send(proc.proc.pid, signal.SIGCONT)
            proc.signal(signal.SIGTERM)
            codes.append(proc.wait_exit(60))
        return codes


class LeaseWatch:
    """Each lease epoch the referee saw, with the database's time it first saw it."""

    def __init__(self) -> None:
        self.first_seen: dict[int, datetime] = {}

    def look(self, view: StorageView) -> None:
        seen = view.lease(SUPERVISOR_LEASE)
        if seen is not None:
            self.first_seen.setdefault(seen[0], seen[1])


class TwoHostSampler(Sampler):
    def __init__(self, deployment: TwoHostDeployment, ledger: Ledger, violations: Violations) -> None:
        super().__init__(deployment, ledger, violations, windows=None)  # type: ignore[arg-type]
        self.leases = LeaseWatch()

    def sample(self) -> None:
        self.leases.look(self.deployment.view)
        super().sample()

    def slow_checks(self) -> None:
        super().slow_checks()
        self.add(
            "one leader acts at a time",
            launches_after_deposed(self.deployment.view.launches(), self.leases.first_seen),
        )


class TwoHostInjector(FaultLoop):
    """Carries out the plan; ``finish()`` heals, thaws and restarts, and waits for one leader."""

    def __init__(
        self,
        deployment: TwoHostDeployment,
        plan: list[Fault],
        seed: int,
        log: FaultLog,
        violations: Violations,
    ) -> None:
        super().__init__(plan, seed, log, violations)
        self.deployment = deployment
        self._helpers: list[threading.Thread] = []
        self.last_leader = 0

    def _apply(self, fault: Fault) -> None:
        try:
            getattr(self, f"_{fault.kind}")(fault)
        except Exception as exc:
            self.log.add("error", f"{fault.kind}: {exc!r}")

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        self._helpers.append(thread)
        thread.start()

    def finish(self) -> None:
        """Stop injecting; heal, SIGCONT and restart now; wait until exactly one supervisor leads."""
        self.stopping.set()
        if self.is_alive():
            self.join(10)
        self._run_pending(time.monotonic(), everything=True)
        for thread in self._helpers:
            thread.join(RESTART_DEADLINE + 30)
        self._helpers = []

    def _resolve(self, target: str) -> int:
        """The host index of ``leader`` or ``standby`` now (the last leader seen, while nobody leads)."""
        leader = self.deployment.leader()
        if leader is not None:
            self.last_leader = leader
        return self.last_leader if target == "leader" else 1 - self.last_leader

    # -- supervisor faults -----------------------------------------------------------------------

    def _partition(self, fault: Fault) -> None:
        index = self._resolve(fault.target)
        host = self.deployment.hosts[index]
        host.cut()
        self.deployment.cut.add(index)
        self.log.add("partition", f"cut {host.name} ({fault.target}) for {fault.duration:.1f}s")

        def heal() -> None:
            host.heal()
            self.deployment.cut.discard(index)
            self.log.add("partition", f"healed {host.name}", injected=False)

        self._later(fault.duration, f"partition of {host.name}", heal)

    def _kill_leader(self, fault: Fault) -> None:
        index = self._resolve("leader")
        proc = self.deployment.procs[index]
        if proc.proc is None or proc.proc.poll() is not None:
            self.log.add("kill_leader", f"{self.deployment.names[index]}: no supervisor running")
            return
        # ``ip netns exec``, ``unshare`` and ``sh -c 'exec ...'`` each exec the next: one process.
        # Its daemons follow it (their stdin closes); the workers of its runs live on.
        send(proc.proc.pid, signal.SIGKILL)
        self.log.add(
            "kill_leader", f"SIGKILL {self.deployment.names[index]}'s supervisor (pid {proc.proc.pid})"
        )
        self._spawn(lambda: self._restart(index, fault.duration))

    def _restart(self, index: int, after: float) -> None:
        """As a service manager would: start it again (a standby) until it answers."""
        proc = self.deployment.procs[index]
        proc.wait_exit(30)
        time.sleep(after)
        began = time.monotonic()
        attempts = 0
        while time.monotonic() - began < RESTART_DEADLINE:
            attempts += 1
            self.deployment.start(index, standby=True)
            while time.monotonic() - began < RESTART_DEADLINE:
                if role(proc, 2.0) is not None:
                    self.log.add(
                        "kill_leader",
                        f"{self.deployment.names[index]} answering {time.monotonic() - began:.1f}s after "
                        f"its restart (start #{attempts})",
                        injected=False,
                    )
                    return
                if proc.proc is not None and proc.proc.poll() is not None:
                    tail = proc.log().strip().splitlines()[-1:]
                    self.log.add("kill_leader", f"restart #{attempts} exited: {tail}", injected=False)
                    time.sleep(1.0)
                    break
                time.sleep(0.1)
        self.violations.add("supervisor restarts", f"not answering {RESTART_DEADLINE:.0f}s after a restart")

    def _stop_supervisor(self, fault: Fault) -> None:
        index = self._resolve(fault.target)
        proc = self.deployment.procs[index].proc
        pid = proc.pid if proc is not None and proc.poll() is None else None
        if pid is None:
            self.log.add("stop_supervisor", f"{self.deployment.names[index]}: no supervisor running")
            return
        send(pid, signal.SIGSTOP)
        name = self.deployment.names[index]
        self.log.add(
            "stop_supervisor",
            f"SIGSTOP {name}'s supervisor ({fault.target}, pid {pid}) for {fault.duration:.1f}s",
        )

        def thaw() -> None:
            if send(pid, signal.SIGCONT):
                self.log.add("stop_supervisor", f"SIGCONT {name}'s supervisor", injected=False)

        self._later(fault.duration, f"SIGSTOP of {name}", thaw)

    # -- light faults ----------------------------------------------------------------------------

    def _kill_daemon(self, fault: Fault) -> None:
        index = self._resolve("leader")
        pids = self.deployment.daemon_pids(index)
        name = fault.target if fault.target in pids else (min(pids) if pids else None)
        if name is None:
            self.log.add("kill_daemon", "no daemon running")
            return
        send(pids[name], signal.SIGKILL)
        self.log.add("kill_daemon", f"SIGKILL {name} (pid {pids[name]}) on {self.deployment.names[index]}")

    def _running_run(self, kind: str) -> RunRow | None:
        running = [r for r in self.deployment.view.runs(("STARTED",)) if r.worker_pid]
        running = [r for r in running if same_process(r.worker_pid or 0, r.worker_started_at)]
        if not running:
            self.log.add(kind, "no run in progress")
            return None
        return self.rng.choice(sorted(running, key=lambda r: r.run_id))

    def _kill_worker(self, fault: Fault) -> None:
        run = self._running_run("kill_worker")
        if run is not None:
            send(run.worker_pid or 0, signal.SIGKILL)
            self.log.add("kill_worker", f"SIGKILL worker pid {run.worker_pid} of run {run.run_id}")

    def _freeze_worker(self, fault: Fault) -> None:
        run = self._running_run("freeze_worker")
        if run is None:
            return
        pid = run.worker_pid or 0
        send(pid, signal.SIGSTOP)
        self.log.add(
            "freeze_worker", f"SIGSTOP worker pid {pid} of run {run.run_id} for {fault.duration:.1f}s"
        )
        self._later(fault.duration, f"SIGSTOP of worker {pid}", lambda: send(pid, signal.SIGCONT) and None)

    def _terminate_storm(self, fault: Fault) -> None:
        index = self.deployment.names.index(fault.target)

        def storm() -> None:
            home = self.deployment.procs[index].home
            try:
                result = dagctl(home, "runs", "terminate", *fault.storm, "--json", timeout=60)
            except subprocess.TimeoutExpired:
                self.log.add("terminate_storm", f"through {fault.target}: no answer in 60 s")
                return
            self.log.add(
                "terminate_storm", f"through {fault.target} {' '.join(fault.storm)}: exit {result.code}"
            )
            if "internal error" in result.stderr:
                self.violations.add("no internal error", f"runs terminate: {result.stderr.strip()}")
            if result.code != 0 and (
                len(result.stderr.strip().splitlines()) != 1 or "Traceback" in result.stderr
            ):
                self.violations.add("dagctl errors are one line", f"runs terminate: {result.stderr[-2000:]}")

        self._spawn(storm)


class TwoHostScenario(Scenario):
    """One two-host chaos run: the one-host scenario's load, recovery and verdict, two supervisors."""

    deployment: TwoHostDeployment  # type: ignore[assignment]

    def run(self) -> None:
        deployment, settings = self.deployment, self.settings
        deployment.start(0, standby=False)
        wait_for(lambda: deployment.roles()[0] == "leader", 60, f"{deployment.names[0]} to lead")
        deployment.start(1, standby=True)
        wait_for(lambda: deployment.roles()[1] == "standby", 60, f"{deployment.names[1]} to stand by")
        self._wait_healthy(60, "every daemon healthy after the first start")
        sampler = TwoHostSampler(deployment, self.ledger, self.violations)
        clients = [
            ApiClient(
                f"api{i}",
                Through(deployment.homes[i % 2]),
                self.ledger,
                self.violations,
                settings.seed + 10 + i,
            )  # type: ignore[arg-type]
            for i in range(settings.api_clients)
        ]
        plan = make_two_host_plan(settings.seed, settings.seconds)
        injector = TwoHostInjector(deployment, plan, settings.seed, self.log, self.violations)
        try:
            sampler.start()
            for client in clients:
                client.start()
            injector.start()
            self._fault_phase(injector)  # type: ignore[arg-type]
            injector.finish()
            stop_all(clients)  # type: ignore[arg-type]
            self._one_leader()
            self._recover()
            self.final_checks(sampler)
            self.add_lease_checks(sampler)
        finally:
            injector.finish()
            stop_all(clients)  # type: ignore[arg-type]
            sampler.stopping.set()
            sampler.join(30)
            for name, code in zip(deployment.names, deployment.stop(), strict=True):
                if code not in (0, None):
                    self.violations.add("supervisor stops cleanly", f"{name}: exit code {code}")
            for home in deployment.homes:
                try:
                    assert_no_leftovers(home, timeout=30)
                except AssertionError as exc:
                    self.violations.add("no orphan process", f"after the supervisors stopped: {exc}")
            faults_file = deployment.home.parent.parent / "chaos-faults.log"
            faults_file.write_text("\n".join(self.log.lines()) + "\n")
            self.notes += [
                f"faults: {self.log.counts} (all of them: {faults_file})",
                f"lease epochs seen: {sorted(sampler.leases.first_seen)}",
                f"submissions: {len(self.ledger.all())} acknowledged of {self.ledger.attempts} attempts "
                f"({self.ledger.retries} retries); failed attempts: {self.ledger.errors}",
                f"sampler: {sampler.samples} samples, max {sampler.max_in_progress} runs in progress, "
                f"{len(sampler.read_errors)} read errors {sampler.read_errors[:3]}",
            ]

    def _one_leader(self) -> None:
        """After the faults: exactly one leader, the other standing by, in the lease and some."""
        try:
            wait_for(
                lambda: sorted(str(r) for r in self.deployment.roles()) == ["leader", "standby"],
                TTL * 3 + 60,
                "exactly one leader and one standby once the faults end",
                interval=0.5,
            )
        except AssertionError as exc:
            self.violations.add("recovers once faults stop", f"{exc}: roles {self.deployment.roles()}")

    def add_lease_checks(self, sampler: TwoHostSampler) -> None:
        sampler.leases.look(self.deployment.view)
        if len(sampler.leases.first_seen) < 2:
            # Every plan kills the leader once: without a takeover the leader check judged nothing.
            sampler.add(
                "the faults took effect", [f"no takeover: epochs seen {sorted(sampler.leases.first_seen)}"]
            )
        sampler.add(
            "one leader acts at a time",
            launches_after_deposed(self.deployment.view.launches(), sampler.leases.first_seen),
        )
        runs = self.deployment.view.runs()
        self.notes.append(f"unfinished runs at the end: {sum(1 for r in runs if r.status not in FINISHED)}")


def run_two_hosts(tmp_path: pathlib.Path, pg_url: str, settings: ChaosSettings) -> TwoHostScenario:
    """Set up the two test hosts, run the scenario, tear everything down (hosts included)."""
    with contextlib.ExitStack() as stack:
        deployment = TwoHostDeployment(stack, tmp_path, pg_url)
        scenario = TwoHostScenario(deployment, settings)  # type: ignore[arg-type]
        scenario.run()
    leftover = netns.ours(os.getpid())
    if leftover:
        scenario.violations.add("nothing left behind", f"test hosts outlived the run: {leftover}")
    return scenario
