"""The ``plain`` aggregation mode: updates travel in the clear. For baselines only.

The coordinator sees every client's weighted update and weight; the daemons log a warning when a
federation runs in this mode. It is also the simplest reference of the
:mod:`fedcore.common.aggregation` contract.

Streaming: each accepted update is added to a float64 running sum at once and dropped; the server
keeps only the sum, the total weight and, per client, the SHA-256 of its update and its weight (an
identical resubmission is ignored, a different one refused), so its memory does not grow with the
number of clients. An accepted update counts even if its client is not among ``responded`` when
the stage closes (it cannot be taken back out of the sum; the round engine only ever reports
accepted clients as responded).
"""

from __future__ import annotations

import hashlib
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
        self._total: np.ndarray | None = None  # running sum of accepted weighted updates
        self._weight = 0.0
        self._digests: dict[str, tuple[bytes, float]] = {}  # client -> (SHA-256 of its update, weight)
        self._min = int(self.settings.get("min_clients", 1))
        self._used: list[str] = []

    def expected(self, stage: Stage) -> frozenset[str]:
        return frozenset(self.ctx.participants)

    def task(self, stage: Stage, client_id: str) -> pb.PlainInputTask:
        return pb.PlainInputTask()

    def body_types(self, stage: Stage):
        return (pb.PlainInput,)

    def accept(self, stage: Stage, client_id: str, body: Any) -> None:
        if not isinstance(body, pb.PlainInput):
            raise InvalidPayload(f"stage {stage.name} expects PlainInput (got {type(body).__name__})")
        if client_id not in self.ctx.participants:
            raise InvalidPayload(f"{client_id} is not a participant of this aggregation")
        vec = decode_vector(
            body.weighted_update, dtype="float64", length=self.ctx.vector_length, what=f"update from {client_id}"
        )
        w = float(body.weight)
        if not math.isfinite(w) or w <= 0 or w > self.ctx.max_weight:
            raise InvalidPayload(f"weight from {client_id} must be in (0, {self.ctx.max_weight}] (got {w})")
        digest = (hashlib.sha256(vec.tobytes()).digest(), w)
        if client_id in self._digests:
            if self._digests[client_id] == digest:
                return  # an identical resubmission changes nothing
            raise InvalidPayload(f"{client_id} already submitted a different update in this round; refused")
        if self._total is None:
            self._total = np.zeros(self.ctx.vector_length, np.float64)
        np.add(self._total, vec, out=self._total)
        self._weight += w
        self._digests[client_id] = digest

    def close_stage(self, stage: Stage, responded: frozenset[str]) -> None:
        have = sorted(self._digests)
        if set(have) - responded:
            log.info(
                "plain: updates of %s were accepted before they dropped; they stay in the sum",
                sorted(set(have) - responded),
            )
        if len(have) < self._min:
            raise AggregationAborted(f"plain aggregation needs at least {self._min} updates (got {len(have)})")
        self._used = have

    def result(self) -> AggregateResult:
        total = self._total if self._total is not None else np.zeros(self.ctx.vector_length, np.float64)
        return AggregateResult(total, self._weight, len(self._used), {"mode": "plain", "private": False})


class PlainClient(ClientMode):
    name = "plain"

    def handle(self, stage, body, job: ClientJob | None, fetch_blob) -> pb.PlainInput:
        if stage != Stage.PLAIN_INPUT or job is None:
            raise ProtocolAbort(f"plain mode has no stage {Stage(stage).name}")
        w = min(float(job.weight), float(self.settings.get("max_weight", job.weight)))
        weighted = np.asarray(job.vector, np.float64) * w
        return pb.PlainInput(weighted_update=encode_vector(weighted, "float64"), weight=w)
