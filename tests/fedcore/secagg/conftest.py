"""Shared set-up for the SecAgg+ tests: a small in-process federation run through the driver."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from fedcore.common.aggregation import AggregationContext, ClientIdentity, ClientJob
from fedcore.common.stages import Stage
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.driver import InProcessRound
from fedcore.secagg.server import SecAggServer

FED = "fed-test"


def client_ids(n: int) -> tuple[str, ...]:
    return tuple(f"client-{i:02d}" for i in range(n))


@dataclass
class Federation:
    server: SecAggServer
    clients: dict[str, SecAggClient]
    ctx: AggregationContext
    jobs: dict[str, ClientJob]

    def driver(self, drop: Mapping[Stage, Iterable[str]] | None = None) -> InProcessRound:
        return InProcessRound(self.server, self.clients, self.ctx, self.jobs, drop)

    def expected(self, contributors: Iterable[str]) -> tuple[np.ndarray, float]:
        """Plaintext weighted sum and total weight over ``contributors`` (weights as the mode rounds them)."""
        total = np.zeros(self.ctx.vector_length)
        weight = 0.0
        for cid in contributors:
            w = min(max(round(self.jobs[cid].weight), 1), int(self.ctx.max_weight))
            total += w * np.asarray(self.jobs[cid].vector, np.float64)
            weight += w
        return total, weight

    def tolerance(self, total_weight: float) -> float:
        """Worst-case quantisation error of a weighted sum: one unit of 2^-f per unit of weight."""
        return total_weight * 2.0 ** -self.server.r.quant.frac_bits + 1e-12

    def next_round(self, round_: int, attempt: int = 0) -> Federation:
        """The same server and clients, a new (round, attempt)."""
        ctx = AggregationContext(FED, round_, attempt, self.ctx.participants, self.ctx.vector_length,
                                 self.ctx.settings, max_weight=self.ctx.max_weight)
        jobs = {c: ClientJob(round_, attempt, j.vector, j.weight) for c, j in self.jobs.items()}
        return Federation(self.server, self.clients, ctx, jobs)


def make_federation(n: int, length: int = 6, settings: dict[str, Any] | None = None, *, round_: int = 1,
                    attempt: int = 0, max_weight: float = 100.0, weights: Mapping[str, float] | None = None,
                    vectors: Mapping[str, np.ndarray] | None = None, seed: int = 0,
                    client_settings: dict[str, Any] | None = None) -> Federation:
    settings = dict(settings or {})
    ids = client_ids(n)
    rng = np.random.default_rng(seed)
    vectors = dict(vectors) if vectors else {c: rng.uniform(-1, 1, length) for c in ids}
    weights = dict(weights) if weights else {c: float(rng.integers(1, 40)) for c in ids}
    ctx = AggregationContext(FED, round_, attempt, ids, length, settings, max_weight=max_weight)
    server = SecAggServer(FED, settings)
    csettings = settings if client_settings is None else client_settings
    clients = {c: SecAggClient(ClientIdentity(c), FED, csettings, rng=np.random.default_rng(seed + i))
               for i, c in enumerate(ids)}
    jobs = {c: ClientJob(round_, attempt, vectors[c], weights[c]) for c in ids}
    return Federation(server, clients, ctx, jobs)


@pytest.fixture(scope="session")
def federation():
    return make_federation
