"""A custom run coordinator that tags every run with who submitted it (run attribution).

Configure it in ``$DAGD_HOME/dagd.yaml`` (the module must be importable by the supervisor and the
daemons, e.g. with PYTHONPATH pointing at this folder)::

    run_coordinator:
      module: attribution
      class: AttributingRunCoordinator
      config:
        max_concurrent_runs: 5

``dagctl`` sends ``x-dagd-user`` (the login name) with every call; any gRPC client can send its
own metadata, and the web UI passes the browser request's HTTP headers the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from dagd.errors import InvalidArgument
from dagd.run_coordinator import QueuedRunCoordinator, Submission

USER_HEADER = "x-dagd-user"
TAG = "submitted_by"


class AttributingRunCoordinator(QueuedRunCoordinator):
    def prepare_submission(self, submission: Submission, metadata: Mapping[str, str]) -> Submission:
        user = metadata.get(USER_HEADER, "").strip()
        if not user:
            raise InvalidArgument(f"this instance needs the {USER_HEADER} header on every submission")
        return submission.with_tags(**{TAG: user})
