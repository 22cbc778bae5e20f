"""``run_launcher: {module: dagd.run_launcher, class: ...}`` in dagd.yaml: the built-in run
launchers and their base class, whose home is :mod:`dagd.runs` (``plugins``, ``local``).
Custom launchers may subclass them from here or from there."""

from typing import Any

from dagd.instance.instance import public_config_model
from dagd.runs.attempts import WorkerHealth
from dagd.runs.local.launcher import LocalProcessRunLauncher
from dagd.runs.plugins import RunLauncher, WorkerHandle


def __getattr__(name: str) -> Any:
    # Celery is imported only by processes configured with this launcher.
    if name == "CeleryRunLauncher":
        from dagd.runs.celery.launcher import CeleryRunLauncher

        return CeleryRunLauncher
    # The launchers' config models live with the other pydantic models; importing them lazily
    # keeps this package (which every daemon imports) free of pydantic.
    return public_config_model(__name__, name)


__all__ = [
    "CeleryRunLauncher",
    "CeleryRunLauncherConfig",
    "LocalProcessRunLauncher",
    "LocalProcessRunLauncherConfig",
    "RunLauncher",
    "WorkerHandle",
    "WorkerHealth",
]
