"""Where code servers listen, published by the supervisor for the daemons that call them.

``$DAGD_HOME/run/code_locations.json`` lists each location's name, socket and target. Daemons
read it instead of importing anything from the supervisor.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagd import home as layout
from dagd.workspace import CodeLocationTarget

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

PUBLISHED = layout.CODE_LOCATIONS_FILE


def socket_for(instance: Instance, name: str) -> str:
    from dagd.instance.instance import fitting_socket_path

    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]
    preferred = layout.code_dir(instance.home) / f"{safe}.sock"
    return str(fitting_socket_path(preferred, key=f"{instance.home}:{name}"))


@dataclass(frozen=True)
class PublishedLocation:
    name: str
    socket: str
    target: CodeLocationTarget


def read_published(home: pathlib.Path) -> list[PublishedLocation]:
    """What daemons use to find the code servers."""
    try:
        data = json.loads(layout.code_locations_file(home).read_text())
    except (OSError, ValueError):
        return []
    return [
        PublishedLocation(item["name"], item["socket"], CodeLocationTarget.from_json(item["target"]))
        for item in data
    ]


def publish(instance: Instance, targets: Mapping[str, CodeLocationTarget]) -> None:
    path = layout.code_locations_file(instance.home)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [{"name": n, "socket": socket_for(instance, n), "target": t.to_json()} for n, t in targets.items()]
    layout.write_json_atomic(path, data)
