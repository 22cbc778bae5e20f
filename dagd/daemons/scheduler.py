"""The ``scheduler`` daemon.

For now its iteration proves that the daemon can reach storage (a real round trip each loop); its
full behaviour is described in docs/roadmap.md and lands with its own issue.
"""

from __future__ import annotations

from dagd.daemons.base import Daemon


class SchedulerDaemon(Daemon):
    name = "scheduler"

    def run_iteration(self) -> None:
        self.instance.storage.ping()
