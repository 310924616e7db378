"""The ``plain`` aggregation mode: updates travel in the clear. For baselines only.

The coordinator sees every client's weighted update and weight; the daemons log a warning when a
federation runs in this mode. It is also the simplest reference of the
:mod:`fedcore.common.aggregation` contract.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from fedcore.common.aggregation import (
    AggregateResult,
    AggregationContext,
    ClientJob,
    ClientMode,
    ServerMode,
)
from fedcore.common.errors import AggregationAborted, InvalidPayload, ProtocolAbort
from fedcore.common.params import decode_vector, encode_vector
from fedcore.common.stages import Stage
from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb

log = logging.getLogger(__name__)


class PlainServer(ServerMode):
    name = "plain"

    def round_stages(self) -> tuple[Stage, ...]:
        return (Stage.PLAIN_INPUT,)

    def begin(self, ctx: AggregationContext) -> None:
        self.ctx = ctx
        self._inputs: dict[str, tuple[np.ndarray, float]] = {}
        self._min = int(self.settings.get("min_clients", 1))

    def expected(self, stage: Stage) -> frozenset[str]:
        return frozenset(self.ctx.participants)

    def task(self, stage: Stage, client_id: str) -> pb.PlainInputTask:
        return pb.PlainInputTask()

    def body_types(self, stage: Stage):
        return (pb.PlainInput,)

    def accept(self, stage: Stage, client_id: str, body: Any) -> None:
        if not isinstance(body, pb.PlainInput):
            raise InvalidPayload(f"stage {stage.name} expects PlainInput (got {type(body).__name__})")
        vec = decode_vector(body.weighted_update, dtype="float64", length=self.ctx.vector_length,
                            what=f"update from {client_id}")
        w = float(body.weight)
        if not math.isfinite(w) or w <= 0 or w > self.ctx.max_weight:
            raise InvalidPayload(f"weight from {client_id} must be in (0, {self.ctx.max_weight}] (got {w})")
        self._inputs[client_id] = (vec, w)

    def close_stage(self, stage: Stage, responded: frozenset[str]) -> None:
        have = sorted(set(self._inputs) & responded)
        if len(have) < self._min:
            raise AggregationAborted(f"plain aggregation needs at least {self._min} updates (got {len(have)})")
        self._used = have

    def result(self) -> AggregateResult:
        total = np.zeros(self.ctx.vector_length, np.float64)
        weight = 0.0
        for cid in self._used:
            vec, w = self._inputs[cid]
            total += vec
            weight += w
        return AggregateResult(total, weight, len(self._used), {"mode": "plain", "private": False})


class PlainClient(ClientMode):
    name = "plain"

    def handle(self, stage, body, job: ClientJob | None, fetch_blob) -> pb.PlainInput:
        if stage != Stage.PLAIN_INPUT or job is None:
            raise ProtocolAbort(f"plain mode has no stage {Stage(stage).name}")
        w = min(float(job.weight), float(self.settings.get("max_weight", job.weight)))
        weighted = np.asarray(job.vector, np.float64) * w
        return pb.PlainInput(weighted_update=encode_vector(weighted, "float64"), weight=w)
