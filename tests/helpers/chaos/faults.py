"""The seeded fault plan and the injector that carries it out against a live deployment.

The plan is a pure function of the seed and the duration: every kind of fault at least once, plus
more at random (exponential gaps), with a killed supervisor at most every ``SUPERVISOR_SPACING``
seconds and never two database outages at once. The same seed gives the same plan; what a fault
hits at run time (which worker is running, which daemon pid) depends on timing, so a replay is
the same storm, not the same interleaving.

Faults:

- ``kill_daemon``      SIGKILL one daemon
- ``stop_daemon``      SIGSTOP one daemon, SIGCONT after 1-10 s (past the hang timeout of 8 s the
                       supervisor kills and replaces it first)
- ``kill_worker``      SIGKILL the worker of a running run
- ``freeze_worker``    SIGSTOP the worker of a running run, SIGCONT after 1-12 s (past the worker
                       heartbeat timeout of 5 s its job fences itself and run monitoring fails the
                       run; the thawed worker must then write nothing)
- ``kill_supervisor``  SIGKILL the supervisor, then start it again (as systemd would), retrying while
                       it cannot start (e.g. the database is down); ``daemons status`` is excused
                       from the kill until the new supervisor answers
- ``db_outage``        PostgreSQL unreachable through the proxy for 5-30 s, either refused
                       (connections cut, new ones refused) or stalled (connections stay open, new
                       ones are accepted, nothing gets through: a frozen or partitioned server)
- ``db_lock``          SQLite: another connection holds the write lock for 1-4 s
- ``terminate_storm``  ``dagctl runs terminate --status ...`` (queued, running, by tag, by job)
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from helpers.chaos.deployment import DAEMON_NAMES, Deployment, RunRow, same_process, send
from helpers.chaos.report import FaultLog, Violations
from helpers.procs import dagctl

MEAN_GAP_SECONDS = 2.5
SUPERVISOR_SPACING = 20.0
OUTAGE_SPACING = 10.0
RESTART_DEADLINE = 120.0
STORMS: tuple[tuple[str, ...], ...] = (
    ("--status", "QUEUED"),
    ("--status", "QUEUED", "--tag", "tenant=a"),
    ("--status", "STARTED", "--tag", "db=warehouse"),
    ("--status", "QUEUED", "--status", "STARTING", "--status", "STARTED", "--tag", "lane=x"),
)
WEIGHTS = {
    "kill_daemon": 4,
    "stop_daemon": 2,
    "kill_worker": 4,
    "freeze_worker": 2,
    "terminate_storm": 2,
    "kill_supervisor": 1,
    "db_outage": 1,
    "db_lock": 1,
}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the fault phase began
    kind: str
    duration: float = 0.0
    target: str = ""
    storm: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [self.target, f"{self.duration:.1f}s" if self.duration else "", " ".join(self.storm)]
        return " ".join(p for p in parts if p)


def make_plan(seed: int, seconds: float, backend: str) -> list[Fault]:
    """The faults of one run, in time order (pure: the same seed, the same plan)."""
    rng = random.Random(seed)
    storage_fault = "db_outage" if backend == "postgres" else "db_lock"
    kinds = [k for k in WEIGHTS if k not in ("db_outage", "db_lock") or k == storage_fault]
    weights = [WEIGHTS[k] for k in kinds]

    def fault(at: float, kind: str) -> Fault:
        if kind == "stop_daemon":
            return Fault(at, kind, rng.uniform(1, 10), rng.choice(DAEMON_NAMES))
        if kind == "freeze_worker":
            return Fault(at, kind, rng.uniform(1, 12))
        if kind == "kill_daemon":
            return Fault(at, kind, target=rng.choice(DAEMON_NAMES))
        if kind == "db_outage":
            return Fault(at, kind, rng.uniform(5, 30), rng.choice(("refused", "stalled")))
        if kind == "db_lock":
            return Fault(at, kind, rng.uniform(1, 4))
        if kind == "terminate_storm":
            return Fault(at, kind, storm=rng.choice(STORMS))
        return Fault(at, kind)

    def clashes(item: Fault, kept: list[Fault]) -> bool:
        if item.kind == "kill_supervisor":
            return any(k.kind == item.kind and abs(k.at - item.at) < SUPERVISOR_SPACING for k in kept)
        if item.kind == storage_fault:  # never two at once, and some time to recover in between
            return any(
                k.kind == item.kind
                and item.at < k.at + k.duration + OUTAGE_SPACING
                and k.at < item.at + item.duration + OUTAGE_SPACING
                for k in kept
            )
        return False

    # One of each kind over the first 80% of the run (on PostgreSQL an outage of each mode, one
    # after the other), then the random rest around them.
    guaranteed = [fault(rng.uniform(0.05, 0.8) * seconds, kind) for kind in kinds if kind != "db_outage"]
    if backend == "postgres":
        first_mode, second_mode = rng.sample(("refused", "stalled"), 2)
        first = Fault(rng.uniform(0.05, 0.3) * seconds, "db_outage", rng.uniform(5, 30), first_mode)
        second_at = first.at + first.duration + OUTAGE_SPACING + rng.uniform(0, 5)
        guaranteed += [first, Fault(second_at, "db_outage", rng.uniform(5, 30), second_mode)]
    extra = []
    at = rng.expovariate(1 / MEAN_GAP_SECONDS)
    while at < seconds:
        extra.append(fault(at, rng.choices(kinds, weights)[0]))
        at += rng.expovariate(1 / MEAN_GAP_SECONDS)
    kept: list[Fault] = []
    for item in sorted(guaranteed, key=lambda f: f.at) + extra:
        if not clashes(item, kept):
            kept.append(item)
    return sorted(kept, key=lambda f: f.at)


class DownWindows:
    """Intervals (monotonic seconds) in which the test had the supervisor killed and not yet back."""

    def __init__(self) -> None:
        self._windows: list[list[float | None]] = []
        self._lock = threading.Lock()

    def open(self) -> int:
        with self._lock:
            self._windows.append([time.monotonic(), None])
            return len(self._windows) - 1

    def close(self, index: int) -> None:
        with self._lock:
            self._windows[index][1] = time.monotonic()

    def overlaps(self, start: float, end: float) -> bool:
        with self._lock:
            return any(
                w_start is not None and w_start <= end and (w_end is None or w_end >= start)
                for w_start, w_end in self._windows
            )

    def durations(self) -> list[float]:
        with self._lock:
            return [
                w_end - w_start
                for w_start, w_end in self._windows
                if w_start is not None and w_end is not None
            ]


class FaultLoop(threading.Thread):
    """The injectors' common loop: apply each planned fault when its time comes (``_apply``), and
    run the actions that end faults (``_later``) when theirs does; ``_run_pending(everything=True)``
    ends them all at once."""

    def __init__(self, plan: list[Fault], seed: int, log: FaultLog, violations: Violations) -> None:
        super().__init__(name="chaos-injector", daemon=True)
        self.plan = plan
        self.rng = random.Random(seed + 1)
        self.log = log
        self.violations = violations
        self.stopping = threading.Event()
        self._pending: list[tuple[float, str, Callable[[], None]]] = []
        self._lock = threading.Lock()
        self.started = 0.0

    def _apply(self, fault: Fault) -> None:
        raise NotImplementedError  # each injector's faults

    def run(self) -> None:
        self.started = time.monotonic()
        todo = list(self.plan)
        while not self.stopping.is_set():
            now = time.monotonic()
            self._run_pending(now)
            while todo and self.started + todo[0].at <= now:
                self._apply(todo.pop(0))
            self.stopping.wait(0.05)

    def _run_pending(self, now: float, everything: bool = False) -> None:
        with self._lock:
            due = [p for p in self._pending if everything or p[0] <= now]
            self._pending = [p for p in self._pending if p not in due]
        for _, label, action in sorted(due, key=lambda p: p[0]):
            try:
                action()
            except Exception as exc:
                self.log.add("error", f"ending {label}: {exc!r}")

    def _later(self, seconds: float, label: str, action: Callable[[], None]) -> None:
        with self._lock:
            self._pending.append((time.monotonic() + seconds, label, action))


class FaultInjector(FaultLoop):
    """Carries out the plan; ``finish()`` ends every fault in progress and brings the supervisor back."""

    def __init__(
        self,
        deployment: Deployment,
        plan: list[Fault],
        seed: int,
        log: FaultLog,
        violations: Violations,
        windows: DownWindows,
    ) -> None:
        super().__init__(plan, seed, log, violations)
        self.deployment = deployment
        self.windows = windows
        self._restarter: threading.Thread | None = None
        self._storms: list[threading.Thread] = []

    def finish(self) -> None:
        """Stop injecting; SIGCONT, reconnect and unlock now; wait until the supervisor answers."""
        self.stopping.set()
        if self.is_alive():
            self.join(10)
        self._run_pending(time.monotonic(), everything=True)
        for storm in self._storms:
            storm.join(60)
        if self._restarter is not None:
            self._restarter.join(RESTART_DEADLINE + 30)

    @property
    def restarting(self) -> bool:
        return self._restarter is not None and self._restarter.is_alive()

    def _apply(self, fault: Fault) -> None:
        if self.restarting and fault.kind in ("kill_supervisor", "kill_daemon", "stop_daemon"):
            self.log.add(fault.kind, "skipped: the supervisor is being restarted")
            return
        getattr(self, f"_{fault.kind}")(fault)

    # -- the faults ------------------------------------------------------------------------------

    def _daemon_pid(self, name: str) -> tuple[str, int] | None:
        pids = self.deployment.daemon_pids()
        if name in pids:
            return name, pids[name]
        return (min(pids), pids[min(pids)]) if pids else None

    def _kill_daemon(self, fault: Fault) -> None:
        found = self._daemon_pid(fault.target)
        if found is None:
            self.log.add("kill_daemon", "no daemon running")
            return
        send(found[1], signal.SIGKILL)
        self.log.add("kill_daemon", f"SIGKILL {found[0]} (pid {found[1]})")

    def _stop_daemon(self, fault: Fault) -> None:
        found = self._daemon_pid(fault.target)
        if found is None:
            self.log.add("stop_daemon", "no daemon running")
            return
        name, pid = found
        send(pid, signal.SIGSTOP)
        self.log.add("stop_daemon", f"SIGSTOP {name} (pid {pid}) for {fault.duration:.1f}s")
        self._later(fault.duration, f"SIGSTOP of {name}", lambda: self._resume(name, pid))

    def _resume(self, name: str, pid: int) -> None:
        if send(pid, signal.SIGCONT):
            self.log.add("stop_daemon", f"SIGCONT {name} (pid {pid})", injected=False)

    def _running_run(self, kind: str) -> RunRow | None:
        """A STARTED run whose recorded worker is alive, chosen by the seed's generator."""
        running = [r for r in self.deployment.view.runs(("STARTED",)) if r.worker_pid]
        running = [r for r in running if same_process(r.worker_pid or 0, r.worker_started_at)]
        if not running:
            self.log.add(kind, "no run in progress")
            return None
        return self.rng.choice(sorted(running, key=lambda r: r.run_id))

    def _kill_worker(self, fault: Fault) -> None:
        run = self._running_run("kill_worker")
        if run is None:
            return
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

        def thaw() -> None:
            if send(pid, signal.SIGCONT):
                self.log.add("freeze_worker", f"SIGCONT worker pid {pid}", injected=False)

        self._later(fault.duration, f"SIGSTOP of worker {pid}", thaw)

    def _kill_supervisor(self, fault: Fault) -> None:
        pid = self.deployment.supervisor_pid
        if pid is None:
            self.log.add("kill_supervisor", "no supervisor running")
            return
        window = self.windows.open()
        send(pid, signal.SIGKILL)
        self.log.add("kill_supervisor", f"SIGKILL supervisor pid {pid}")
        self._restarter = threading.Thread(
            target=self._restart, args=(window,), name="chaos-restart", daemon=True
        )
        self._restarter.start()

    def _restart(self, window: int) -> None:
        """Start the supervisor again until it answers; retried while it cannot start."""
        self.deployment.dagd.wait_exit(30)
        began = time.monotonic()
        attempts = 0
        while time.monotonic() - began < RESTART_DEADLINE:
            attempts += 1
            self.deployment.start()
            while time.monotonic() - began < RESTART_DEADLINE:
                if self.deployment.answering(2.0):
                    self.windows.close(window)
                    self.log.add(
                        "kill_supervisor",
                        f"supervisor answering {time.monotonic() - began:.1f}s later (start #{attempts})",
                        injected=False,
                    )
                    return
                if self.deployment.supervisor_exited():
                    tail = self.deployment.dagd.log().strip().splitlines()[-1:]
                    self.log.add("kill_supervisor", f"restart #{attempts} exited: {tail}", injected=False)
                    time.sleep(1.0)
                    break
                time.sleep(0.1)
        self.windows.close(window)
        self.violations.add("supervisor restarts", f"not answering {RESTART_DEADLINE:.0f}s after a restart")

    def _db_outage(self, fault: Fault) -> None:
        proxy = self.deployment.proxy
        assert proxy is not None
        if fault.target == "stalled":
            proxy.stall()
        else:
            proxy.outage()
        self.log.add("db_outage", f"PostgreSQL {fault.target} for {fault.duration:.1f}s")
        self._later(fault.duration, "database outage", lambda: self._restore(fault.target))

    def _restore(self, how: str) -> None:
        assert self.deployment.proxy is not None
        if how == "stalled":
            self.deployment.proxy.resume()
        else:
            self.deployment.proxy.restore()
        self.log.add("db_outage", "PostgreSQL reachable again", injected=False)

    def _db_lock(self, fault: Fault) -> None:
        path = self.deployment.home / "storage" / "dagd.db"
        conn = sqlite3.connect(str(path), timeout=10, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            conn.close()
            self.log.add("db_lock", f"could not take the write lock: {exc}")
            return
        self.log.add("db_lock", f"SQLite write lock held for {fault.duration:.1f}s")

        def release() -> None:
            conn.rollback()
            conn.close()
            self.log.add("db_lock", "SQLite write lock released", injected=False)

        self._later(fault.duration, "SQLite write lock", release)

    def _terminate_storm(self, fault: Fault) -> None:
        thread = threading.Thread(target=self._storm, args=(fault.storm,), name="chaos-storm", daemon=True)
        self._storms.append(thread)
        thread.start()

    def _storm(self, args: tuple[str, ...]) -> None:
        started = time.monotonic()
        try:
            result = dagctl(self.deployment.home, "runs", "terminate", *args, "--json", timeout=60)
        except subprocess.TimeoutExpired:
            self.violations.add(
                "terminate storms answer", f"runs terminate {' '.join(args)}: no answer in 60 s"
            )
            return
        if result.code == 0:
            answer = result.json()
            self.log.add(
                "terminate_storm",
                f"{' '.join(args)}: {len(answer['canceled'])} canceled, {len(answer['canceling'])} canceling",
                at=started,
            )
            return
        self.log.add(
            "terminate_storm", f"{' '.join(args)}: exit {result.code}: {result.stderr.strip()}", at=started
        )
        if "internal error" in result.stderr:
            self.violations.add(
                "no internal error", f"runs terminate {' '.join(args)}: {result.stderr.strip()}"
            )
        one_line = len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        if not one_line:
            self.violations.add("dagctl errors are one line", f"runs terminate: {result.stderr[-2000:]}")
        elif result.code == 4 and not self.windows.overlaps(started, time.monotonic()):
            self.violations.add(
                "dagctl exit codes", f"runs terminate: exit 4 with the supervisor up: {result.stderr.strip()}"
            )
        elif result.code not in (1, 4):  # 1: storage unavailable (an outage); 4: supervisor killed
            self.violations.add("terminate storms answer", f"exit {result.code}: {result.stderr.strip()}")
