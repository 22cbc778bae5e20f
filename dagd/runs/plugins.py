"""The plug-in contracts of the run lifecycle: run coordinators and run launchers.

This module imports only the run model: the instance, the coordinators, the launchers and the
daemons all import it, never the other way round, so there is no import cycle between them.

- A **run coordinator** turns a validated :class:`Submission` into a stored run: the default one
  launches at once, the queued one stores it ``QUEUED`` for the ``run_queue`` daemon
  (:mod:`dagd.runs.coordinators`). Custom ones subclass either and override
  :meth:`RunCoordinator.prepare_submission`.
- A **run launcher** is the only thing that knows where a run's worker lives. Its contract, on an
  :class:`~dagd.runs.attempts.Attempt` (one launch of a run):

  ``launch(run, attempt)``      start a worker that will claim ``attempt`` with its dispatch token
  ``terminate(run, attempt, force=)``   ask that worker to stop (or make sure it is gone)
  ``check_health(run, attempt)``        ALIVE / DEAD / UNKNOWN (UNKNOWN never fails a run)
  ``resume(run, attempt)``      a new attempt of a run whose worker died (default: ``launch``)

  Cancel (:mod:`dagd.runs.cancel`) and run monitoring act on workers only through these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from dagd.runs.attempts import Attempt, WorkerHealth
from dagd.runs.model import Run, RunStatus

if TYPE_CHECKING:
    from pydantic import BaseModel

    from dagd.instance.instance import Instance
    from dagd.storage.runs import NewRun


@dataclass(frozen=True)
class Submission:
    """A validated request to run a job, before it is stored."""

    job_name: str
    tags: dict[str, str]
    run_config: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    code_location: str | None = None
    idempotency_key: str | None = None

    def with_tags(self, **extra: str) -> Submission:
        return replace(self, tags={**self.tags, **extra})


class RunCoordinator:
    config_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, instance: Instance, config: Any) -> None:
        self.instance = instance
        self.config = config

    def prepare_submission(self, submission: Submission, metadata: Mapping[str, str]) -> Submission:
        """Hook for subclasses: inspect request metadata, add tags, reject by raising InvalidArgument."""
        return submission

    def submit_run(self, submission: Submission, metadata: Mapping[str, str]) -> Run:
        return self._store_and_dispatch(self._prepare(submission, metadata))

    def submit_runs(self, submissions: Sequence[Submission], metadata: Mapping[str, str]) -> list[Run]:
        """Several submissions (a schedule's or sensor's ticks) stored in one transaction."""
        return self._store_and_dispatch_many([self._prepare(s, metadata) for s in submissions])

    def submit_batch(self, submissions: Sequence[Submission], metadata: Mapping[str, str]) -> list[Run]:
        """A batch submission (SubmitRuns): every run prepared first (a hook's refusal names the
        entry, ``runs[N]: ...``), then all stored in one transaction, or none."""
        from dagd.errors import DagdError, at_index

        if type(self).prepare_submission is RunCoordinator.prepare_submission:
            # No hook: each submission is as validated (finalized) already; thousands, so skip it.
            return self._store_and_dispatch_batch(submissions)
        prepared: list[Submission] = []
        for index, submission in enumerate(submissions):
            try:
                prepared.append(self._prepare(submission, metadata))
            except DagdError as exc:
                raise at_index(exc, index) from None
        return self._store_and_dispatch_batch(prepared)

    def _prepare(self, submission: Submission, metadata: Mapping[str, str]) -> Submission:
        from dagd.runs.requests import finalize

        # A hook may have changed the tags: the stored priority always follows them.
        return finalize(self.prepare_submission(submission, metadata))

    def _store_and_dispatch(self, submission: Submission) -> Run:
        raise NotImplementedError  # each concrete coordinator decides

    def _store_and_dispatch_many(self, submissions: Sequence[Submission]) -> list[Run]:
        return [self._store_and_dispatch(s) for s in submissions]

    def _store_and_dispatch_batch(self, submissions: Sequence[Submission]) -> list[Run]:
        from dagd.errors import InvalidArgument

        # All or none needs the coordinator to say how a batch is stored; the built-in ones do.
        raise InvalidArgument(f"the run coordinator {self.describe} does not take batch submissions")

    def _store(self, submission: Submission, status: RunStatus) -> Run:
        return self.instance.storage.runs.create(_new_run(submission, status))

    def _store_many(self, submissions: Sequence[Submission], status: RunStatus) -> list[Run]:
        return self.instance.storage.runs.create_many([_new_run(s, status) for s in submissions])

    def _store_all(self, submissions: Sequence[Submission], status: RunStatus) -> list[Run]:
        """All in one transaction or none (see RunStore.create_all)."""
        return self.instance.storage.runs.create_all([_new_run(s, status) for s in submissions])

    @property
    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class WorkerHandle:
    """Where a launched worker runs, as far as the launcher knows right after launching it."""

    pid: int | None = None
    started_at: float | None = None  # the process's start time (pids are reused)
    host: str | None = None


class RunLauncher:
    config_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, instance: Instance, config: Any) -> None:
        self.instance = instance
        self.config = config
        # Called (from any thread) when a worker this launcher started has exited.
        self.on_worker_exit: Callable[[], None] | None = None
        # Why the launcher cannot do its work now (e.g. "broker unreachable"); None when it can.
        # The run queue reports it as its own degraded state (``dagctl daemons status``).
        self.degraded_reason: str | None = None

    def launch(self, run: Run, attempt: Attempt) -> WorkerHandle:
        """Start a worker for ``attempt`` (it claims the attempt with its dispatch token)."""
        raise NotImplementedError

    def terminate(self, run: Run, attempt: Attempt, *, force: bool = False) -> bool:
        """Ask the attempt's worker to stop (its job gets SIGTERM, then SIGKILL after a grace);
        with ``force``, make sure nothing of it is left at once. False if there is no worker."""
        raise NotImplementedError

    def check_health(self, run: Run, attempt: Attempt) -> WorkerHealth:
        """What the launcher can tell of the attempt's worker; UNKNOWN when it cannot tell."""
        return WorkerHealth.UNKNOWN

    def resume(self, run: Run, attempt: Attempt) -> WorkerHandle:
        """Start a new attempt of a run whose previous worker was lost."""
        return self.launch(run, attempt)

    def relay(self) -> int:
        """Called by the run queue every pass: deliver again what may have been lost (a broker
        launcher's unclaimed messages); how many. Local launchers have nothing to do."""
        return 0

    def close(self) -> None:
        """Release what the launcher holds (helper processes); runs keep going."""


def _new_run(submission: Submission, status: RunStatus) -> NewRun:
    from dagd.storage.runs import NewRun

    return NewRun(
        job_name=submission.job_name,
        tags=submission.tags,
        run_config=submission.run_config,
        priority=submission.priority,
        status=status,
        code_location=submission.code_location,
        idempotency_key=submission.idempotency_key,
    )
