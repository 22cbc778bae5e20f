"""Finding and loading user code: ``workspace.yaml``, ``-f defs.py`` or ``-m package.module``.

A *code location* is one entry of the workspace. Its target (file or module, plus working
directory) is plain data that can be stored with a run, so a run worker loads exactly the code
location its run came from. Load failures become :class:`DefinitionError` with one clear line.
Only code servers and run workers call :func:`load_target`; the supervisor and the daemons never
import user code.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import pathlib
import sys
import traceback
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

from dagd.definitions import Definitions
from dagd.errors import ConfigError, DefinitionError


@dataclass(frozen=True)
class CodeLocationTarget:
    name: str
    python_file: str | None = None
    python_module: str | None = None
    working_directory: str | None = None
    attribute: str | None = None

    def to_json(self) -> str:
        return self._json

    @functools.cached_property
    def _json(self) -> str:
        # Stored with every run: computed once per target, not once per submission.
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> CodeLocationTarget:
        return cls(**json.loads(raw))

    def describe(self) -> str:
        return self.python_file or self.python_module or self.name


# The keys of one load_from entry, by kind (anything else is a typo, refused).
LOCATION_KEYS = {
    "python_file": {"relative_path", "working_directory", "location_name", "attribute"},
    "python_module": {"module_name", "working_directory", "location_name", "attribute"},
}


def target_from_file(path: str | pathlib.Path, *, name: str | None = None) -> CodeLocationTarget:
    file = pathlib.Path(path).resolve()
    if not file.is_file():
        raise ConfigError(f"{path}: no such Python file")
    return CodeLocationTarget(
        name=name or file.stem, python_file=str(file), working_directory=str(file.parent)
    )


def target_from_module(module: str, *, working_directory: str | None = None) -> CodeLocationTarget:
    workdir = pathlib.Path(working_directory or ".").resolve()
    check_module_exists(module, workdir, where=f"-m {module}")
    return CodeLocationTarget(name=module, python_module=module, working_directory=str(workdir))


def check_module_exists(module: str, working_directory: pathlib.Path, *, where: str) -> None:
    """Refuse a module that cannot be found from ``working_directory`` or ``sys.path``, like a
    missing file, without importing (and so running) any user code.

    The top-level name is looked up as ``import`` would (every finder, editable installs
    included), which imports nothing; each further part in the folders of the package before it.
    A parent that is a plain module, or a package that computes its ``__path__`` when imported,
    ends the check (the import itself will tell).
    """
    from importlib.machinery import PathFinder

    parts = module.split(".")
    if not all(part.isidentifier() for part in parts):
        raise ConfigError(f"{where}: {module!r} is not a module name (expected package.module)")
    added = str(working_directory) not in sys.path
    if added:
        sys.path.insert(0, str(working_directory))
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        spec = None
    finally:
        if added:
            sys.path.remove(str(working_directory))
    for depth in range(1, len(parts) + 1):
        if spec is None:
            found = ".".join(parts[: depth - 1])
            inside = f" in package {found}" if found else f" (looked in {working_directory} and sys.path)"
            raise ConfigError(f"{where}: no module named {'.'.join(parts[:depth])!r}{inside}")
        if depth == len(parts) or not spec.submodule_search_locations:
            return
        spec = PathFinder.find_spec(parts[depth], list(spec.submodule_search_locations))


def targets_from_workspace_file(path: str | pathlib.Path) -> list[CodeLocationTarget]:
    """Parse Dagster's workspace shape: ``load_from: [{python_file: ...}, {python_module: ...}]``."""
    import yaml  # here, not at the top: daemons import this module and never read YAML

    file = pathlib.Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: workspace file not found") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict) or not isinstance(data.get("load_from"), list) or not data["load_from"]:
        raise ConfigError(f"{path}: load_from: expected a non-empty list of code locations")
    unknown = set(data) - {"load_from"}
    if unknown:
        raise ConfigError(f"{path}: {sorted(unknown)[0]}: unknown key")
    base = file.resolve().parent
    targets: list[CodeLocationTarget] = []
    for index, entry in enumerate(data["load_from"]):
        where = f"{path}: load_from.{index}"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(f"{where}: expected one of python_file or python_module")
        kind, spec = next(iter(entry.items()))
        if isinstance(spec, str):
            spec = {"relative_path" if kind == "python_file" else "module_name": spec}
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}.{kind}: expected a path or a mapping")
        allowed = LOCATION_KEYS.get(kind)
        if allowed is None:
            raise ConfigError(f"{where}.{kind}: unknown code location kind (python_file or python_module)")
        unknown_keys = sorted(str(key) for key in spec if key not in allowed)
        if unknown_keys:
            raise ConfigError(f"{where}.{kind}.{unknown_keys[0]}: unknown key")
        for key in ("working_directory", "location_name", "attribute"):
            if spec.get(key) is not None and not isinstance(spec[key], str):
                raise ConfigError(f"{where}.{kind}.{key}: expected a string, got {type(spec[key]).__name__}")
        workdir = spec.get("working_directory")
        workdir_path = (base / workdir).resolve() if workdir else base
        if kind == "python_file":
            rel = spec.get("relative_path")
            if not isinstance(rel, str):
                raise ConfigError(f"{where}.python_file.relative_path: field required")
            pyfile = (base / rel).resolve()
            if not pyfile.is_file():
                raise ConfigError(f"{where}.python_file: no such file {pyfile}")
            targets.append(
                CodeLocationTarget(
                    name=spec.get("location_name") or pyfile.stem,
                    python_file=str(pyfile),
                    working_directory=str(workdir_path),
                    attribute=spec.get("attribute"),
                )
            )
        else:  # python_module (any other kind was refused above)
            module = spec.get("module_name")
            if not isinstance(module, str):
                raise ConfigError(f"{where}.python_module.module_name: field required")
            check_module_exists(module, workdir_path, where=f"{where}.python_module")
            targets.append(
                CodeLocationTarget(
                    name=spec.get("location_name") or module,
                    python_module=module,
                    working_directory=str(workdir_path),
                    attribute=spec.get("attribute"),
                )
            )
    names = [t.name for t in targets]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(
            f"{path}: two code locations are named {sorted(duplicates)[0]!r}; set location_name"
        )
    return targets


def _import(target: CodeLocationTarget) -> ModuleType:
    if target.working_directory and target.working_directory not in sys.path:
        sys.path.insert(0, target.working_directory)
    if target.python_module:
        if target.python_module in sys.modules:
            return importlib.reload(sys.modules[target.python_module])
        return importlib.import_module(target.python_module)
    assert target.python_file
    module_name = f"dagd_location_{abs(hash(target.python_file)):x}"
    spec = importlib.util.spec_from_file_location(module_name, target.python_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _user_frame(exc: BaseException, target: CodeLocationTarget) -> str:
    if isinstance(exc, SyntaxError):
        return f" (line {exc.lineno})" if exc.lineno else ""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if "dagd/" not in f.filename.replace("\\", "/")
    ]
    if frames:
        return f" ({pathlib.Path(frames[-1].filename).name}, line {frames[-1].lineno})"
    return ""


def load_target(target: CodeLocationTarget) -> Definitions:
    """Import the target and return its Definitions; raise DefinitionError with one line on failure."""
    try:
        module = _import(target)
    except DefinitionError as exc:
        raise DefinitionError(f"{target.describe()}: {exc}") from None
    except BaseException as exc:  # user code may raise anything while importing, even SystemExit
        detail = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        # One line: a multi-line message would break `dagctl instance info` and the API's field.
        detail = " ".join(f"{type(exc).__name__}: {detail}".split())
        raise DefinitionError(f"{target.describe()}: {detail}{_user_frame(exc, target)}") from None
    return _find_definitions(module, target)


def _find_definitions(module: ModuleType, target: CodeLocationTarget) -> Definitions:
    if target.attribute:
        value = getattr(module, target.attribute, None)
        if not isinstance(value, Definitions):
            raise DefinitionError(f"{target.describe()}: attribute {target.attribute!r} is not a Definitions")
        return value
    found: list[Any] = [v for v in vars(module).values() if isinstance(v, Definitions)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise DefinitionError(f"{target.describe()}: no Definitions object found at module level")
    raise DefinitionError(
        f"{target.describe()}: several Definitions objects found; set `attribute` in the workspace"
    )
