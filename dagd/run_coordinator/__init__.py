"""Run coordinators: the policy between "a run was submitted" and "the launcher starts it".

- :class:`DefaultRunCoordinator` launches at once, in the process that received the submission.
- :class:`QueuedRunCoordinator` (the default) stores the run ``QUEUED``; the ``run_queue`` daemon
  launches it when ``max_concurrent_runs`` and the tag limits allow (see ``selection.py``).

Custom coordinators subclass either one and are named in ``dagd.yaml`` by module and class. The
hook to override is :meth:`RunCoordinator.prepare_submission`: it sees the request's metadata
(gRPC metadata, or the web UI's HTTP headers) and may change tags before the run is stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from dagd.errors import InvalidArgument
from dagd.instance.instance import BuiltinConfigModel
from dagd.runs.model import Run, RunStatus, check_max_runtime, parse_priority
from dagd.storage.runs import NewRun

if TYPE_CHECKING:
    from pydantic import BaseModel

    from dagd.instance.instance import Instance


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

    def _prepare(self, submission: Submission, metadata: Mapping[str, str]) -> Submission:
        submission = self.prepare_submission(submission, metadata)
        # A hook may have changed the priority tag: the stored priority always follows the tags.
        try:
            priority = parse_priority(submission.tags)
            check_max_runtime(submission.tags)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        return replace(submission, priority=priority)

    def _store_and_dispatch(self, submission: Submission) -> Run:
        raise NotImplementedError  # each concrete coordinator decides

    def _store_and_dispatch_many(self, submissions: Sequence[Submission]) -> list[Run]:
        return [self._store_and_dispatch(s) for s in submissions]

    def _store(self, submission: Submission, status: RunStatus) -> Run:
        return self.instance.storage.runs.create(_new_run(submission, status))

    def _store_many(self, submissions: Sequence[Submission], status: RunStatus) -> list[Run]:
        return self.instance.storage.runs.create_many([_new_run(s, status) for s in submissions])

    @property
    def describe(self) -> str:
        return type(self).__name__


class DefaultRunCoordinator(RunCoordinator):
    """No limits: the run is launched before the submission returns. Runs never show QUEUED."""

    # No settings: `config:` must be empty (a subclass with settings names its own model).
    config_model = BuiltinConfigModel("NoConfig")

    def _store_and_dispatch(self, submission: Submission) -> Run:
        from dagd.run_launcher import launch_stored_run

        run = self._store(submission, RunStatus.NOT_STARTED)
        if run.status != RunStatus.NOT_STARTED:  # an idempotent retry of an earlier submission
            return run
        return launch_stored_run(self.instance, run.run_id, expected=(RunStatus.NOT_STARTED,))


class QueuedRunCoordinator(RunCoordinator):
    """Runs wait ``QUEUED`` until the run_queue daemon launches them under the configured limits."""

    # dagd.instance.config.QueuedRunCoordinatorConfig, imported only when read (daemons get the
    # supervisor's validated copy and never import pydantic).
    config_model = BuiltinConfigModel("QueuedRunCoordinatorConfig")

    def _store_and_dispatch(self, submission: Submission) -> Run:
        return self._store(submission, RunStatus.QUEUED)

    def _store_and_dispatch_many(self, submissions: Sequence[Submission]) -> list[Run]:
        return self._store_many(submissions, RunStatus.QUEUED)


def _new_run(submission: Submission, status: RunStatus) -> NewRun:
    return NewRun(
        job_name=submission.job_name,
        tags=submission.tags,
        run_config=submission.run_config,
        priority=submission.priority,
        status=status,
        code_location=submission.code_location,
        idempotency_key=submission.idempotency_key,
    )


__all__ = ["DefaultRunCoordinator", "QueuedRunCoordinator", "RunCoordinator", "Submission"]
