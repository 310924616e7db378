"""Stages of a round, one enum that the coordinator, the clients and the modes all import.

Values equal the wire enum ``fedpsyau.v1.Stage`` (a test checks they never drift apart).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb


class Stage(enum.IntEnum):
    UNSPECIFIED = 0
    WAIT = 1
    DONE = 2
    TRAIN = 10
    STATS = 11
    PLAIN_INPUT = 12
    EVALUATE = 13
    SECAGG_ADVERTISE_KEYS = 20
    SECAGG_SHARE_KEYS = 21
    SECAGG_MASKED_INPUT = 22
    SECAGG_UNMASK = 23
    CKKS_KEY_ADVERTISE = 40
    CKKS_KEY_DISTRIBUTE = 41
    CKKS_KEY_RECEIVE = 42
    CKKS_ENCRYPTED_INPUT = 43
    CKKS_DECRYPT = 44

    @property
    def wire_name(self) -> str:
        return f"STAGE_{self.name}"


def wire(stage: int) -> pb.Stage:
    """``stage`` as the generated messages' enum fields take it (the wire enum is a plain int;
    the generated stubs type it as their own enum class)."""
    return cast("pb.Stage", int(stage))
