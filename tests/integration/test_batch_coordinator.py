"""A batch submission through the run coordinators (issue #20 item 6), on both databases: a custom
coordinator's hook sees every entry (its refusal names the entry, nothing stored), and the
default coordinator stores all, then launches each new run once."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml
from helpers.launchers import RecordingLauncher

from dagd.errors import InvalidArgument
from dagd.instance.instance import Instance
from dagd.run_coordinator import Submission
from dagd.runs.model import RunFilter, RunStatus

HOOK = """
from dagd.errors import InvalidArgument
from dagd.run_coordinator import QueuedRunCoordinator


class Picky(QueuedRunCoordinator):
    def prepare_submission(self, submission, metadata):
        if "refuse" in submission.tags:
            raise InvalidArgument("refused by the hook")
        return submission.with_tags(submitted_by=metadata.get("x-user", "?"))
"""


def storage_section(url: str) -> dict[str, Any]:
    if url.startswith("sqlite:///"):
        return {"sqlite": {"base_dir": str(pathlib.Path(url.removeprefix("sqlite:///")).parent)}}
    return {"postgres": {"url": url}}


def instance(tmp_path: pathlib.Path, url: str, coordinator: dict[str, Any]) -> Instance:
    home = tmp_path / "home"
    home.mkdir()
    config = {
        "storage": storage_section(url),
        "run_coordinator": coordinator,
        "run_launcher": {"module": "helpers.launchers", "class": "RecordingLauncher"},
    }
    (home / "dagd.yaml").write_text(yaml.safe_dump(config))
    return Instance.load(home)


def stored(inst: Instance) -> list[Any]:
    return inst.storage.runs.list(RunFilter(limit=1000))


def test_a_custom_hook_sees_every_entry_of_a_batch_and_its_refusal_names_the_entry(
    storage_url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "picky.py").write_text(HOOK)
    monkeypatch.syspath_prepend(str(tmp_path))
    inst = instance(tmp_path, storage_url, {"module": "picky", "class": "Picky"})
    batch = [Submission("job", {"n": str(i)}) for i in range(5)]
    runs = inst.coordinator.submit_batch(batch, {"x-user": "ann"})
    assert [r.tags["submitted_by"] for r in runs] == ["ann"] * 5
    assert all(r.status == RunStatus.QUEUED for r in runs) and len(stored(inst)) == 5

    refused = [*batch[:2], Submission("job", {"refuse": "1"}), *batch[3:]]
    with pytest.raises(InvalidArgument) as exc:
        inst.coordinator.submit_batch(refused, {"x-user": "bob"})
    assert str(exc.value) == "runs[2]: refused by the hook" and exc.value.run_index == 2
    assert len(stored(inst)) == 5  # nothing of the refused batch


def test_the_default_coordinator_stores_a_batch_then_launches_each_new_run_once(
    storage_url: str, tmp_path: pathlib.Path
) -> None:
    inst = instance(
        tmp_path, storage_url, {"module": "dagd.run_coordinator", "class": "DefaultRunCoordinator"}
    )
    batch = [
        Submission("job", {"n": "0"}, idempotency_key="k"),
        Submission("job", {"n": "1"}),
        Submission("job", {"n": "0"}, idempotency_key="k"),  # the same run as the first
    ]
    runs = inst.coordinator.submit_batch(batch, {})
    assert runs[0].run_id == runs[2].run_id != runs[1].run_id
    launcher = inst.launcher
    assert isinstance(launcher, RecordingLauncher)
    assert sorted(launcher.launched) == sorted({runs[0].run_id, runs[1].run_id})
    assert all(r.status == RunStatus.STARTING for r in runs), [r.status for r in runs]
    # Again (a client's retry): the keyed run is found, only the unkeyed one is new and launched.
    again = inst.coordinator.submit_batch(batch, {})
    assert again[0].run_id == runs[0].run_id and len(launcher.launched) == 3
