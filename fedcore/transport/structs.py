"""Plain dicts <-> ``google.protobuf.Struct`` for settings and configs that travel on the wire.

A Struct stores every number as a double, so :func:`from_struct` turns integral doubles back into
``int`` (``epochs = 2`` arrives as ``2``, not ``2.0``); a float setting that happens to be whole
(``lr = 1.0``) arrives as ``1``, which Python arithmetic treats the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

from fedcore.common.errors import InvalidPayload


def _plain(value: Any, where: str) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidPayload(f"{where}: {value} cannot travel in a Struct")
        return float(value)
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item(), where)
    raise InvalidPayload(f"{where}: {type(value).__name__} cannot travel in a Struct")


def to_struct(data: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(_plain(dict(data), "settings"))
    return s


def _back(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _back(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_back(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def from_struct(s: struct_pb2.Struct) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return _back(MessageToDict(s))
