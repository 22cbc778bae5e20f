"""The local launcher: one worker process per run attempt on this host (fork server or spawn)."""

from dagd.runs.local.launcher import LocalProcessRunLauncher

__all__ = ["LocalProcessRunLauncher"]
