"""dagd.home: $DAGD_HOME's layout named in one place, and the atomic JSON publish."""

from __future__ import annotations

import json
import os
import pathlib
import threading

from dagd import home as layout


def test_the_layout_is_where_dagd_always_kept_its_files(tmp_path: pathlib.Path) -> None:
    h = tmp_path
    assert layout.config_file(h) == h / "dagd.yaml"
    assert layout.supervisor_file(str(h)) == h / "supervisor.json"
    assert layout.webserver_file(h) == h / "webserver.json"
    assert layout.log_file(h, "scheduler") == h / "logs" / "scheduler.log"
    assert layout.run_log_file(h, "abc") == h / "logs" / "runs" / "abc.log"
    assert layout.default_socket(h) == h / "run" / "dagd.sock"
    assert layout.daemons_file(h) == h / "run" / "daemons.json"
    assert layout.code_locations_file(h) == h / "run" / "code_locations.json"
    assert layout.code_dir(h) == h / "run" / "code"
    assert not any(h.iterdir()), "the layout creates nothing"


def test_a_reader_never_sees_a_half_written_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "published.json"
    big = {"items": ["x" * 100] * 2000}
    layout.write_json_atomic(path, {"items": []})
    stop = threading.Event()
    seen: list[object] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(json.loads(path.read_text()))  # raises on a partial file

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(50):
            layout.write_json_atomic(path, big)
            layout.write_json_atomic(path, {"items": []}, indent=None)
    finally:
        stop.set()
        reader.join(timeout=10)
    assert seen and all(s in ({"items": []}, big) for s in seen)
    assert sorted(os.listdir(tmp_path)) == ["published.json"]  # no temporary file left
