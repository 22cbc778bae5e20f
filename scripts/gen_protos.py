"""Generate dagd/api/v1/*_pb2*.py from protos/ — the one way generated code is produced.

    python scripts/gen_protos.py            # regenerate in place
    python scripts/gen_protos.py --out DIR  # generate elsewhere (the staleness test compares)

Needs grpcio-tools at the version pinned in pyproject.toml ([dev] extra): its bundled protoc
decides the protobuf runtime the generated code requires.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def proto_files() -> list[pathlib.Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: pathlib.Path) -> None:
    from grpc_tools import protoc  # dev-only dependency

    include = pathlib.Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    generate(out)
    print(f"generated {len(proto_files())} proto file(s) into {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
