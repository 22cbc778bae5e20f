"""``run_coordinator: {module: dagd.run_coordinator, class: ...}`` in dagd.yaml: the built-in run
coordinators and their base class, whose home is :mod:`dagd.runs` (``plugins`` and
``coordinators``). Custom coordinators may subclass them from here or from there."""

from dagd.runs.coordinators import DefaultRunCoordinator, QueuedRunCoordinator
from dagd.runs.plugins import RunCoordinator, Submission

__all__ = ["DefaultRunCoordinator", "QueuedRunCoordinator", "RunCoordinator", "Submission"]
