"""The supervisor's validated config, as a daemon rebuilds it without pydantic (dagd.instance.handoff)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from dagd.instance.config import InstanceConfig, load_instance_config
from dagd.instance.handoff import ConfigView, decode, encode
from dagd.instance.instance import Instance
from dagd.runs.queue import tag_limits

CONFIG = """
run_coordinator:
  config:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - {key: team, limit: 2}
      - {key: team, value: data, limit: 1}
      - {key: user, value: {applyLimitPerUniqueValue: true}, limit: 1}
run_launcher:
  config: {fork_server: false}
daemons:
  heartbeat_interval_seconds: 0.5
  enabled: [scheduler, run_queue]
"""


def assert_same_fields(model: Any, view: Any, path: str = "config") -> None:
    """Every field of the pydantic model reads the same from the view, recursively."""
    fields = getattr(type(model), "model_fields", None)
    if fields is None:
        if isinstance(model, list):
            assert isinstance(view, list) and len(view) == len(model), path
            for index, (m, v) in enumerate(zip(model, view, strict=True)):
                assert_same_fields(m, v, f"{path}[{index}]")
        else:
            assert view == model and type(view) is type(model), path
        return
    assert isinstance(view, ConfigView), path
    for name in fields:
        assert_same_fields(getattr(model, name), getattr(view, name), f"{path}.{name}")


def load(tmp_path: pathlib.Path, text: str) -> Instance:
    (tmp_path / "dagd.yaml").write_text(text)
    return Instance.load(tmp_path)


@pytest.mark.parametrize("text", ["", CONFIG])
def test_a_daemon_reads_every_field_the_supervisor_validated(tmp_path: pathlib.Path, text: str) -> None:
    instance = load(tmp_path, text)
    line = instance.handoff_line()
    assert line is not None and line.endswith(b"\n") and line.count(b"\n") == 1
    daemon_side = Instance.from_handoff(tmp_path, line)
    assert_same_fields(instance.config, daemon_side.config)
    assert_same_fields(instance.coordinator.config, daemon_side.coordinator.config)
    assert_same_fields(instance.launcher.config, daemon_side.launcher.config)
    assert daemon_side.storage_url == instance.storage_url


def test_tag_limits_are_the_same_from_the_model_and_from_the_view(tmp_path: pathlib.Path) -> None:
    instance = load(tmp_path, CONFIG)
    line = instance.handoff_line()
    assert line is not None
    daemon_side = Instance.from_handoff(tmp_path, line)
    assert tag_limits(daemon_side.coordinator.config) == tag_limits(instance.coordinator.config)
    assert [(t.value, t.per_unique_value) for t in tag_limits(daemon_side.coordinator.config)] == [
        (None, False),
        ("data", False),
        (None, True),
    ]


def test_a_free_form_plugin_config_stays_a_plain_dict(tmp_path: pathlib.Path) -> None:
    config = load_instance_config(tmp_path / "missing.yaml")
    line = encode(config, {"run_coordinator": {"nested": {"a": [1, 2]}}})
    assert line is not None
    _, plugins = decode(line)
    assert plugins["run_coordinator"] == {"nested": {"a": [1, 2]}}
    assert type(plugins["run_coordinator"]) is dict


def test_a_value_json_cannot_carry_makes_the_daemon_read_the_file_itself() -> None:
    import datetime

    assert encode(InstanceConfig(), {"run_coordinator": {"since": datetime.date(2024, 1, 1)}}) is None
    assert encode(InstanceConfig(), {"run_coordinator": {1: "integer key"}}) is None


def test_the_view_is_read_only() -> None:
    view, _ = decode(encode(InstanceConfig(), {}) or b"")
    with pytest.raises(AttributeError):
        view.daemons = None
    with pytest.raises(AttributeError):
        _ = view.no_such_section
