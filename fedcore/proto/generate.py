"""Regenerate the committed protobuf/gRPC code from protos/ (run from anywhere).

    python -m fedcore.proto.generate [--check]

``--check`` writes to a temporary folder and exits 1 when the committed files differ, which is
what tests/fedcore/proto/test_generated.py runs.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "fedcore" / "proto"
PACKAGE_DIR = Path("fedpsyau") / "v1"


def generate(out: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) over every .proto; return the generated files."""
    import grpc_tools
    from grpc_tools import protoc

    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {sources}")
    generated = sorted((out / PACKAGE_DIR).glob("*_pb2*.py*"))
    for path in generated:  # generated modules import each other as top-level "fedpsyau.v1"
        text = path.read_text()
        text = text.replace("from fedpsyau.v1 import", "from fedcore.proto.fedpsyau.v1 import")
        path.write_text(text)
    for pkg in (out / "fedpsyau", out / PACKAGE_DIR):
        (pkg / "__init__.py").touch()
    return generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when committed code is stale")
    args = parser.parse_args(argv)
    if not args.check:
        generate(OUT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = [
            p.name
            for p in fresh
            if not (OUT / PACKAGE_DIR / p.name).exists()
            or not filecmp.cmp(p, OUT / PACKAGE_DIR / p.name, shallow=False)
        ]
    if stale:
        print(f"generated code is stale: {', '.join(stale)}; run python -m fedcore.proto.generate", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
