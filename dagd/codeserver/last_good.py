"""The last good copy of each code location's source, for runs started while its files are broken.

A code server that loads its location keeps the definitions in memory, so schedules and sensors
go on with the last good definitions while an edit is broken. A run worker, though, is a new
process that imports the location from disk. To run the last good definitions too, the code
server copies the source files of every successful load (the target file and each user module it
imported from the location's directory) to ``$DAGD_HOME/run/code/<location>/``, with the same
layout, plus ``target.json`` pointing into the copy.

The worker always tries the files on disk first, so a run normally sees exactly what the user
wrote (data files beside the code included); only when that load fails does it fall back to the
copy (:func:`load_last_good`) and says so in the run's log.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
from dataclasses import replace

from dagd import home as layout
from dagd.definitions import Definitions
from dagd.workspace import CodeLocationTarget, load_target

TARGET_FILE = "target.json"


def target_root(target: CodeLocationTarget) -> str:
    """The directory whose modules belong to the location (and are watched, copied, reloaded)."""
    return os.path.realpath(target.working_directory or os.path.dirname(target.python_file or "."))


def copy_dir(home: str | pathlib.Path, name: str) -> pathlib.Path:
    return layout.code_dir(home) / name


def save_last_good(home: str | pathlib.Path, target: CodeLocationTarget, files: list[str]) -> None:
    """Copy ``files`` (those under the location's root) as the location's last good source."""
    root = target_root(target)
    dest = copy_dir(home, target.name)
    staging = dest.with_name(f".{target.name}.{os.getpid()}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in files:
        real = os.path.realpath(path)
        if not real.startswith(root + os.sep) or not os.path.isfile(real):
            continue
        copied = staging / os.path.relpath(real, root)
        copied.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, copied)
        os.chmod(copied, 0o600)  # copy2 kept the source's mode; copies under DAGD_HOME are private
    python_file = target.python_file
    if python_file:
        python_file = str(dest / os.path.relpath(os.path.realpath(python_file), root))
    copy = replace(target, python_file=python_file, working_directory=str(dest))
    (staging / TARGET_FILE).write_text(copy.to_json())
    # Swap in the new copy; a worker reading the old one at this instant is the only loser.
    retired = dest.with_name(f".{target.name}.{os.getpid()}.old")
    if dest.exists():
        os.replace(dest, retired)
    os.replace(staging, dest)
    shutil.rmtree(retired, ignore_errors=True)


def load_last_good(home: str | pathlib.Path, target: CodeLocationTarget) -> Definitions | None:
    """The location's definitions from its last good copy; None if there is none."""
    saved = copy_dir(home, target.name) / TARGET_FILE
    if not saved.is_file():
        return None
    # Forget the modules the failed load left behind, so the copy's own are imported.
    root = target_root(target)
    for module_name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and os.path.realpath(path).startswith(root + os.sep):
            sys.modules.pop(module_name, None)
    if target.working_directory in sys.path:
        sys.path.remove(target.working_directory)
    return load_target(CodeLocationTarget.from_json(saved.read_text()))
