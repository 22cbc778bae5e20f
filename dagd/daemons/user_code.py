"""What the scheduler and sensor daemons share: finding code servers, and turning run requests
into runs exactly once.

Every run a schedule or sensor asks for is submitted with an idempotency key derived from what
asked for it (schedule name + scheduled time + run key; sensor name + run key), so a retry after a
crash, or a duplicate run key, returns the run that already exists instead of making another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagd.codeserver.protocol import CodeServerClient, LocationSnapshot, RunRequestData
from dagd.codeserver.registry import PublishedLocation, read_published
from dagd.errors import DagdError
from dagd.run_coordinator import Submission
from dagd.runs.model import RESUMABLE_TAG, parse_priority

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.daemon")


@dataclass(frozen=True)
class LoadedLocation:
    published: PublishedLocation
    snapshot: LocationSnapshot

    @property
    def client(self) -> CodeServerClient:
        return CodeServerClient(self.published.socket)


def load_locations(instance: Instance, errors: list[str]) -> list[LoadedLocation]:
    """Every reachable code location's snapshot; unreachable ones are reported in ``errors``."""
    out = []
    for published in read_published(instance.home):
        try:
            snapshot = CodeServerClient(published.socket).snapshot(timeout=5)
        except DagdError as exc:
            errors.append(f"code location {published.name}: {exc}")
            continue
        out.append(LoadedLocation(published, snapshot))
    return out


def planned_request(request: RunRequestData, key: str, tags: dict[str, str]) -> dict[str, Any]:
    """A run request as saved on a tick before submission."""
    return {
        "job_name": request.job_name,
        "run_key": request.run_key,
        "idempotency_key": key,
        "tags": {**tags, **request.tags},
        "run_config": request.run_config,
    }


def submit_planned(
    instance: Instance, location: LoadedLocation | None, target_json: str, planned: list[dict[str, Any]]
) -> list[str]:
    """Submit each planned request (idempotently); returns the run ids in order."""
    run_ids = []
    for item in planned:
        job_tags: dict[str, str] = {}
        if location is not None:
            job = location.snapshot.job(item["job_name"])
            if job is None:
                raise DagdError(
                    f"job {item['job_name']!r} does not exist in code location {location.snapshot.name}"
                )
            job_tags = dict(job.tags)
            if job.resumable:
                job_tags[RESUMABLE_TAG] = "true"
        tags = {**job_tags, **item["tags"]}
        try:
            priority = parse_priority(tags)
        except ValueError as exc:
            raise DagdError(str(exc)) from None
        run = instance.coordinator.submit_run(
            Submission(
                job_name=item["job_name"],
                tags=tags,
                run_config=item["run_config"],
                priority=priority,
                code_location=target_json,
                idempotency_key=item["idempotency_key"],
            ),
            {"x-dagd-client": "daemon"},
        )
        run_ids.append(run.run_id)
    return run_ids
