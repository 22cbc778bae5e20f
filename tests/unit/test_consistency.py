"""Things that must agree with each other: generated gRPC code vs protos, schema head vs migrations."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_generated_code_matches_protos(tmp_path: pathlib.Path) -> None:
    subprocess.run([sys.executable, "scripts/gen_protos.py", "--out", str(tmp_path)], cwd=ROOT, check=True)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*.py*"))
    assert generated, "gen_protos produced nothing"
    for rel in generated:
        fresh = (tmp_path / rel).read_text()
        committed = (ROOT / rel).read_text()
        assert committed == fresh, f"{rel} is stale: run `python scripts/gen_protos.py` and commit"


def test_runtime_versions_match_generator() -> None:
    import grpc
    from google.protobuf import __version__ as protobuf_version

    from dagd.api.v1 import dagd_pb2_grpc

    assert tuple(int(x) for x in grpc.__version__.split(".")[:2]) >= tuple(
        int(x) for x in dagd_pb2_grpc.GRPC_GENERATED_VERSION.split(".")[:2]
    )
    assert int(protobuf_version.split(".")[0]) == 7


def test_schema_head_constant_matches_migrations() -> None:
    from dagd.storage.migrate import HEAD_REVISION, head_revision

    assert HEAD_REVISION == head_revision(), "update HEAD_REVISION in dagd/storage/migrate.py"
