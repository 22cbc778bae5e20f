"""The last good copy of a code location's source, which runs fall back to while its files are broken."""

from __future__ import annotations

import pathlib
import sys

import pytest

from dagd.codeserver.last_good import copy_dir, load_last_good, save_last_good
from dagd.errors import DefinitionError
from dagd.workspace import CodeLocationTarget, load_target, target_from_module

DEFS = """
from dagd import Definitions, job
from helpers_pkg.names import JOB_NAME


@job(name=JOB_NAME)
def the_job(context):
    pass


defs = Definitions(jobs=[the_job])
"""


def test_a_module_location_with_a_helper_package_loads_from_its_copy_once_broken(
    tmp_path: pathlib.Path, home: pathlib.Path
) -> None:
    code = tmp_path / "code"
    (code / "helpers_pkg").mkdir(parents=True)
    (code / "helpers_pkg" / "__init__.py").write_text("")
    (code / "helpers_pkg" / "names.py").write_text('JOB_NAME = "copied_job"\n')
    (code / "copy_defs.py").write_text(DEFS)
    target = target_from_module("copy_defs", working_directory=str(code))
    assert load_target(target).job_named("copied_job") is not None
    files = [str(p) for p in code.rglob("*.py")]
    save_last_good(home, target, files)
    save_last_good(home, target, files)  # a second save replaces the first cleanly
    assert sorted(p.name for p in copy_dir(home, "copy_defs").iterdir()) == [
        "copy_defs.py",
        "helpers_pkg",
        "target.json",
    ]
    try:
        # Break the helper the definitions import: the files on disk no longer load.
        (code / "helpers_pkg" / "names.py").write_text("JOB_NAME = (\n")
        for name in ("copy_defs", "helpers_pkg", "helpers_pkg.names"):
            sys.modules.pop(name, None)
        with pytest.raises(DefinitionError):
            load_target(target)
        definitions = load_last_good(home, target)
        assert definitions is not None and definitions.job_named("copied_job") is not None
    finally:
        for name in ("copy_defs", "helpers_pkg", "helpers_pkg.names"):
            sys.modules.pop(name, None)
        for path in (str(code), str(copy_dir(home, "copy_defs"))):
            while path in sys.path:
                sys.path.remove(path)


def test_no_copy_means_no_fallback(home: pathlib.Path) -> None:
    never = CodeLocationTarget(name="never_loaded", python_module="never_loaded", working_directory=str(home))
    assert load_last_good(home, never) is None
