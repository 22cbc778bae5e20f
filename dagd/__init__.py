"""dagd: a daemon supervisor and run orchestrator for data pipelines, with a gRPC control plane.

User code imports its definitions API from here::

    from dagd import Definitions, RunRequest, SkipReason, job, schedule, sensor

The names are imported on first use (PEP 562), not with the package: every ``dagctl`` command
imports ``dagd`` and most never need the definitions API (start-up time, issue 18).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagd.definitions import (
        Definitions,
        JobDefinition,
        RunRequest,
        ScheduleDefinition,
        SensorDefinition,
        SkipReason,
        job,
        schedule,
        sensor,
    )

__version__ = "0.1.0"

__all__ = [
    "Definitions",
    "JobDefinition",
    "RunRequest",
    "ScheduleDefinition",
    "SensorDefinition",
    "SkipReason",
    "job",
    "schedule",
    "sensor",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from dagd import definitions

        return getattr(definitions, name)
    raise AttributeError(f"module 'dagd' has no attribute {name!r}")
