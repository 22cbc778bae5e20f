"""``run_launcher: {module: dagd.run_launcher, class: ...}`` in dagd.yaml: the built-in run
launchers and their base class, whose home is :mod:`dagd.runs` (``plugins``, ``local``).
Custom launchers may subclass them from here or from there."""

from typing import Any

from dagd.runs.attempts import WorkerHealth
from dagd.runs.local.launcher import LocalProcessRunLauncher
from dagd.runs.plugins import RunLauncher, WorkerHandle


def __getattr__(name: str) -> Any:
    # The launcher's config model lives with the other pydantic models; importing it lazily keeps
    # this package (which every daemon imports) free of pydantic.
    if name == "LocalProcessRunLauncherConfig":
        from dagd.instance.config import LocalProcessRunLauncherConfig

        return LocalProcessRunLauncherConfig
    # Celery is imported only by processes configured with this launcher.
    if name == "CeleryRunLauncher":
        from dagd.runs.celery.launcher import CeleryRunLauncher

        return CeleryRunLauncher
    if name == "CeleryRunLauncherConfig":
        from dagd.instance.config import CeleryRunLauncherConfig

        return CeleryRunLauncherConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CeleryRunLauncher",
    "CeleryRunLauncherConfig",
    "LocalProcessRunLauncher",
    "LocalProcessRunLauncherConfig",
    "RunLauncher",
    "WorkerHandle",
    "WorkerHealth",
]
