"""Central (client-level) DP for federated averaging: DP-FedAvg (McMahan et al., ICLR 2018).

Each round: every participating client clips its model update (delta = new - global) to L2
norm S (:func:`clip_update`); the coordinator sums the clipped updates and adds Gaussian noise
N(0, (z S)^2 I) to the sum (:func:`add_gaussian_noise`) before dividing by the number of clients
(or by the expected number, q N, under Poisson client sampling). Adding or removing one *client*
changes the sum by at most S, so the released aggregate is a Gaussian mechanism at the client
level; :func:`client_level_epsilon` composes it over rounds (RDP; Mironov et al. 2019, as in
:mod:`fedcore.dp.accounting`).

Amplification by sampling is claimed **only** for secret Poisson sampling: each eligible client
joins a round independently with probability q, drawn with :func:`poisson_select` (``secrets``,
never logged), and q = expected selected / real pool size. fedcore's coordinator selects a fixed
number of clients from the eligible pool with a *public* seed, which an adversary can replay: it
gives no amplification, so DP-FedAvg accounts it with q = 1. (Before this was fixed, q was
selected / ``clients_total`` for any selection, with ``clients_total`` a free setting: 3 clients,
all in every round, ``clients_total = 100`` reported epsilon 1.77 where the truth is 30.1.)
:func:`clients_total_problems` refuses a ``clients_total`` that does not match the federation.

.. warning::
   Client-level DP needs many clients. The noise on the *sum* has standard deviation z S, while
   the signal is at most m S for m clients per round: with the 3-68 clients of a
   micro-expression federation (one institution per client) and z ~ 1 the noise is as large as
   one to a third of all the updates together, with no amplification from sampling (q ~ 1), so
   the model learns nothing useful for any meaningful epsilon. McMahan et al. used ~763k users.
   fedcore's default protection is sample-level DP-SGD on each client (:mod:`.opacus_train`);
   use this module only for federations with thousands of clients. :func:`warn_if_few_clients`
   says so at run time.

The noise is drawn from :class:`~fedcore.dp.rng.SecureRNG` unless a numpy ``Generator`` is
passed (tests, simulations; warned as insecure). The secure draw sums four Gaussians per
coordinate (Holohan et al. 2021) against floating-point attacks.
"""

from __future__ import annotations

import logging
import math
import secrets
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .accounting import Segment, account
from .rng import RandomSource, SecureRNG

__all__ = [
    "MIN_USEFUL_CLIENTS",
    "DPFedAvg",
    "add_gaussian_noise",
    "client_level_epsilon",
    "clients_total_problems",
    "clip_update",
    "poisson_select",
    "warn_if_few_clients",
]

logger = logging.getLogger(__name__)

#: Below this many clients in the federation, client-level DP is warned about as useless.
MIN_USEFUL_CLIENTS = 1000


def clip_update(delta: np.ndarray, clip_norm: float) -> tuple[np.ndarray, bool]:
    """Scale ``delta`` to L2 norm at most ``clip_norm``: delta * min(1, S / ||delta||).

    Returns ``(clipped, was_clipped)``; the input is not modified. A non-finite update is an
    error (clipping cannot bound it).
    """
    if not (math.isfinite(clip_norm) and clip_norm > 0):
        raise ValueError(f"clip_norm must be a finite number > 0 (got {clip_norm})")
    delta = np.asarray(delta)
    if not np.issubdtype(delta.dtype, np.floating):
        raise TypeError(f"expected a floating-point update vector (got dtype {delta.dtype})")
    norm = float(np.linalg.norm(delta.astype(np.float64, copy=False)))
    if not math.isfinite(norm):
        raise ValueError("update contains NaN or infinite values; refusing to clip it")
    if norm <= clip_norm:
        return delta.copy(), False
    return (delta * (clip_norm / norm)).astype(delta.dtype, copy=False), True


def add_gaussian_noise(
    aggregate: np.ndarray,
    clip_norm: float,
    noise_multiplier: float,
    rng: RandomSource | None = None,
) -> np.ndarray:
    """Return ``aggregate + N(0, (noise_multiplier * clip_norm)^2 I)`` (the sum, not the mean).

    Args:
        aggregate: sum of the clipped client updates (float array).
        clip_norm: S, the clients' clipping bound.
        noise_multiplier: z.
        rng: ``None`` (default) for a fresh :class:`SecureRNG`, a :class:`SecureRNG`, or a numpy
            ``Generator`` (insecure: warned).
    """
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise ValueError(f"noise_multiplier must be a finite number > 0 (got {noise_multiplier})")
    if not (math.isfinite(clip_norm) and clip_norm > 0):
        raise ValueError(f"clip_norm must be a finite number > 0 (got {clip_norm})")
    aggregate = np.asarray(aggregate)
    std = noise_multiplier * clip_norm
    if rng is None or isinstance(rng, SecureRNG):
        rng = rng or SecureRNG()
        z = rng.standard_normal(4 * aggregate.size).reshape(4, aggregate.size).sum(axis=0) / 2.0
    elif isinstance(rng, np.random.Generator):
        warnings.warn("central DP noise from a numpy Generator is not cryptographically secure", stacklevel=2)
        z = rng.standard_normal(aggregate.size)
    else:
        raise TypeError(f"rng must be None, a SecureRNG or a numpy Generator (got {type(rng).__name__})")
    noisy = aggregate.astype(np.float64) + std * z.reshape(aggregate.shape)
    return noisy.astype(aggregate.dtype if np.issubdtype(aggregate.dtype, np.floating) else np.float64)


def warn_if_few_clients(total_clients: int, threshold: int = MIN_USEFUL_CLIENTS) -> bool:
    """Warn (and log) when client-level DP is run with fewer than ``threshold`` clients."""
    if total_clients < threshold:
        message = (
            f"client-level DP (DP-FedAvg) with {total_clients} clients: noise of std z*S on a sum of "
            f"at most {total_clients}*S drowns the signal for any useful epsilon; it needs thousands "
            "of clients. Prefer sample-level DP-SGD on each client."
        )
        warnings.warn(message, stacklevel=2)
        logger.warning(message)
        return True
    return False


def client_level_epsilon(
    clients_per_round: int,
    total_clients: int,
    noise_multiplier: float,
    rounds: int,
    delta: float,
    *,
    secret_poisson: bool = False,
) -> float:
    """Client-level epsilon of DP-FedAvg after ``rounds`` rounds.

    q = 1 (no amplification) unless ``secret_poisson``: each of the ``total_clients`` eligible
    clients joined each round independently, by secret randomness, with probability
    q = clients_per_round / total_clients (clients_per_round is then the *expected* number).
    A fixed-size or publicly seeded selection is not secret: it is accounted with q = 1.
    """
    if not (1 <= clients_per_round <= total_clients):
        raise ValueError(f"clients_per_round must be in [1, total_clients={total_clients}] (got {clients_per_round})")
    warn_if_few_clients(total_clients)
    q = clients_per_round / total_clients if secret_poisson else 1.0
    return account([Segment(q, noise_multiplier, rounds)], delta, "rdp").epsilon


def poisson_select(pool: Sequence[str], rate: float) -> list[str]:
    """Each client of ``pool`` independently with probability ``rate``, from ``secrets`` (os.urandom).

    The draw must stay secret for the amplification to hold: do not log the randomness, and do
    not log or publish who was *not* selected beyond what the protocol reveals anyway.
    """
    if not (isinstance(rate, int | float) and 0 < rate <= 1):
        raise ValueError(f"rate must be in (0, 1] (got {rate!r})")
    scale = 1 << 53
    return [c for c in pool if secrets.randbelow(scale) < rate * scale]


def clients_total_problems(
    clients_total: int, federation_clients: int | None, sample_rate: float | None = None
) -> list[str]:
    """Problems with ``[central_dp] clients_total`` against the federation's real client count.

    ``federation_clients`` is the number of clients the federation can draw from (its provisioned
    clients, or ``[federation] min_available`` when every one must join); None when unknown (then
    only the sampling rate is checked). ``sample_rate``: the secret Poisson rate, if any.
    """
    problems = []
    if federation_clients is not None and clients_total != federation_clients:
        problems.append(
            f"[central_dp] clients_total must equal the federation's {federation_clients} clients "
            f"(got {clients_total}): a larger population would claim amplification by sampling "
            "that the selection does not give"
        )
    if sample_rate is not None and not (isinstance(sample_rate, int | float) and 0 < sample_rate <= 1):
        problems.append(f"[central_dp] sample_rate must be in (0, 1] for secret Poisson sampling (got {sample_rate!r})")
    return problems


@dataclass
class DPFedAvg:
    """The coordinator's side of DP-FedAvg: noise on the sum of clipped updates, and its accounting.

    Weighting (the choice fedcore makes): with central DP every client's update counts with weight
    1 (the client daemon sends weight 1.0 and the coordinator caps weights at 1), so adding or
    removing one client changes the *sum* by at most ``clip_norm`` S whatever its sample count.
    The coordinator adds N(0, (z S)^2 I) to that sum and divides by the number m of contributors:
    the mean then carries noise of std z S / m and one client moves it by at most S / m. m is the
    size of the round's roster, which the coordinator knows and logs anyway (treated as public).

    Accounting: each released round is one Gaussian step with q = 1 (the coordinator's selection
    is public and fixed-size, so nothing is gained from sampling), or with q = ``sample_rate``
    when the selection is secret Poisson sampling over the real pool (:func:`poisson_select`);
    rounds compose by RDP (:func:`~fedcore.dp.accounting.account`, accountant ``rdp``).

    Args:
        clip_norm: S, the L2 bound each client clips its update (new - global) to.
        noise_multiplier: z.
        clients_total: N, the population the clients are drawn from (>= every round's roster).
        delta: the client-level delta.
        rates: sampling rates of the rounds released so far (restored from a checkpoint).
        sample_rate: the rate of secret Poisson client sampling, or None (the default: public
            fixed-size selection, q = 1).
    """

    clip_norm: float
    noise_multiplier: float
    clients_total: int
    delta: float
    rates: list[float] = field(default_factory=list)
    sample_rate: float | None = None

    def __post_init__(self) -> None:
        problems = []
        for name in ("clip_norm", "noise_multiplier"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a finite number > 0 (got {value!r})")
        if isinstance(self.clients_total, bool) or not isinstance(self.clients_total, int) or self.clients_total < 1:
            problems.append(f"clients_total must be an integer >= 1 (got {self.clients_total!r})")
        if not (isinstance(self.delta, int | float) and 0 < self.delta < 1):
            problems.append(f"delta must be in (0, 1) (got {self.delta!r})")
        if self.sample_rate is not None and not (
            isinstance(self.sample_rate, int | float) and 0 < self.sample_rate <= 1
        ):
            problems.append(f"sample_rate must be in (0, 1] or None (got {self.sample_rate!r})")
        if problems:
            raise ValueError("central DP: " + "; ".join(problems))

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise on the sum: z S."""
        return self.noise_multiplier * self.clip_norm

    def release(
        self,
        weighted_sum: np.ndarray,
        total_weight: float,
        contributors: int,
        selected: int,
        rng: RandomSource | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Noise the sum of ``contributors`` clipped updates, charge one round, return (mean, record).

        Raises ValueError (nothing is charged) when the weights are not 1 per client: then the
        sensitivity would not be S.
        """
        if contributors < 1 or abs(float(total_weight) - contributors) > 1e-6 * contributors:
            raise ValueError(
                f"central DP needs weight 1 per client: {contributors} contributors carry a total "
                f"weight of {total_weight} (is the client daemon applying [central_dp]?)"
            )
        selected = max(int(selected), contributors)
        if selected > self.clients_total:
            raise ValueError(
                f"central DP: {selected} clients selected but clients_total is {self.clients_total}: "
                "clients_total must be the federation's real client count"
            )
        noisy = add_gaussian_noise(np.asarray(weighted_sum, np.float64), self.clip_norm, self.noise_multiplier, rng)
        self.rates.append(1.0 if self.sample_rate is None else float(self.sample_rate))
        return noisy / contributors, {
            **self.record(),
            "contributors": contributors,
            "mean_noise_std": self.noise_std / contributors,
        }

    def epsilon(self) -> float:
        """Client-level epsilon of all rounds released so far (0 before the first)."""
        if not self.rates:
            return 0.0
        return account([Segment(q, self.noise_multiplier, 1) for q in self.rates], self.delta, "rdp").epsilon

    def record(self) -> dict[str, Any]:
        """What the coordinator logs per round (metrics.jsonl ``central_dp``) and in summary.json."""
        return {
            "epsilon": self.epsilon(),
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "clip_norm": self.clip_norm,
            "clients_total": self.clients_total,
            "rounds": len(self.rates),
            "sampling_rate": self.rates[-1] if self.rates else None,
            "accountant": "rdp",
            "sampling": "fixed public selection (q = 1)" if self.sample_rate is None else "secret Poisson",
        }
