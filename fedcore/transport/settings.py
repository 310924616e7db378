"""Plain dicts <-> the wire's typed :class:`Config` table, for settings and task configs.

A value keeps its type across the wire: ``epochs = 2`` arrives as the int 2 and ``lr = 1.0`` as
the float 1.0 (the ``google.protobuf.Struct`` this replaced stored every number as a double, so
``threshold = 1`` and ``threshold = 1.0`` could not be told apart). Tables nest; lists may mix
types. Anything else (None, bytes, NaN or infinite numbers, integers beyond 64 bits) is refused
with the key that holds it, on the sending side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fedcore.common.errors import InvalidPayload
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb

__all__ = ["from_config", "to_config"]

_INT64 = (-(2**63), 2**63 - 1)


def _value(value: Any, where: str) -> pb.ConfigValue:
    if hasattr(value, "item") and not isinstance(value, (Mapping, list, tuple)):  # numpy scalar
        value = value.item()
    if isinstance(value, bool):
        return pb.ConfigValue(bool_value=value)
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise InvalidPayload(f"{where}: integer {value} does not fit 64 bits")
        return pb.ConfigValue(int_value=value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidPayload(f"{where}: {value} cannot travel in a settings table")
        return pb.ConfigValue(float_value=value)
    if isinstance(value, str):
        return pb.ConfigValue(str_value=value)
    if isinstance(value, Mapping):
        return pb.ConfigValue(table_value=to_config(value, where))
    if isinstance(value, (list, tuple)):
        items = [_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return pb.ConfigValue(list_value=pb.ConfigList(items=items))
    raise InvalidPayload(f"{where}: {type(value).__name__} cannot travel in a settings table")


def to_config(data: Mapping[str, Any], where: str = "settings") -> pb.Config:
    """The wire form of a table of settings (keys must be strings)."""
    out = pb.Config()
    for key, value in data.items():
        if not isinstance(key, str):
            raise InvalidPayload(f"{where}: key {key!r} is not a string")
        out.items[key].CopyFrom(_value(value, f"{where}.{key}"))
    return out


def _plain(value: pb.ConfigValue, where: str) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None:
        raise InvalidPayload(f"{where}: a settings value without a type")
    if kind == "table_value":
        return from_config(value.table_value, where)
    if kind == "list_value":
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value.list_value.items)]
    if kind == "float_value" and not math.isfinite(value.float_value):
        raise InvalidPayload(f"{where}: {value.float_value} is not a finite number")
    return getattr(value, kind)


def from_config(config: pb.Config, where: str = "settings") -> dict[str, Any]:
    """The table a :class:`Config` holds, with each value's type as it was sent."""
    return {key: _plain(config.items[key], f"{where}.{key}") for key in sorted(config.items)}
