"""Load: client threads submitting runs while faults happen, and the ledger of what was acknowledged.

API clients submit over gRPC with an idempotency key per submission and retry the same key until
the supervisor acknowledges it (a retry after a lost answer must return the same run, never make a
second). One CLI client runs ``dagctl submit`` as a user would. Every acknowledged submission goes
in the :class:`Ledger`: the battery checks that each one exists in storage, at once and at the end.

A refusal that is not about availability (bad argument, unknown job) is itself a violation: the
clients only ever send valid submissions.
"""

from __future__ import annotations

import abc
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from dagd.client.client import Client
from dagd.errors import DagdError, InvalidArgument, NotFound
from helpers.chaos.deployment import Deployment
from helpers.chaos.faults import DownWindows
from helpers.chaos.report import Violations
from helpers.procs import dagctl

SUBMISSION_TAG = "chaos/submission"
TENANTS = ("a", "b", "c")


@dataclass(frozen=True)
class Ack:
    key: str
    run_id: str
    tags: dict[str, str]
    at: float


class Ledger:
    """Acknowledged submissions; ``unchecked()`` hands each one to the sampler once."""

    def __init__(self) -> None:
        self._acks: list[Ack] = []
        self._checked = 0
        self._lock = threading.Lock()
        self.attempts = 0
        self.retries = 0
        self.errors: dict[str, int] = {}  # why attempts failed (first words of the error)

    def failed(self, error: str) -> None:
        reason = " ".join(error.split()[:6])
        with self._lock:
            self.errors[reason] = self.errors.get(reason, 0) + 1

    def ack(self, ack: Ack) -> None:
        with self._lock:
            self._acks.append(ack)

    def all(self) -> list[Ack]:
        with self._lock:
            return list(self._acks)

    def unchecked(self) -> list[Ack]:
        with self._lock:
            new, self._checked = self._acks[self._checked :], len(self._acks)
        return new


def random_submission(rng: random.Random, key: str) -> tuple[dict[str, str], dict[str, Any], int | None]:
    """Tags that put the run under the limits (sometimes several), a short duration, a priority."""
    tags = {SUBMISSION_TAG: key}
    if rng.random() < 0.7:
        tags["tenant"] = rng.choice(TENANTS)
    if rng.random() < 0.35:
        tags["db"] = rng.choice(("warehouse", "warehouse", "lake"))
    if rng.random() < 0.15:
        tags["lane"] = rng.choice(("x", "y"))
    config = {"seconds": round(rng.uniform(0.1, 1.5), 2)}
    priority = rng.choice((None, None, None, -1, 1, 2))
    return tags, config, priority


class _Submitter(threading.Thread, abc.ABC):
    """One client of the load: numbered submissions with random tags, at a random pace."""

    PAUSE: tuple[float, float] = (0.3, 1.2)  # seconds between submissions

    def __init__(
        self, name: str, deployment: Deployment, ledger: Ledger, violations: Violations, seed: int
    ) -> None:
        super().__init__(name=f"chaos-{name}", daemon=True)
        self.client_name = name
        self.deployment = deployment
        self.ledger = ledger
        self.violations = violations
        self.rng = random.Random(seed)
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            key = f"{self.client_name}-{n}"
            self.submit_one(key, *random_submission(self.rng, key))
            self.stopping.wait(self.rng.uniform(*self.PAUSE))

    @abc.abstractmethod
    def submit_one(
        self, key: str, tags: dict[str, str], config: dict[str, Any], priority: int | None
    ) -> None:
        """One submission, retried until acknowledged (or the client stops)."""


class ApiClient(_Submitter):
    """Submits over gRPC, one idempotency key per submission, retried until acknowledged."""

    def submit_one(
        self, key: str, tags: dict[str, str], config: dict[str, Any], priority: int | None
    ) -> None:
        self._submit_until_acked(key, tags, config, priority)

    def _submit_until_acked(
        self, key: str, tags: dict[str, str], config: dict[str, Any], priority: int | None
    ) -> None:
        first = True
        while not self.stopping.is_set():
            self.ledger.attempts += 1
            if not first:
                self.ledger.retries += 1
            first = False
            try:
                with Client.for_home(self.deployment.home) as client:
                    client.timeout = 20
                    run = client.submit(
                        "work", tags=tags, run_config=config, priority=priority, idempotency_key=key
                    )
            except (InvalidArgument, NotFound) as exc:
                self.violations.add("submission refused", f"{key}: {type(exc).__name__}: {exc}")
                return
            except DagdError as exc:  # unavailable, storage down, deadline: retry the same key
                self.ledger.failed(f"{type(exc).__name__}: {exc}")
                if str(exc).startswith("internal error"):  # the servicer's answer to a bug
                    self.violations.add("no internal error", f"submit {key}: {exc}")
                self.stopping.wait(self.rng.uniform(0.2, 0.6))
                continue
            if run["tags"].get(SUBMISSION_TAG) != key:
                self.violations.add(
                    "acknowledged submission exists",
                    f"retry of {key} answered with run {run['run_id']} of {run['tags'].get(SUBMISSION_TAG)}",
                )
            self.ledger.ack(Ack(key, run["run_id"], tags, time.monotonic()))
            return


class CliClient(_Submitter):
    """Submits with ``dagctl submit --json``; an answer with exit 0 is an acknowledgement.

    Exit 4 says "no supervisor answers": outside a window in which the test killed the supervisor,
    that is a wrong answer (a database outage is exit 1, "storage unavailable").
    """

    PAUSE = (0.5, 1.5)

    def __init__(
        self,
        name: str,
        deployment: Deployment,
        ledger: Ledger,
        violations: Violations,
        seed: int,
        windows: DownWindows,
    ) -> None:
        super().__init__(name, deployment, ledger, violations, seed)
        self.windows = windows

    def submit_one(
        self, key: str, tags: dict[str, str], config: dict[str, Any], priority: int | None
    ) -> None:
        args = ["submit", "work", "--config", json.dumps(config), "--json"]
        for k, v in tags.items():
            args += ["--tag", f"{k}={v}"]
        if priority is not None:
            args += ["--priority", str(priority)]
        self.ledger.attempts += 1
        started = time.monotonic()
        try:
            result = dagctl(self.deployment.home, *args, timeout=60)
        except Exception as exc:  # a hung dagctl is reported by the status checks
            self.violations.add("dagctl submit answers", f"{key}: {exc!r}")
            return
        if result.code != 0:
            self.ledger.failed(f"exit {result.code}: {result.stderr.strip()}")
        if "internal error" in result.stderr:
            self.violations.add("no internal error", f"dagctl submit {key}: {result.stderr.strip()}")
        if result.code == 0:
            self.ledger.ack(Ack(key, result.json()["run_id"], tags, time.monotonic()))
        elif result.code in (2, 5):  # bad input / not found: the submission was valid
            self.violations.add("submission refused", f"{key}: exit {result.code}: {result.stderr.strip()}")
        elif len(result.stderr.strip().splitlines()) != 1 or "Traceback" in result.stderr:
            self.violations.add(
                "dagctl errors are one line", f"{key}: exit {result.code}: {result.stderr[-2000:]}"
            )
        elif result.code == 4 and not self.windows.overlaps(started, time.monotonic()):
            self.violations.add(
                "dagctl exit codes",
                f"submit {key}: exit 4 with the supervisor up: {result.stderr.strip()}",
            )


def stop_all(clients: list[_Submitter], timeout: float = 90) -> None:
    for client in clients:
        client.stopping.set()
    deadline = time.monotonic() + timeout
    for client in clients:
        client.join(max(0.1, deadline - time.monotonic()))
