"""Flat parameter vectors, their spec, and safe (de)serialisation as raw little-endian bytes.

A model travels as one flat float32 vector plus a :class:`ParamSpec` (names, shapes, dtypes).
Decoding never executes anything: it checks dtype, length and finiteness and copies bytes into a
numpy array with an explicit little-endian dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedcore.common.errors import InvalidPayload
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb

#: dtypes allowed on the wire, by name; all little-endian.
WIRE_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "uint32": np.dtype("<u4"),
    "uint64": np.dtype("<u8"),
    "int64": np.dtype("<i8"),
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass(frozen=True)
class ParamSpec:
    tensors: tuple[TensorSpec, ...]

    @property
    def size(self) -> int:
        return sum(t.size for t in self.tensors)

    def to_proto(self) -> pb.ParamSpec:
        return pb.ParamSpec(
            tensors=[pb.TensorSpec(name=t.name, shape=list(t.shape), dtype=t.dtype) for t in self.tensors]
        )

    @classmethod
    def from_proto(cls, msg: pb.ParamSpec) -> ParamSpec:
        tensors = []
        for t in msg.tensors:
            if t.dtype != "float32":
                raise InvalidPayload(f"parameter {t.name!r}: expected dtype float32 (got {t.dtype!r})")
            if any(d < 0 for d in t.shape):
                raise InvalidPayload(f"parameter {t.name!r}: negative dimension in shape {list(t.shape)}")
            tensors.append(TensorSpec(t.name, tuple(int(d) for d in t.shape), t.dtype))
        return cls(tuple(tensors))


def flatten(state: Mapping[str, object]) -> tuple[np.ndarray, ParamSpec]:
    """Flatten a name -> array/tensor mapping (in its order) into (float32 vector, spec)."""
    parts, specs = [], []
    for name, value in state.items():
        arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        specs.append(TensorSpec(name, tuple(int(d) for d in arr.shape)))
        parts.append(arr.astype(np.float32, copy=False).ravel())
    vec = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return vec, ParamSpec(tuple(specs))


def unflatten(vec: np.ndarray, spec: ParamSpec) -> dict[str, np.ndarray]:
    """Split a flat vector back into named arrays (views into ``vec``)."""
    if vec.shape != (spec.size,):
        raise InvalidPayload(f"expected a flat vector of {spec.size} values for this spec (got shape {vec.shape})")
    out, offset = {}, 0
    for t in spec.tensors:
        out[t.name] = vec[offset : offset + t.size].reshape(t.shape)
        offset += t.size
    return out


def encode_vector(arr: np.ndarray, dtype: str | None = None) -> pb.Vector:
    """A 1-D array as a wire Vector of raw little-endian bytes."""
    arr = np.asarray(arr)
    name = dtype or arr.dtype.name
    if name not in WIRE_DTYPES:
        raise InvalidPayload(f"dtype must be one of {sorted(WIRE_DTYPES)} (got {name!r})")
    if arr.ndim != 1:
        raise InvalidPayload(f"expected a 1-D vector (got shape {arr.shape})")
    data = np.ascontiguousarray(arr, dtype=WIRE_DTYPES[name]).tobytes()
    return pb.Vector(dtype=name, length=arr.shape[0], data=data)


def decode_vector(
    msg: pb.Vector, *, dtype: str | None = None, length: int | None = None, finite: bool = True, what: str = "vector"
) -> np.ndarray:
    """Decode a wire Vector, checking dtype, declared and actual length, and finiteness.

    Raises :class:`InvalidPayload` naming ``what`` and the expected vs received property.
    """
    if msg.dtype not in WIRE_DTYPES:
        raise InvalidPayload(f"{what}: dtype must be one of {sorted(WIRE_DTYPES)} (got {msg.dtype!r})")
    if dtype is not None and msg.dtype != dtype:
        raise InvalidPayload(f"{what}: expected dtype {dtype} (got {msg.dtype})")
    if length is not None and msg.length != length:
        raise InvalidPayload(f"{what}: expected {length} values (got {msg.length})")
    wire = WIRE_DTYPES[msg.dtype]
    if len(msg.data) != msg.length * wire.itemsize:
        raise InvalidPayload(
            f"{what}: {msg.length} {msg.dtype} values need {msg.length * wire.itemsize} bytes (got {len(msg.data)})"
        )
    arr = np.frombuffer(msg.data, dtype=wire).astype(wire.newbyteorder("="), copy=True)
    if finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise InvalidPayload(f"{what}: {bad} NaN or Inf values")
    return arr


def encode_model(vec: np.ndarray, spec: ParamSpec, round_: int) -> pb.Model:
    if vec.shape != (spec.size,):
        raise InvalidPayload(f"model vector has {vec.shape} values, spec needs ({spec.size},)")
    return pb.Model(
        spec=spec.to_proto(), params=encode_vector(vec.astype(np.float32, copy=False), "float32"), round=round_
    )


def decode_model(msg: pb.Model) -> tuple[np.ndarray, ParamSpec, int]:
    spec = ParamSpec.from_proto(msg.spec)
    vec = decode_vector(msg.params, dtype="float32", length=spec.size, what="model parameters")
    return vec, spec, int(msg.round)
