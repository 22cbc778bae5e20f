"""The one list of built-in plug-ins (dagd.instance.builtins) and what reads it: dagd.yaml's checks
at load, the classes' config_model, the public packages. Which sections are checked when dagd.yaml
is read, and which only when the plug-in is built, is what users see: pinned here."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest

from dagd.errors import ConfigError
from dagd.instance import config as config_models
from dagd.instance.builtins import BUILTINS, named
from dagd.instance.config import load_instance_config
from dagd.instance.instance import BuiltinConfigModel, Instance, has_own_config_model


@pytest.mark.parametrize("builtin", BUILTINS, ids=lambda b: b.class_name)
def test_each_builtin_is_its_public_class_with_its_model(builtin) -> None:
    cls = getattr(importlib.import_module(builtin.module), builtin.class_name)
    model = getattr(config_models, builtin.config_model)
    assert cls.config_model is model
    assert not has_own_config_model(cls)  # so the supervisor hands its validated config to daemons
    assert getattr(importlib.import_module(builtin.module), builtin.config_model, model) is model
    assert named(builtin.section, builtin.module, builtin.class_name) is builtin


def test_a_custom_class_is_not_a_builtin() -> None:
    assert named("run_launcher", "my.launcher", "LocalProcessRunLauncher") is None
    assert named("run_coordinator", "dagd.run_launcher", "LocalProcessRunLauncher") is None


def test_a_subclass_of_a_builtin_keeps_its_model() -> None:
    from dagd.run_launcher import LocalProcessRunLauncher

    class Mine(LocalProcessRunLauncher):
        pass

    assert Mine.config_model is config_models.LocalProcessRunLauncherConfig


def test_a_class_not_in_the_list_cannot_claim_a_builtin_model() -> None:
    with pytest.raises((TypeError, RuntimeError), match="Stray"):

        class Stray:
            config_model = BuiltinConfigModel()


def test_the_public_launcher_package_refuses_unknown_names() -> None:
    import dagd.run_launcher

    with pytest.raises(AttributeError, match="Nope"):
        dagd.run_launcher.Nope  # noqa: B018


def _home(tmp_path: Path, text: str) -> Path:
    (tmp_path / "dagd.yaml").write_text(textwrap.dedent(text))
    return tmp_path


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        (
            "run_coordinator: {config: {max_concurrent_runs: -5}}",
            "run_coordinator.config.max_concurrent_runs",
        ),
        ("run_coordinator: {class: DefaultRunCoordinator, config: {x: 1}}", "run_coordinator.config.x"),
        (
            "storage: {postgres: {url: postgresql://h/db}}\n"
            "run_launcher: {class: CeleryRunLauncher, config: {broker_url: http://x}}",
            "run_launcher.config.broker_url",
        ),
    ],
)
def test_these_builtin_sections_are_refused_when_dagd_yaml_is_read(
    tmp_path: Path, text: str, key_path: str
) -> None:
    with pytest.raises(ConfigError, match=key_path):
        load_instance_config(_home(tmp_path, text) / "dagd.yaml", environ={})


def test_the_local_launcher_section_is_refused_only_when_the_launcher_is_built(tmp_path: Path) -> None:
    home = _home(tmp_path, "run_launcher: {class: LocalProcessRunLauncher, config: {fork_sever: true}}")
    instance = Instance.load(home, create=False)  # dagd.yaml is read without complaint
    with pytest.raises(ConfigError, match="run_launcher.config.fork_sever"):
        instance.make_launcher()
