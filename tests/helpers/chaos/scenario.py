"""One chaos run from start to verdict.

1. Start the deployment (``dagctl daemon run``) and wait until every daemon is healthy.
2. Start the referee (sampler, status prober, ``dagctl daemons status`` checker) and the load
   (API clients and a CLI client).
3. Carry out the seeded fault plan for ``seconds`` (longer if needed until at least one schedule
   tick was due), or until the first violation.
4. End every fault in progress, stop the load, stop the sensors (``dagctl sensors stop``), and
   require recovery: every daemon healthy, every run finished, every due schedule tick done.
5. Check every invariant over the whole history; stop the supervisor; nothing may be left running.

The verdict is one assertion listing every violation, the seed, the faults and where the logs are.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from dagd.scheduling.ticks import next_tick
from helpers.chaos.deployment import COUNTER_SENSOR, FINISHED, LIMITS, SCHEDULES, Deployment
from helpers.chaos.faults import DownWindows, FaultInjector, make_plan
from helpers.chaos.invariants import (
    doubled_run_keys,
    launched_twice,
    lost_counter_keys,
    missing_acks,
    replay_limits,
    schedule_ticks,
)
from helpers.chaos.load import ApiClient, CliClient, Ledger, stop_all
from helpers.chaos.report import FaultLog, Violations
from helpers.chaos.sampler import CliStatusChecker, Sampler, StatusProbe
from helpers.procs import assert_no_leftovers, dagctl, wait_for

RECOVERY_SECONDS = 120.0  # after the faults: daemons healthy, queue drained, ticks done
EXTRA_FOR_A_TICK = 75.0  # at most this much longer, until a schedule tick was due


@dataclass(frozen=True)
class ChaosSettings:
    backend: str  # "postgres" or "sqlite"
    seconds: float  # of faults
    seed: int
    api_clients: int = 3
    cli_clients: int = 1

    @classmethod
    def from_env(cls, backend: str, default_seconds: float) -> ChaosSettings:
        """DAGD_CHAOS_SEED replays a run; DAGD_CHAOS_SECONDS sets the duration."""
        seed = int(os.environ.get("DAGD_CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))
        seconds = float(os.environ.get("DAGD_CHAOS_SECONDS") or default_seconds)
        return cls(backend, seconds, seed)

    def describe(self) -> str:
        return (
            f"[chaos] backend={self.backend} seed={self.seed} seconds={self.seconds:g} "
            f"(replay: DAGD_CHAOS_SEED={self.seed} DAGD_CHAOS_SECONDS={self.seconds:g})"
        )


def chaos_timeout(default_seconds: float) -> float:
    """The pytest timeout for a chaos test: the fault phase plus room for setup and recovery."""
    seconds = float(os.environ.get("DAGD_CHAOS_SECONDS") or default_seconds)
    return seconds + EXTRA_FOR_A_TICK + 2 * RECOVERY_SECONDS + 180


def unexpected_errors(log: str) -> list[str]:
    """Bugs the servicer logged (``unexpected error in <method>``), each with its exception line."""
    lines = log.splitlines()
    found = []
    for index, line in enumerate(lines):
        if "unexpected error in" in line:
            # The exception's own line ends the traceback: the first unindented line after it.
            tail = next((t for t in lines[index + 2 :] if t and not t.startswith((" ", "Traceback"))), "")
            found.append(f"{line.split(' ERROR ')[-1]}: {tail[:300]}")
    return found[:10]


class Scenario:
    def __init__(self, deployment: Deployment, settings: ChaosSettings) -> None:
        self.deployment = deployment
        self.settings = settings
        self.started = time.monotonic()
        self.violations = Violations(settings.seed, self.started)
        self.log = FaultLog(self.started)
        self.windows = DownWindows()
        self.ledger = Ledger()
        self.notes: list[str] = []

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> None:
        deployment, settings = self.deployment, self.settings
        deployment.start()
        self._wait_healthy(60, "every daemon healthy after the first start")
        sampler = Sampler(deployment, self.ledger, self.violations, self.windows)
        probe = StatusProbe(
            deployment.home, deployment.home.parent / "status-samples.jsonl", self.violations, self.windows
        )
        sampler.probe = probe
        cli_status = CliStatusChecker(deployment.home, self.violations, self.windows)
        clients: list[ApiClient | CliClient] = [
            ApiClient(f"api{i}", deployment, self.ledger, self.violations, settings.seed + 10 + i)
            for i in range(settings.api_clients)
        ]
        clients += [
            CliClient(
                f"cli{i}", deployment, self.ledger, self.violations, settings.seed + 100 + i, self.windows
            )
            for i in range(settings.cli_clients)
        ]
        plan = make_plan(settings.seed, settings.seconds, settings.backend)
        injector = FaultInjector(deployment, plan, settings.seed, self.log, self.violations, self.windows)
        threads = [sampler, cli_status, *clients]
        try:
            for thread in threads:
                thread.start()
            injector.start()
            self._fault_phase(injector)
            injector.finish()
            stop_all(clients)
            self._recover()
            self.final_checks(sampler)
        finally:
            injector.finish()
            stop_all(clients)
            for stoppable in (sampler, cli_status):
                stoppable.stopping.set()
                stoppable.join(30)
            probe.stop()
            code = deployment.stop()
            if code not in (0, None):
                self.violations.add("supervisor stops cleanly", f"exit code {code}")
            try:
                assert_no_leftovers(deployment.home, timeout=30)
            except AssertionError as exc:
                self.violations.add("no orphan process", f"after the supervisor stopped: {exc}")
            faults_file = deployment.home.parent / "chaos-faults.log"
            faults_file.write_text("\n".join(self.log.lines()) + "\n")
            self.notes += [
                f"faults: {self.log.counts} (all of them: {faults_file})",
                f"supervisor down windows: {[round(d, 1) for d in self.windows.durations()]} s",
                f"submissions: {len(self.ledger.all())} acknowledged of {self.ledger.attempts} attempts "
                f"({self.ledger.retries} retries); failed attempts: {self.ledger.errors}",
                probe.summary(),
                f"dagctl daemons status: {cli_status.calls} calls, slowest {cli_status.slowest:.1f}s",
                f"sampler: {sampler.samples} samples, max {sampler.max_in_progress} runs in progress, "
                f"{len(sampler.read_errors)} read errors {sampler.read_errors[:3]}",
            ]

    def _fault_phase(self, injector: FaultInjector) -> None:
        """Until the duration is over (and a schedule tick was due), or the first violation."""
        end = time.monotonic() + self.settings.seconds
        latest = end + EXTRA_FOR_A_TICK
        while not self.violations.first.is_set():
            now = time.monotonic()
            if now >= latest or (now >= end and self._a_tick_was_due()):
                break
            self.violations.first.wait(0.5)
        self.notes.append(f"fault phase: {time.monotonic() - injector.started:.0f}s")

    def _a_tick_was_due(self) -> bool:
        states = self.deployment.view.instigator_states()
        now = datetime.now(timezone.utc)
        for name, (cron, tz) in SCHEDULES.items():
            state = states.get(("schedule", name))
            if state is not None and next_tick(cron, tz, state[0]) < now - timedelta(seconds=2):
                return True
        return False

    # -- recovery --------------------------------------------------------------------------------

    def _wait_healthy(self, timeout: float, what: str) -> None:
        def healthy() -> bool:
            status = self.deployment.status(timeout=5)
            return all(d["healthy"] for d in status["daemons"])

        try:
            wait_for(healthy, timeout, what, interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- supervisor log ---\n{self.deployment.log_tail()}") from None

    def _recover(self) -> None:
        """Once the faults end: sensors stopped, daemons healthy, every run finished, ticks done."""
        deadline = time.monotonic() + RECOVERY_SECONDS
        for sensor in ("counter", "buckets"):
            try:
                wait_for(
                    lambda s=sensor: dagctl(self.deployment.home, "sensors", "stop", s).code == 0,  # type: ignore[misc]
                    max(1.0, deadline - time.monotonic()),
                    f"dagctl sensors stop {sensor}",
                    interval=0.5,
                )
            except AssertionError as exc:
                self.violations.add("recovers once faults stop", str(exc))
        checks = [
            (self._all_healthy, "every daemon healthy"),
            (self._drained, "every run finished"),
            (self._ticks_done, "every due schedule tick finished"),
        ]
        began = time.monotonic()
        took = []
        for check, what in checks:
            try:
                wait_for(check, max(1.0, deadline - time.monotonic()), what, interval=0.5)
            except AssertionError as exc:
                self.violations.add("recovers once faults stop", f"{exc}; {self._left_over()}")
            took.append(f"{what} at +{time.monotonic() - began:.0f}s")
        self.notes.append(f"recovery: {', '.join(took)}")

    def _all_healthy(self) -> bool:
        return all(d["healthy"] for d in self.deployment.status(timeout=5)["daemons"])

    def _drained(self) -> bool:
        return all(r.status in FINISHED for r in self.deployment.view.runs())

    def _ticks_done(self) -> bool:
        return all(t.status != "STARTED" for t in self.deployment.view.schedule_ticks())

    def _left_over(self) -> str:
        runs = [r for r in self.deployment.view.runs() if r.status not in FINISHED]
        return f"{len(runs)} unfinished runs, e.g. {[(r.run_id, r.status) for r in runs[:5]]}"

    # -- the verdict -----------------------------------------------------------------------------

    def final_checks(self, sampler: Sampler) -> None:
        view, add = self.deployment.view, sampler.add
        if sampler.samples == 0 or len(sampler.read_errors) > max(5, sampler.samples // 10):
            # A referee that could not look proves nothing: that is a failure too.
            add("the sampler sees storage", [f"{sampler.samples} samples, errors: {sampler.read_errors[:5]}"])
        runs = view.runs()
        tags = {r.run_id: r.tags for r in runs}
        events = view.status_events()
        acks = self.ledger.all()
        add(
            "acknowledged submission exists",
            missing_acks(acks, {a.run_id: tags[a.run_id] for a in acks if a.run_id in tags}),
        )
        add("no run launched twice", launched_twice(events, self.deployment.markers_by_run()))
        add("concurrency limit (history)", replay_limits(events, tags, LIMITS))
        add("sensor run_key not doubled", doubled_run_keys(runs))
        states = view.instigator_states()
        cursor = states.get(("sensor", COUNTER_SENSOR), (None, None))[1]
        add("sensor run not lost", lost_counter_keys(runs, COUNTER_SENSOR, cursor))
        started = {name: state[0] for (kind, name), state in states.items() if kind == "schedule"}
        until = datetime.now(timezone.utc) - timedelta(seconds=3)
        add(
            "schedule tick once per due time",
            schedule_ticks(SCHEDULES, started, view.schedule_ticks(), runs, until),
        )
        add("no internal error", unexpected_errors(self.deployment.supervisor_logs()))
        scheduled = sum(1 for r in runs if "dagd/schedule" in r.tags)
        self.notes.append(
            f"runs: {len(runs)} ({scheduled} scheduled, {sum(1 for r in runs if 'dagd/sensor' in r.tags)} "
            f"from sensors), {len(events)} status events, counter cursor {cursor}"
        )

    def summary(self) -> str:
        return "\n".join(f"[chaos] {note}" for note in self.notes)

    def verdict(self) -> str:
        context = [
            self.settings.describe(),
            *self.notes,
            f"home (logs in home/logs): {self.deployment.home}",
            "--- supervisor log (tail) ---",
            self.deployment.log_tail(),
        ]
        return self.violations.report(self.log, "\n".join(context))
