"""The committed generated code matches protos/, and the Python Stage enum matches the wire enum."""

from __future__ import annotations

import subprocess
import sys

from fedcore.common.stages import Stage
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb


def test_generated_code_is_up_to_date():
    proc = subprocess.run(
        [sys.executable, "-m", "fedcore.proto.generate", "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_stage_enum_matches_the_proto_names_and_numbers():
    wire = {v.name: v.number for v in pb.Stage.DESCRIPTOR.values}
    ours = {s.wire_name: int(s) for s in Stage}
    assert ours == wire
