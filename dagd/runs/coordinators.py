"""The built-in run coordinators: the policy between "a run was submitted" and "the launcher starts it".

- :class:`DefaultRunCoordinator` launches at once, in the process that received the submission.
- :class:`QueuedRunCoordinator` (the default) stores the run ``QUEUED``; the ``run_queue`` daemon
  launches it when ``max_concurrent_runs`` and the tag limits allow (see ``selection.py``).

Custom coordinators subclass either one and are named in ``dagd.yaml`` by module and class. The
hook to override is :meth:`RunCoordinator.prepare_submission`: it sees the request's metadata
(gRPC metadata, or the web UI's HTTP headers) and may change tags before the run is stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagd.instance.instance import BuiltinConfigModel
from dagd.runs.model import Run, RunStatus
from dagd.runs.plugins import RunCoordinator, Submission


class DefaultRunCoordinator(RunCoordinator):
    """No limits: the run is launched before the submission returns. Runs never show QUEUED."""

    # No settings: `config:` must be empty (a subclass with settings names its own model).
    config_model = BuiltinConfigModel()

    def _store_and_dispatch(self, submission: Submission) -> Run:
        from dagd.runs.launch import launch_stored_run

        run = self._store(submission, RunStatus.NOT_STARTED)
        if run.status != RunStatus.NOT_STARTED:  # an idempotent retry of an earlier submission
            return run
        return launch_stored_run(self.instance, run.run_id, expected=(RunStatus.NOT_STARTED,))

    def _store_and_dispatch_batch(self, submissions: Sequence[Submission]) -> list[Run]:
        from dagd.runs.launch import launch_stored_run

        # All stored first (all or none); then each new one is launched, as SubmitRun would.
        runs = self._store_all(submissions, RunStatus.NOT_STARTED)
        launched: dict[str, Run] = {}
        out: list[Run] = []
        for run in runs:
            if run.status == RunStatus.NOT_STARTED and run.run_id not in launched:
                launched[run.run_id] = launch_stored_run(
                    self.instance, run.run_id, expected=(RunStatus.NOT_STARTED,)
                )
            out.append(launched.get(run.run_id, run))
        return out


class QueuedRunCoordinator(RunCoordinator):
    """Runs wait ``QUEUED`` until the run_queue daemon launches them under the configured limits."""

    # dagd.instance.config.QueuedRunCoordinatorConfig, imported only when read (daemons get the
    # supervisor's validated copy and never import pydantic).
    config_model = BuiltinConfigModel()

    def _store_and_dispatch(self, submission: Submission) -> Run:
        return self._store(submission, RunStatus.QUEUED)

    def _store_and_dispatch_many(self, submissions: Sequence[Submission]) -> list[Run]:
        return self._store_many(submissions, RunStatus.QUEUED)

    def _store_and_dispatch_batch(self, submissions: Sequence[Submission]) -> list[Run]:
        return self._store_all(submissions, RunStatus.QUEUED)


__all__ = ["DefaultRunCoordinator", "QueuedRunCoordinator", "RunCoordinator", "Submission"]
