"""The privacy settings of one task, typed: the only route by which DP settings reach a client.

A TrainTask (and a StatsTask) carries one ``TaskPrivacy`` message:

- ``local``: the coordinator's DP-SGD defaults (its ``[privacy]`` table; a client's own
  ``[privacy]`` overrides them key by key, and a ledger path never travels);
- ``central``: DP-FedAvg (:mod:`fedcore.dp.central`): the client clips its update to L2
  ``clip_norm`` and sends weight 1; the coordinator adds the Gaussian noise;
- ``distributed``: SecAgg+'s distributed discrete Gaussian (:mod:`fedcore.dp.secagg_dp`): the same
  clip and weight, and each client adds its share of the noise inside the masked sum.

Both client-level kinds clip in one place, :func:`fedcore.client.handlers.client_update`. Nothing
here parses untrusted numbers loosely: :func:`decode_privacy` refuses a non-finite or
non-positive clip norm, a delta outside (0, 1) and both kinds at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fedcore.common.errors import ConfigError, InvalidPayload
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb

__all__ = ["LOCAL_KEYS", "ClientLevelDP", "TaskPrivacy", "decode_privacy", "encode_privacy", "local_problems"]

#: the ``[privacy]`` keys a coordinator may send as defaults, with their wire types
LOCAL_KEYS: dict[str, type] = {
    f.name: {f.TYPE_BOOL: bool, f.TYPE_DOUBLE: float, f.TYPE_STRING: str, f.TYPE_UINT32: int}[f.type]
    for f in pb.LocalDP.DESCRIPTOR.fields
}


@dataclass(frozen=True)
class ClientLevelDP:
    """Client-level DP of a training update (see the module docstring)."""

    clip_norm: float  # L2 bound of (new - global), real units
    noise_multiplier: float = 0.0  # distributed: z, the survivors' sum gets z x sensitivity; central: 0
    delta: float = 1e-5  # distributed: the client-level delta of the accounting


@dataclass(frozen=True)
class TaskPrivacy:
    """Every privacy setting of one task."""

    local: Mapping[str, Any] = field(default_factory=dict)  # DP-SGD defaults, typed per LOCAL_KEYS
    central: ClientLevelDP | None = None
    distributed: ClientLevelDP | None = None

    @property
    def update_clip(self) -> float | None:
        """The L2 clip of a training update under client-level DP (either kind), else None."""
        dp = self.central or self.distributed
        return dp.clip_norm if dp is not None else None


def local_problems(table: Mapping[str, Any], where: str = "[privacy]") -> list[str]:
    """Keys and types of a defaults table that cannot travel as ``LocalDP`` (empty: fine)."""
    problems = []
    for key, value in table.items():
        want = LOCAL_KEYS.get(key)
        if want is None:
            problems.append(f"{where} {key!r} cannot be a coordinator default (it may send: {', '.join(LOCAL_KEYS)})")
        elif not _fits(value, want):
            problems.append(f"{where} {key}: expected {want.__name__} (got {value!r})")
    return problems


def _fits(value: Any, want: type) -> bool:
    if want is bool or isinstance(value, bool):
        return isinstance(value, bool) and want is bool
    if want is int:
        return isinstance(value, int) and 0 <= value < 2**32
    if want is float:
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, want)


def encode_privacy(p: TaskPrivacy) -> pb.TaskPrivacy:
    """The wire form. ConfigError when ``local`` holds a key or value LocalDP cannot carry."""
    problems = local_problems(p.local)
    if problems:
        raise ConfigError(problems, "[privacy] defaults")
    msg = pb.TaskPrivacy()
    if p.local:
        msg.local.SetInParent()
        for key, value in p.local.items():
            setattr(msg.local, key, LOCAL_KEYS[key](value))
    if p.central is not None:  # the noise is the coordinator's: only the clip travels
        msg.central.CopyFrom(pb.ClientLevelDP(clip_norm=p.central.clip_norm))
    if p.distributed is not None:
        d = p.distributed
        msg.distributed.CopyFrom(
            pb.ClientLevelDP(clip_norm=d.clip_norm, noise_multiplier=d.noise_multiplier, delta=d.delta)
        )
    return msg


def decode_privacy(msg: pb.TaskPrivacy) -> TaskPrivacy:
    """The typed settings of a received task; InvalidPayload for values no honest coordinator sends."""
    local = {key: getattr(msg.local, key) for key in LOCAL_KEYS if msg.local.HasField(key)}
    central = _client_level(msg.central, "central") if msg.HasField("central") else None
    distributed = _client_level(msg.distributed, "distributed") if msg.HasField("distributed") else None
    if central is not None and distributed is not None:
        raise InvalidPayload("a task may ask for central or distributed DP, not both")
    if central is not None and central.noise_multiplier != 0:
        raise InvalidPayload("central DP's noise is the coordinator's: the task must not give a noise_multiplier")
    if distributed is not None and not (distributed.noise_multiplier > 0 and 0 < distributed.delta < 1):
        raise InvalidPayload(
            f"distributed DP needs noise_multiplier > 0 and delta in (0, 1) "
            f"(got {distributed.noise_multiplier}, {distributed.delta})"
        )
    return TaskPrivacy(local, central, distributed)


def _client_level(m: pb.ClientLevelDP, kind: str) -> ClientLevelDP:
    values = (m.clip_norm, m.noise_multiplier, m.delta)
    if not all(math.isfinite(v) for v in values) or m.clip_norm <= 0:
        raise InvalidPayload(f"{kind} DP needs a finite clip_norm > 0 (got {m.clip_norm}, {m.noise_multiplier})")
    return ClientLevelDP(
        float(m.clip_norm), float(m.noise_multiplier), float(m.delta) if kind == "distributed" else 1e-5
    )
