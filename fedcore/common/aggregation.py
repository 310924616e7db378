"""The contract between the round engine (coordinator and client daemons) and an aggregation mode.

A mode (``plain``, ``secagg``, ``ckks``) computes, over the clients that finished local work, the
weighted sum ``sum_i w_i * x_i`` and the total weight ``sum_i w_i`` of their vectors, in a sequence
of stages. The daemons own the wire, deadlines, liveness and checkpoints; the mode owns the maths
and the protocol state. Both sides are long-lived objects (one per daemon run), so a mode can keep
federation-wide state (CKKS keys) across rounds.

How the coordinator drives a mode for one aggregation (round r >= 1, or the statistics run of
round 0):

1. ``begin(ctx)`` with the participants (clients whose TRAIN/STATS report said ``ready``).
2. For each stage in ``round_stages()``: clients in ``expected(stage)`` poll and receive
   ``task(stage, client)`` (a protobuf message, packed into ``Task.body``), and submit a body that
   goes to ``accept(stage, client, body)`` (which raises :class:`InvalidPayload` for bad input: the
   submission is discarded, status INVALID_ARGUMENT). When every expected client answered, or at
   the stage deadline, or when the rest are dead, ``close_stage(stage, responded)`` runs; it raises
   :class:`AggregationAborted` when the mode cannot continue (too few survivors).
3. ``result()`` gives the :class:`AggregateResult`.

``setup_stages()`` run the same way once per coordinator run before round 0's statistics (CKKS
key exchange); ``begin_setup(ctx)`` starts them. Large server-to-client payloads (the CKKS
encrypted sum) are served by ``blob(name, client)`` through the Download stream.

On the client, ``handle(stage, task_body, job)`` returns the body to submit. ``job`` holds the
vector to aggregate this round (float64 or float32, already the client's update, NOT weighted) and
its weight; the mode weights it. A mode raises :class:`ProtocolAbort` to refuse an unsafe request.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from google.protobuf.message import Message

from fedcore.common.errors import ConfigError
from fedcore.common.stages import Stage
from fedcore.common.task_privacy import ClientLevelDP


@dataclass(frozen=True)
class AggregationContext:
    federation_id: str
    round: int  # 0 for the statistics run and set-up, 1.. for training rounds
    attempt: int
    participants: tuple[str, ...]  # sorted client ids that take part
    vector_length: int  # length L of each client's vector
    settings: Mapping[str, Any] = field(default_factory=dict)  # the mode's table from the config
    max_weight: float = 1.0e6  # upper bound on one client's weight (clients clip to it)


@dataclass(frozen=True)
class NoiseRecord:
    """The DP noise inside an aggregate (SecAgg+'s distributed discrete Gaussian), as the
    coordinator's accounting needs it (:class:`fedcore.dp.coordinator_dp.CoordinatorPrivacy`).

    ``kind`` ``"update"`` (a training round: ``sigma_client`` and ``sensitivity`` in the ring's
    integer units) or ``"stats"`` (round 0's statistics: in counts, with the release's
    ``sigma_total``, ``delta`` and ``epsilon`` as the clients charge them)."""

    kind: Literal["update", "stats"]
    sigma_client: float  # each client's noise std
    sensitivity: float  # L2 sensitivity of one client's (update) or one sample's (stats) contribution
    threshold: int  # T: the fewest survivors the noise was scaled for
    participants: int  # clients that began the aggregation
    dim: int  # vector length
    survivors: int = 0  # clients whose noise is in the sum
    sigma_total: float = 0.0  # stats: the std the release is charged for
    delta: float | None = None  # stats: the release's delta
    epsilon: float | None = None  # stats: the release's epsilon


@dataclass
class AggregateResult:
    weighted_sum: np.ndarray  # float64 (L,): sum over contributors of w_i * x_i
    total_weight: float  # sum of w_i over contributors
    num_contributors: int  # how many clients' inputs are in the sum
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. clipped values, quantisation, dropouts
    noise: NoiseRecord | None = None  # the DP noise in the sum, when a mode added some

    @property
    def mean(self) -> np.ndarray:
        if self.total_weight <= 0:
            raise ValueError(f"total weight must be positive to take a mean (got {self.total_weight})")
        return self.weighted_sum / self.total_weight


@dataclass
class ClientJob:
    """What a client contributes to one aggregation."""

    round: int
    attempt: int
    vector: np.ndarray  # (L,) the client's update (or statistics), not yet weighted
    weight: float  # e.g. the sample count; clipped by the mode to ctx.max_weight
    result: AggregateResult | None = None  # filled by modes whose clients learn the sum (CKKS)
    #: the task's distributed DP (SecAgg+ adds this client's noise share); the vector is already
    #: clipped to its clip_norm (fedcore.client.handlers.client_update)
    distributed_dp: ClientLevelDP | None = None


class ServerMode(ABC):
    """Server side of an aggregation mode (one instance per coordinator run)."""

    name: str = ""

    def __init__(self, federation_id: str, settings: Mapping[str, Any]):
        self.federation_id = federation_id
        self.settings = dict(settings)

    def setup_stages(self) -> tuple[Stage, ...]:
        return ()

    def begin_setup(self, ctx: AggregationContext) -> None:
        """Start the set-up stages. The round engine calls it only when ``setup_stages()`` is
        not empty, so a mode without set-up has nothing to start."""

    def setup_done(self) -> bool:
        return True

    @abstractmethod
    def round_stages(self) -> tuple[Stage, ...]: ...

    @abstractmethod
    def begin(self, ctx: AggregationContext) -> None: ...

    @abstractmethod
    def expected(self, stage: Stage) -> frozenset[str]: ...

    @abstractmethod
    def task(self, stage: Stage, client_id: str) -> Message: ...

    @abstractmethod
    def accept(self, stage: Stage, client_id: str, body: Any) -> None: ...

    @abstractmethod
    def close_stage(self, stage: Stage, responded: frozenset[str]) -> None: ...

    @abstractmethod
    def result(self) -> AggregateResult: ...

    def blob(self, name: str, client_id: str) -> bytes:
        raise KeyError(name)

    def body_types(self, stage: Stage) -> tuple[type[Message], ...]:
        """Message classes accepted as submission bodies at ``stage`` (checked before ``accept``)."""
        return ()


class ClientMode(ABC):
    """Client side of an aggregation mode (one instance per client daemon run)."""

    name: str = ""

    def __init__(self, identity: ClientIdentity, federation_id: str, settings: Mapping[str, Any]):
        self.identity = identity
        self.federation_id = federation_id
        self.settings = dict(settings)

    @abstractmethod
    def handle(self, stage: Stage, body: Any, job: ClientJob | None, fetch_blob: Callable[[str], bytes]) -> Message:
        """Answer one task. ``job`` is None for set-up stages."""

    def seed_randomness(self, rng: Any) -> None:
        """Seeded runs (``[client] seed``): draw this mode's randomness that shapes the sum
        (stochastic rounding, client-side noise) from the numpy Generator ``rng``. Keys, masks and
        encryption randomness stay CSPRNG draws: they never change what is summed. Default: none."""

    def statistics_noise(self, length: int) -> dict[str, float] | None:
        """The noise this mode itself puts on a round-0 statistics sum of ``length`` values, as
        ``{"sigma", "sensitivity", "delta"}`` (sigma: the std left in any sum another party can see,
        in counts), or None when it adds none (then the client adds its own: :meth:`statistics_cover`)."""
        return None

    def statistics_cover(self) -> int:
        """The fewest clients' statistics that any value another party sees sums (plain: 1, each
        vector reaches the coordinator alone). A client adding its own noise scales it by this."""
        return 1


@dataclass(frozen=True)
class ClientIdentity:
    """Who a client is: its id (= certificate common name) and PEM credentials.

    ``cert_pem`` and ``key_pem`` are the client's mTLS certificate and private key, and
    ``ca_pem`` the federation CA; modes may use them to sign their public keys so that peers can
    bind them to a certificate (CKKS key exchange).
    """

    client_id: str
    cert_pem: bytes = b""
    key_pem: bytes = b""
    ca_pem: bytes = b""


#: mode name -> (server class path, client class path)
MODES: dict[str, tuple[str, str]] = {
    "plain": ("fedcore.plain:PlainServer", "fedcore.plain:PlainClient"),
    "secagg": ("fedcore.secagg.server:SecAggServer", "fedcore.secagg.client:SecAggClient"),
    "ckks": ("fedcore.he.server:CkksServer", "fedcore.he.client:CkksClient"),
}


def _load(path: str) -> type:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def server_mode(name: str) -> type[ServerMode]:
    if name not in MODES:
        raise ConfigError(f"aggregation must be one of {', '.join(MODES)} (got {name!r})")
    return _load(MODES[name][0])


def client_mode(name: str) -> type[ClientMode]:
    if name not in MODES:
        raise ConfigError(f"aggregation must be one of {', '.join(MODES)} (got {name!r})")
    return _load(MODES[name][1])
