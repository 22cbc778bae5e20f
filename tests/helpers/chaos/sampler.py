"""The continuous checks: a sampler thread, the ``daemons status`` prober and a ``dagctl`` checker.

Every ``SAMPLE_SECONDS`` the sampler reads the runs in progress (one consistent read) and checks
the limits at that instant, and checks that every submission acknowledged since the last sample
exists. Less often it looks for doubled sensor run keys, replays the whole event history against
the limits and the launch-once rule, and looks for orphan processes.

An orphan is a process of this instance that nobody owns: not the supervisor or one of its
descendants, not a client the test started, and not the worker of a run that storage says is in
progress. A process is only called an orphan once it has stayed one for ``ORPHAN_GRACE_SECONDS``
(a daemon of a killed supervisor needs a moment to see its stdin close; a finished worker a
moment to exit).

The prober's samples are judged as they arrive: each must answer, within ``STATUS_BOUND_SECONDS``,
unless it overlaps a window in which the test itself had killed the supervisor.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from typing import IO

import psutil

from dagd.processes import role_of
from helpers.chaos.deployment import IN_PROGRESS, LIMITS, Deployment
from helpers.chaos.faults import DownWindows
from helpers.chaos.invariants import (
    doubled_run_keys,
    launched_twice,
    missing_acks,
    over_limits,
    replay_limits,
)
from helpers.chaos.load import Ledger
from helpers.chaos.report import Violations
from helpers.procs import dagctl

SAMPLE_SECONDS = 0.5
SLOW_CHECK_SECONDS = 5.0
ORPHAN_GRACE_SECONDS = 20.0
MAX_OUTAGE_SECONDS = 30.0  # the longest db_outage the fault plan makes (faults.py)
STATUS_BOUND_SECONDS = 1.0
PROBER = pathlib.Path(__file__).with_name("prober.py")


class Sampler(threading.Thread):
    def __init__(
        self, deployment: Deployment, ledger: Ledger, violations: Violations, windows: DownWindows
    ) -> None:
        super().__init__(name="chaos-sampler", daemon=True)
        self.deployment = deployment
        self.ledger = ledger
        self.violations = violations
        self.windows = windows
        self.stopping = threading.Event()
        self.samples = 0
        self.max_in_progress = 0
        self.read_errors: list[str] = []
        self._suspects: dict[tuple[int, float], tuple[float, str]] = {}
        self._reported: set[tuple[int, float]] = set()
        self._seen_violations: set[str] = set()
        self.probe: StatusProbe | None = None

    def run(self) -> None:
        last_slow = 0.0
        while not self.stopping.wait(SAMPLE_SECONDS):
            try:
                self.sample()
                if time.monotonic() - last_slow >= SLOW_CHECK_SECONDS:
                    last_slow = time.monotonic()
                    self.slow_checks()
            except Exception as exc:  # the referee's own read failed: note it, try again
                self.read_errors.append(f"{type(exc).__name__}: {exc}"[:300])

    def add(self, invariant: str, problems: list[str]) -> None:
        for problem in problems:
            if problem not in self._seen_violations:  # history checks repeat what they found
                self._seen_violations.add(problem)
                self.violations.add(invariant, problem)

    def sample(self) -> None:
        if self.probe is not None:
            self.probe.judge()
        view = self.deployment.view
        in_progress = {r.run_id: r.tags for r in view.runs(IN_PROGRESS)}
        self.samples += 1
        self.max_in_progress = max(self.max_in_progress, len(in_progress))
        self.add("concurrency limit (live)", over_limits(in_progress, LIMITS))
        acks = self.ledger.unchecked()
        if acks:
            self.add(
                "acknowledged submission exists", missing_acks(acks, view.existing(a.run_id for a in acks))
            )

    def slow_checks(self) -> None:
        view = self.deployment.view
        runs = view.runs()
        self.add("sensor run_key not doubled", doubled_run_keys(runs))
        events = view.status_events()
        self.add("no run launched twice", launched_twice(events, self.deployment.markers_by_run()))
        self.add(
            "concurrency limit (history)", replay_limits(events, {r.run_id: r.tags for r in runs}, LIMITS)
        )
        self.check_orphans()

    def check_orphans(self) -> None:
        now = time.monotonic()
        found = instance_processes(self.deployment.home)
        owned = _test_descendants()
        supervisor = self.deployment.supervisor_pid
        # Read after the scan: a worker seen above has its run recorded by now if it ever will.
        workers = {r.worker_pid for r in self.deployment.view.runs(IN_PROGRESS) if r.worker_pid}
        workers |= self.deployment.view.attempt_pids()
        current: set[tuple[int, float]] = set()
        for proc, cmd in found:
            try:
                role = _role(proc, cmd)
                key = (proc.pid, proc.create_time())
            except psutil.Error:
                continue
            detail = f"{role} pid {proc.pid} (parent {_ppid(proc)}): {cmd[:200]}"
            if role == "worker":
                # A worker of a run in progress, or that worker's job (a child process of its own).
                if proc.pid in workers or _ppid(proc) in workers:
                    continue
            elif proc.pid == supervisor or proc.pid in owned:
                continue
            current.add(key)
            first, _ = self._suspects.setdefault(key, (now, detail))
            # A worker not yet recorded anywhere is waiting to claim its attempt: through a database
            # outage (at most MAX_OUTAGE_SECONDS), that wait is as long as the outage.
            grace = ORPHAN_GRACE_SECONDS + (MAX_OUTAGE_SECONDS if role == "worker" else 0.0)
            if now - first >= grace and key not in self._reported:
                self._reported.add(key)
                self.violations.add(
                    "no orphan process", f"{self._suspects[key][1]} unowned for {now - first:.0f}s"
                )
        self._suspects = {k: v for k, v in self._suspects.items() if k in current}


def instance_processes(home: pathlib.Path) -> list[tuple[psutil.Process, str]]:
    """Live processes whose command line or DAGD_HOME names ``home``, with their command lines."""
    needle = str(home)
    out = []
    for proc in psutil.process_iter(["cmdline", "environ", "status"]):
        try:
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            if needle in cmd or (proc.info.get("environ") or {}).get("DAGD_HOME") == needle:
                out.append((proc, cmd))
        except psutil.Error:
            continue
    return out


def _test_descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _ppid(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.Error:
        return None


def _role(proc: psutil.Process, cmd: str) -> str:
    parent_cmd: list[str] = []
    if "dagd.runs.local.forkserver" in cmd:  # the fork server, or a worker it forked (no title yet)
        parent = proc.parent()
        parent_cmd = parent.cmdline() if parent is not None else []
    return role_of(cmd.split(), parent_cmd)


class StatusProbe:
    """The prober process, and the judgement of its samples as they arrive."""

    def __init__(
        self, home: pathlib.Path, out: pathlib.Path, violations: Violations, windows: DownWindows
    ) -> None:
        self.out = out
        self.violations = violations
        self.windows = windows
        self.latencies: list[float] = []
        self.excused = 0
        self._offset = 0
        env = {**os.environ, "DAGD_HOME": str(home)}
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            [sys.executable, str(PROBER), str(home), str(out), "0.25"], stdin=subprocess.PIPE, env=env
        )

    def judge(self) -> None:
        """Judge the samples written since the last call.

        A window opens before the supervisor is killed, and a sample is read only after it was
        written, so every window that can excuse a sample is known by the time it is judged.
        """
        try:
            with open(self.out) as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind("\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            sample = json.loads(line)
            start = sample["t"]
            if self.windows.overlaps(start, start + sample["latency"]):
                self.excused += 1
            elif not sample["ok"]:
                self.violations.add(
                    "daemons status answers",
                    f"sample at t+{start - self.violations.started:.1f}s: {sample['error']}",
                )
            else:
                self.latencies.append(sample["latency"])
                if sample["latency"] > STATUS_BOUND_SECONDS:
                    self.violations.add(
                        "daemons status within 1 s",
                        f"answered in {sample['latency']:.2f}s (sample at t+{start - self.violations.started:.1f}s)",
                    )

    def stop(self) -> None:
        stdin: IO[bytes] | None = self.proc.stdin
        if stdin is not None:
            stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.judge()

    def summary(self) -> str:
        if not self.latencies:
            return "no status samples"
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"{len(ordered)} status samples judged ({self.excused} excused: supervisor killed), "
            f"p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"
        )


class CliStatusChecker(threading.Thread):
    """Runs the real ``dagctl daemons status --json`` now and then: exit 0 or 3, never 4 or a hang.

    Its wall time includes a Python start-up (most of a second on a busy machine), so it is held to
    the exit code and to answering at all; the 1 s bound applies to the prober's samples.
    """

    def __init__(self, home: pathlib.Path, violations: Violations, windows: DownWindows) -> None:
        super().__init__(name="chaos-dagctl-status", daemon=True)
        self.home = home
        self.violations = violations
        self.windows = windows
        self.stopping = threading.Event()
        self.calls = 0
        self.slowest = 0.0

    def run(self) -> None:
        while not self.stopping.wait(3.0):
            started = time.monotonic()
            try:
                result = dagctl(self.home, "daemons", "status", "--json", timeout=30)
            except subprocess.TimeoutExpired:
                if not self.windows.overlaps(started, time.monotonic()):
                    self.violations.add("dagctl daemons status answers", "no answer within 30 s")
                continue
            ended = time.monotonic()
            self.calls += 1
            self.slowest = max(self.slowest, ended - started)
            if result.code in (0, 3):
                try:
                    json.loads(result.stdout)["daemons"]
                except (ValueError, KeyError) as exc:
                    self.violations.add(
                        "dagctl daemons status answers", f"bad JSON ({exc}): {result.stdout[:300]}"
                    )
            elif not self.windows.overlaps(started, ended):
                self.violations.add(
                    "dagctl daemons status answers", f"exit {result.code}: {result.stderr.strip()[:300]}"
                )
